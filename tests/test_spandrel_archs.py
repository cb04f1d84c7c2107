"""spandrel's SR architectures through srprune's front door, at the small configurations of
``benchmarks/spandrel_zoo.py``: each loads from a ``.pth`` as spandrel's own class computes,
counts, is fully covered by the graph, and fails cleanly (a one-line ``SrpruneError``) where it
cannot be pruned; a subset is pruned to half with ONNX parity. The forwards of
``srprune.models.spandrel_forwards`` are checked against spandrel's on their own.

Run with ``-n 0``; about a minute on two cores.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F

if importlib.util.find_spec("spandrel") is None:  # import it through srprune: torchvision stub
    pytest.skip("spandrel is not installed", allow_module_level=True)

from srprune.errors import SrpruneError
from srprune.measure.cost import model_cost
from srprune.measure.export import check_parity, export_onnx
from srprune.models import detect, spandrel_forwards, spandrel_zoo
from srprune.models.srmodel import SRModel
from srprune.prune.graph import SRGraph


def _benchmark() -> ModuleType:
    """benchmarks/spandrel_zoo.py, whose architecture table these tests share."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "spandrel_zoo.py"
    spec = importlib.util.spec_from_file_location("spandrel_zoo_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ZOO = _benchmark()
ARCHS = {a.name: a for a in ZOO.ARCHS}
# loads and counts, but cannot be pruned to half: why, as the error says it
UNREACHABLE = {
    "ATD": "out of reach",  # the trunk meets attention matmuls the graph cannot map
    "FDAT": "out of reach",  # a one-channel spatial gate broadcast over the trunk
    "MoESR": "out of reach",  # one half of each gated split gates the other
    "IPT": "out of reach",  # a position embedding per token of its one patch size
    "AuraSR": "cannot trace",  # style-modulated convs, a GAN sampling noise
}


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(threads)


_LOADED: dict[str, tuple[SRModel, torch.nn.Module]] = {}


def _spandrel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the front door's search of srprune's own architectures (it builds each of them on
    the meta device: seconds per file) for files that are spandrel's;
    ``test_the_whole_front_door`` runs it."""
    monkeypatch.setattr(detect, "match_registered", lambda state, scale=None: None)
    monkeypatch.setattr(detect, "match_inferred", lambda state, scale=None: None)


def _load(name: str, tmp_path: Path) -> tuple[SRModel, torch.nn.Module]:
    """The architecture opened from a ``.pth`` by the front door (once; a copy each call)."""
    if name not in _LOADED:
        with pytest.MonkeyPatch.context() as patch:
            _spandrel_only(patch)
            model, net = ZOO.load_checkpoint(ARCHS[name], tmp_path)
        _LOADED[name] = model, net
    model, net = _LOADED[name]
    return copy.deepcopy(model), net


LOADABLE = sorted(ARCHS)


def test_every_sr_architecture_of_spandrel_is_configured_or_skipped() -> None:
    ids = set(ZOO.spandrel_ids())
    configured = {a.package for a in ZOO.ARCHS}
    assert ids <= configured | set(ZOO.SKIPPED), ids - configured - set(ZOO.SKIPPED)
    assert configured <= ids and set(ZOO.SKIPPED) <= ids
    assert not configured & set(ZOO.SKIPPED)


@pytest.mark.parametrize("name", LOADABLE)
def test_loads_counts_and_matches_spandrel(name: str, tmp_path: Path) -> None:
    arch = ARCHS[name]
    model, net = _load(name, tmp_path)
    assert model.meta["detected"].endswith(f"x{model.scale} (spandrel)" if name != "SPAN"
                                           else "fused to the deploy form")
    spandrel_params = sum(p.numel() for p in net.parameters())
    if name == "SPAN":  # re-parameterised blocks fused: fewer parameters, the same function
        assert model.meta["reparameterized"] > 0 and model.n_params < spandrel_params
    else:
        assert model.n_params == spandrel_params
    cost = model_cost(model, (arch.size, arch.size))
    side = arch.size * model.scale
    assert cost.outputs[-1] == [1, 3, side, side]
    assert cost.macs > 0 and cost.params == model.n_params
    if name != "AuraSR":  # a GAN: its forward samples noise at every call
        assert ZOO.spandrel_match(model, net, arch.size) < 1e-4


@pytest.mark.parametrize("name", [n for n in LOADABLE if n != "AuraSR"])
def test_graph_sees_every_layer(name: str, tmp_path: Path) -> None:
    arch = ARCHS[name]
    model, _ = _load(name, tmp_path)
    graph = SRGraph(model.net, model.scale, example_size=(arch.size, arch.size))
    cover = graph.coverage()
    assert cover["missing"] == [] and cover["covered"] == cover["layers"] > 0
    assert all(u.blocked for u in graph.blocked_units())
    assert graph.units("all") or name == "IPT"


@pytest.mark.parametrize("name", sorted(UNREACHABLE))
def test_unprunable_ones_fail_in_one_line(name: str, tmp_path: Path) -> None:
    model, _ = _load(name, tmp_path)
    size = ARCHS[name].size
    with pytest.raises(SrpruneError, match=re.escape(UNREACHABLE[name])):
        ZOO.compress_model(model, 0.5, criterion="l1", scope="all", input_size=(size, size))


PRUNED = ("RealPLKSR", "Swin2SR", "HAT", "SeemoRe", "CRAFT", "MMRealSR", "RealCUGAN", "GRL")


@pytest.mark.parametrize("name", PRUNED)
def test_prunes_to_half_with_onnx_parity(name: str, tmp_path: Path) -> None:
    arch = ARCHS[name]
    model, _ = _load(name, tmp_path)
    facts = ZOO.pruned_facts(model, arch, 0.5, "all", tmp_path)
    assert facts["reached"] and 0.48 <= facts["achieved"] <= 0.6
    assert facts["shapes_ok"] and facts["coverage_missing"] == []
    assert facts["onnx"]["max_abs_diff"] <= facts["onnx"]["limit"]


def test_atd_exports_with_parity(tmp_path: Path) -> None:
    """ATD sorts its tokens by category: exportable with the unique-key sort."""
    model, _ = _load("ATD", tmp_path)
    exported = export_onnx(model, tmp_path / "atd.onnx", (16, 16))
    assert check_parity(model, exported.path, (16, 16)).max_abs_diff < 1e-2


@pytest.mark.parametrize("name", ["Swin2SR"])
def test_the_whole_front_door(name: str, tmp_path: Path) -> None:
    """With srprune's own architectures tried first, as a user's file is opened."""
    model, net = ZOO.load_checkpoint(ARCHS[name], tmp_path)
    assert model.meta["detected"] == f"{name} x{model.scale} (spandrel)"
    assert ZOO.spandrel_match(model, net, ARCHS[name].size) < 1e-4


def test_front_door_hooks_are_in_place() -> None:
    """spandrel_zoo applies spandrel_forwards' table, switches srprune's own [0, 255]
    subclasses (whole-net forwards), and keeps dict hyperparameters (AuraSR)."""
    assert all(ZOO.front_door_hooks().values()), ZOO.front_door_hooks()


@pytest.mark.parametrize("name", ["MMRealSR", "RealCUGAN"])
def test_front_door_switches_whole_nets(name: str, tmp_path: Path) -> None:
    """A checkpoint's root net gets its whole-net forward: one image out, on [0, 255]."""
    model, net = _load(name, tmp_path)
    assert type(model.net).forward is spandrel_zoo._FUNCTIONAL_FORWARDS[type(net).__name__]
    size = ARCHS[name].size
    with torch.no_grad():
        out = model(torch.rand(1, 3, size, size) * 255)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, size * model.scale,
                                                           size * model.scale)


