"""ONNX in (``srprune.models.onnx_source``): srprune's own export of every zoo architecture
re-opens as that architecture with its exact weights; a pruned model with its pruned widths;
a file without names by execution order; bad files are one line each.

Models are built at their small configurations (``ModelSpec.small``; SwinIR smaller still,
which also makes the loader search its depth and width) and exported at 16x16, so that the
whole file runs in about a minute and a half on two busy cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from srprune.errors import SrpruneError
from srprune.measure.export import export_onnx
from srprune.models import SRModel
from srprune.models.onnx_source import load_onnx_model
from srprune.registry import MODELS

# smaller than ModelSpec.small where the export alone would take 20 s (SwinIR's legacy graph)
TINY = {"swinir-light": {"depths": [2], "num_heads": [6], "embed_dim": 24}}


def _zoo() -> list[str]:
    """One registered name per distinct small build (drn-s30/50/70 build drn-s there)."""
    names, seen = [], set()
    for name in MODELS.names():
        spec = MODELS.get(name)
        scale = 2 if 2 in spec.scales else spec.default_scale
        marker = (spec.family, repr(spec.small_config(scale)))
        if marker not in seen:
            seen.add(marker)
            names.append(name)
    return names


def _small(name: str, seed: int = 0) -> SRModel:
    """A registered model at its small configuration (x2 where it has one), random weights."""
    spec = MODELS.get(name)
    config = spec.small_config(2 if 2 in spec.scales else spec.default_scale)
    if name in TINY:
        config["hyperparameters"] = {**config["hyperparameters"], **TINY[name]}
    torch.manual_seed(seed)
    return spec.build(config).eval()


def _export(model: SRModel, path: Path) -> Path:
    return export_onnx(model, path, input_size=(16, 16)).path


def _assert_same(model: SRModel, back: SRModel) -> None:
    """Same widths everywhere, the same values wherever the graph uses them, and the same
    output (the parameters a graph never uses, such as a multi-scale CARN's other
    upsamplers, cannot come back from it and are listed in ``meta["onnx"]``)."""
    own, got = model.net.state_dict(), back.net.state_dict()
    assert set(got) == set(own)
    assert {k: tuple(v.shape) for k, v in got.items()} == \
        {k: tuple(v.shape) for k, v in own.items()}
    unused = set(back.meta["onnx"]["not_in_file"])
    differ = [k for k in own if k not in unused and not torch.equal(own[k], got[k])]
    assert not differ, differ[:3]
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 255
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x), model.eval()(x), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", _zoo())
def test_zoo_export_reopens_as_its_architecture(name: str, tmp_path: Path) -> None:
    model = _small(name)
    back = load_onnx_model(_export(model, tmp_path / f"{name}.onnx"))
    assert back.scale == model.scale and back.arch == model.arch
    if model.arch == "spandrel":  # spandrel's reader or the registered name: the same class
        assert back.config["package"] == model.config["package"]
        assert back.meta["onnx"]["input_range"] == 255.0  # srprune's export wraps [0, 1]
    else:
        assert back.name == model.name and back.config == model.config
    assert "ONNX weights mapped by" in back.meta["detected"]
    assert back.meta["onnx"]["parity"] is not None
    _assert_same(model, back)


def test_pruned_export_reopens_with_its_widths(tmp_path: Path) -> None:
    from srprune.api import compress_model

    pruned = compress_model(_small("edsr-baseline"), 0.5, criterion="l1").model
    widths = {k: tuple(v.shape) for k, v in pruned.net.state_dict().items()}
    assert widths != {k: tuple(v.shape)
                      for k, v in _small("edsr-baseline").net.state_dict().items()}
    back = load_onnx_model(_export(pruned, tmp_path / "pruned.onnx"))
    assert back.name == "edsr-baseline" and "pruned" in back.meta["detected"]
    _assert_same(pruned, back)


def _anonymous(src: Path, dst: Path) -> Path:
    """``src`` with every node, initializer and inner value renamed to nothing that names a
    module, and dynamo's scope metadata dropped."""
    proto = onnx.load(str(src))
    graph = proto.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"v{len(names)}")

    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
    for node in graph.node:
        node.name = ""
        del node.metadata_props[:]
        for items in (node.input, node.output):
            for i, name in enumerate(items):
                items[i] = rename(name)
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("name", ["espcn", "compact"])
def test_anonymous_file_maps_by_execution_order(name: str, tmp_path: Path) -> None:
    model = _small(name)
    path = _anonymous(_export(model, tmp_path / "named.onnx"), tmp_path / "anon.onnx")
    assert not any("." in t.name for t in onnx.load(str(path)).graph.initializer)
    back = load_onnx_model(path)
    assert "mapped by execution order" in back.meta["detected"]
    assert back.arch == model.arch
    _assert_same(model, back)