# ----------------------------------------------------------------- the forwards themselves


def test_a_shared_class_name_gets_its_own_architectures_forward(tmp_path: Path) -> None:
    """HAT, SwinIR and DCTLSA each have a ``WindowAttention``: each runs its own forward."""
    forward = spandrel_zoo._FUNCTIONAL_FORWARDS["WindowAttention"]
    seen = {}
    for name in ("HAT", "SwinIR", "DCTLSA"):
        model, _ = _load(name, tmp_path)
        attention = next(m for m in model.net.modules()
                         if type(m).__name__ == "WindowAttention")
        assert type(attention).forward is forward
        base = spandrel_forwards.spandrel_base(type(attention))
        seen[name] = spandrel_forwards._BY_MODULE.get((base.__module__, "WindowAttention"))
    assert seen["HAT"] is spandrel_forwards._hat_window_attention
    assert seen["SwinIR"] is not None and seen["SwinIR"] is not seen["HAT"]
    assert seen["DCTLSA"] is None  # not registered: spandrel's own forward runs


@pytest.mark.parametrize("size", [(20, 24), (5, 7), (1, 3)])
def test_reflect_pad_is_reflection_where_one_reaches(size: tuple[int, int]) -> None:
    x = torch.rand(1, 2, *size)
    pads = (3, 4, 2, 5)
    padded = spandrel_forwards.reflect_pad(x, pads)
    assert padded.shape[2:] == (size[0] + 7, size[1] + 7)
    if min(size) > 5:
        assert torch.equal(padded, F.pad(x, pads, "reflect"))
    if min(size) > 1:  # reflected again: still a mirror image of the input's values
        assert set(padded.unique().tolist()) <= set(x.unique().tolist())


def test_category_order_is_the_stable_sort() -> None:
    category = torch.randint(0, 5, (3, 64))
    order, reverse = spandrel_forwards._category_order(category)
    assert torch.equal(order, torch.sort(category, dim=-1, stable=True).indices)
    index = torch.arange(64).expand(3, -1)
    assert torch.equal(torch.gather(order, -1, reverse), index)


def test_dense_experts_equal_spandrels_routing() -> None:
    from spandrel.architectures.SeemoRe.__arch.seemore_arch import MoEBlock

    torch.manual_seed(0)
    block = MoEBlock(in_ch=8, num_experts=3, topk=1).eval()
    x = torch.rand(1, 8, 16, 16)
    with torch.no_grad():
        reference = block(x)
        spandrel_zoo.functional_forwards(block)
        assert torch.allclose(block(x), reference, atol=1e-6)
        two = block(torch.cat([x, x.flip(-1)]))  # spandrel's routing takes one image only
    assert two.shape == (2, 8, 16, 16) and torch.allclose(two[:1], reference, atol=1e-6)


def test_space_to_depth_is_pixel_unshuffle() -> None:
    x = torch.rand(2, 3, 8, 12)
    assert torch.equal(spandrel_forwards._space_to_depth(x, 2), F.pixel_unshuffle(x, 2))


def test_small_inputs_run_where_spandrels_real_cugan_cannot(tmp_path: Path) -> None:
    model, _ = _load("RealCUGAN", tmp_path)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16) * 255).shape == (1, 3, 32, 32)