@pytest.fixture(scope="module")
def espcn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_small("espcn"), tmp_path_factory.mktemp("onnx") / "espcn.onnx")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_named_architecture_and_scale(espcn_file: Path) -> None:
    assert load_onnx_model(espcn_file, scale=2, arch="espcn").name == "espcn"
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(espcn_file, scale=3)
    assert "x2 model" in _one_line(exc)
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(espcn_file, arch="fsrcnn")
    assert "does not map onto fsrcnn" in _one_line(exc)
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(espcn_file, arch_options={"d": 8})
    assert "--arch-opt" in _one_line(exc)


def test_external_weights_beside_the_file(espcn_file: Path, tmp_path: Path) -> None:
    """Weights in a side file (how ONNX stores models over 2 GB) are read from the model's
    folder; a side file that is missing, or kept outside that folder, is one line."""
    proto = onnx.load(str(espcn_file))
    path = tmp_path / "ext.onnx"
    onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.weights", size_threshold=0)
    back = load_onnx_model(path)
    assert back.name == "espcn" and back.meta["onnx"]["parity"] is not None
    (tmp_path / "ext.weights").rename(tmp_path / "moved.weights")
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(path)
    assert "ext.weights is missing" in _one_line(exc)
    outside = onnx.load(str(path), load_external_data=False)
    for tensor in outside.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../moved.weights"
    onnx.save(outside, str(tmp_path / "outside.onnx"))
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(tmp_path / "outside.onnx")
    assert "outside the model's folder" in _one_line(exc)


def test_truncated_file_is_one_line(espcn_file: Path, tmp_path: Path) -> None:
    data = espcn_file.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(cut)
    assert "truncated" in _one_line(exc)


def test_quantized_file_is_refused(tmp_path: Path) -> None:
    """A conv whose int8 weights are dequantized in the graph (what QDQ quantizers write)."""
    weight = np.random.default_rng(0).integers(-8, 8, (12, 3, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"]),
             helper.make_node("Conv", ["lr", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["c"], ["sr"], blocksize=2, mode="CRD")]
    inits = [numpy_helper.from_array(weight, "w_q"),
             numpy_helper.from_array(np.array(0.02, dtype=np.float32), "w_scale")]
    graph = helper.make_graph(
        nodes, "q", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, [1, 3, 16, 16])], inits)
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(path)
    assert "quantized" in _one_line(exc) and "DequantizeLinear" in str(exc.value)


def test_non_sr_graph_is_one_line(tmp_path: Path) -> None:
    classifier = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                                     torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    path = tmp_path / "classifier.onnx"
    torch.onnx.export(classifier, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}})
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(path)
    text = _one_line(exc)
    assert "not an SR model" in text and "srprune bench, eval and export --int8" in text


def test_unknown_sr_graph_suggests_arch(tmp_path: Path) -> None:
    """An SR net of no known architecture: what to do instead, in one line."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 7, 5, padding=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(7, 12, 3, padding=1),
                              torch.nn.PixelShuffle(2)).eval()
    path = tmp_path / "mine.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False,
                      input_names=["lr"], dynamic_axes={"lr": {2: "h", 3: "w"}})
    with pytest.raises(SrpruneError) as exc:
        load_onnx_model(path)
    text = _one_line(exc)
    assert "no architecture matches" in text and "--arch NAME --arch-opt" in text
    assert "srprune bench, eval and export --int8" in text
