"""Channel splits, chunks and grouped convolutions: the graph cuts, aligns and replays them.

Every pruning here is checked for exactness: the channels a unit drops are first zeroed in
the unpruned net (their producer rows and biases), so the pruned net must give the same
output. A wrong index mapping (the split's parts swapped, a grouped conv pruned unevenly)
fails that check.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.io.artifact import read_artifact, write_artifact
from srprune.measure.export import check_parity, export_onnx
from srprune.models import SRModel, resolve_model
from srprune.models.artifacts import load_artifact, save_artifact
from srprune.models.splits import channel_splits
from srprune.prune.engine import compress
from srprune.prune.graph import SRGraph
from srprune.registry import MODELS

ATOL = 1e-3  # outputs are on 0..255


class Distilling(nn.Module):
    """IMDN in miniature: conv, split into a kept quarter and a remainder, conv on the
    remainder, concat of the parts, channel attention, 1x1 fusion, residual."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(3 * c // 4, c // 4, 3, padding=1)
        self.att = nn.Sequential(nn.Conv2d(c // 2, 4, 1), nn.ReLU(), nn.Conv2d(4, c // 2, 1),
                                 nn.Sigmoid())
        self.fuse = nn.Conv2d(c // 2, c, 1)
        self.tail = nn.Conv2d(c, 3 * 4, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        self.quarter = c // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        kept, rest = torch.split(torch.relu(self.c1(f)), [self.quarter, 3 * self.quarter],
                                 dim=1)
        cat = torch.cat([kept, torch.relu(self.c2(rest))], dim=1)
        return self.up(self.tail(self.fuse(cat * self.att(cat.mean((2, 3), keepdim=True)))
                                 + f))


class Partial(nn.Module):
    """PLKSR in miniature: split, a conv on the first part only, concat back (the conv's
    part first), then a 1x1 over all channels: Torch-Pruning finds the split's consumers
    in the other order."""

    def __init__(self, c: int = 12) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.mix = nn.Conv2d(c, c, 1)
        self.partial = nn.Conv2d(c // 4, c // 4, 3, padding=1)
        self.refine = nn.Conv2d(c, c, 1)
        self.tail = nn.Conv2d(c, 3 * 4, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        self.part = c // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        m = torch.relu(self.mix(f))
        a, b = torch.split(m, [self.part, m.size(1) - self.part], dim=1)
        return self.up(self.tail(self.refine(torch.cat([self.partial(a), b], dim=1)) + f))


class Chunked(nn.Module):
    """SAFMN-like: ``chunk(2)`` of one conv's output, a conv on one half, concat back."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.expand = nn.Conv2d(c, 4 * c, 1)
        self.level = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.shrink = nn.Conv2d(4 * c, c, 1)
        self.tail = nn.Conv2d(c, 3 * 4, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        low, high = torch.relu(self.expand(f)).chunk(2, dim=1)
        mixed = torch.cat([torch.relu(self.level(low)), high], dim=1)
        return self.up(self.tail(self.shrink(mixed) + f))


class Gated(nn.Module):
    """A gate: one half of a chunk multiplies the other (channel j with channel j + c)."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.tail = nn.Conv2d(c, 3 * 4, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.expand(self.head(x)).chunk(2, dim=1)
        return self.up(self.tail(gate * value))


class Grouped(nn.Module):
    """CARN-M's efficient residual block: two grouped 3x3 convs and a 1x1, residual."""

    def __init__(self, c: int = 16, groups: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.g1 = nn.Conv2d(c, c, 3, padding=1, groups=groups)
        self.g2 = nn.Conv2d(c, c, 3, padding=1, groups=groups)
        self.pw = nn.Conv2d(c, c, 1)
        self.tail = nn.Conv2d(c, 3 * 4, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        body = self.pw(torch.relu(self.g2(torch.relu(self.g1(f)))))
        return self.up(self.tail(torch.relu(body + f)))


def _model(net: nn.Module) -> SRModel:
    torch.manual_seed(0)
    for p in net.parameters():
        nn.init.uniform_(p, -0.2, 0.2)
    return SRModel(net=net.eval(), scale=2, arch="test")


def _x(seed: int = 0, size: tuple[int, int] = (10, 12)) -> torch.Tensor:
    return torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed)) * 255


def _zero_and_prune(model: SRModel, graph: SRGraph, name: str, keep: list[int]) -> None:
    """Zero the producer rows of the channels ``name`` drops, then prune them; the output
    must not change."""
    (unit,) = [u for u in graph.every_unit() if u.name == name]
    assert not unit.blocked, unit.blocked
    drop = [j for j in range(unit.width) if j not in keep]
    with torch.no_grad():
        for _, module, index in unit.producer_modules():
            rows = index[drop].flatten()
            module.weight[rows] = 0
            if module.bias is not None:
                module.bias[rows] = 0
        reference = model(_x())
    graph.prune(unit, keep)
    with torch.no_grad():
        assert torch.allclose(model(_x()), reference, atol=ATOL)


def test_a_split_cuts_its_producer_into_segments_pruned_exactly():
    model = _model(Distilling())
    graph = SRGraph(model.net, 2)
    names = {u.name: u for u in graph.every_unit()}
    # c1's first quarter is coupled with the attention's output (found first): one unit
    assert {"c1[4:16]", "att.2[0:4]", "att.2[4:8]"} <= set(names), sorted(names)
    assert set(names["att.2[0:4]"].producers) == {"c1", "att.2"}
    assert names["c1[4:16]"].width == 12 and names["c1[4:16]"].kind == "internal"
    assert names["c1[4:16]"].consumers == ["c2"]
    assert not any(u.blocked for u in names.values())
    _zero_and_prune(model, graph, "c1[4:16]", [0, 2, 3, 5, 7, 8, 11])
    _zero_and_prune(model, graph, "att.2[0:4]", [1, 3])
    assert model.net.c1.out_channels == 9 and model.net.c2.in_channels == 7
    # the net replays its split with the new sizes: call 0 of a forward pass, [2, 7]
    assert channel_splits(model.net) == {0: [2, 7]}
    for size in ((10, 12), (7, 5)):
        assert model(_x(1, size)).shape == (1, 3, 2 * size[0], 2 * size[1])


def test_split_parts_go_to_the_consumers_that_read_them():
    model = _model(Partial())
    graph = SRGraph(model.net, 2)
    by_name = {u.name: u for u in graph.every_unit()}
    assert {"mix[0:3]", "mix[3:12]"} <= set(by_name), sorted(by_name)
    assert by_name["mix[0:3]"].consumers == ["partial"]
    assert set(by_name["mix[3:12]"].consumers) == {"refine"}
    _zero_and_prune(model, graph, "mix[3:12]", [0, 1, 4, 8])
    _zero_and_prune(model, graph, "mix[0:3]", [0, 2])
    assert model.net.mix.out_channels == 6 and model.net.partial.in_channels == 2


def test_chunk_halves_are_pruned_apart_and_replayed_as_a_split():
    model = _model(Chunked())
    graph = SRGraph(model.net, 2)
    by_name = {u.name: u for u in graph.every_unit()}
    assert {"expand[0:16]", "expand[16:32]"} <= set(by_name), sorted(by_name)
    assert by_name["expand[0:16]"].consumers == ["level"]
    _zero_and_prune(model, graph, "expand[0:16]", list(range(0, 16, 2)))
    _zero_and_prune(model, graph, "expand[16:32]", list(range(0, 16, 4)))
    assert channel_splits(model.net) == {0: [8, 4]}
    assert model.net.shrink.in_channels == 16 + 4


def test_a_gate_across_chunk_halves_is_refused_with_its_reason():
    graph = SRGraph(_model(Gated()).net, 2)
    halves = [u for u in graph.every_unit() if u.name.startswith("expand")]
    assert [u.name for u in halves] == ["expand[0:4]", "expand[4:8]"]
    assert all("expand: 8 channels meet a 4-channel part" in u.blocked for u in halves)


def test_grouped_convolutions_are_pruned_evenly_across_groups():
    model = _model(Grouped())
    graph = SRGraph(model.net, 2)
    (unit,) = [u for u in graph.every_unit() if u.name == "g1"]
    assert (unit.layout, unit.group_size, unit.width) == ("strided", 4, 4)
    producer = {name: index for name, _, index in unit.producer_modules()}
    # selectable channel j is one channel in each of the 4 groups: rows j, j+4, j+8, j+12
    assert producer["g1"].tolist()[1] == [1, 5, 9, 13]
    _zero_and_prune(model, graph, "g1", [0, 2, 3])
    assert (model.net.g1.out_channels, model.net.g1.groups) == (12, 4)
    assert tuple(model.net.g2.weight.shape) == (16, 3, 3, 3)
    (trunk,) = [u for u in graph.every_unit() if "head" in u.producers]
    assert (trunk.layout, trunk.width, trunk.blocked) == ("strided", 4, "")
    _zero_and_prune(model, graph, trunk.name, [1, 3])
    assert (model.net.head.out_channels, model.net.g1.in_channels) == (8, 8)


def test_a_grouped_conv_feeding_a_pixel_shuffle_is_refused_with_its_reason():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1),
                        nn.Conv2d(8, 16, 3, padding=1, groups=2), nn.PixelShuffle(2),
                        nn.Conv2d(4, 3, 3, padding=1))
    graph = SRGraph(_model(net).net, 2)
    (unit,) = [u for u in graph.every_unit() if u.name == "1"]
    assert "grouped convolution 1 (groups=2)" in unit.blocked
    assert "PixelShuffle" in unit.blocked


@pytest.mark.parametrize("net", [Distilling, Partial, Chunked, Grouped])
def test_compressed_split_and_grouped_nets_export_and_round_trip(net, tmp_path, monkeypatch):
    module = types.ModuleType("srprune_test_couplings")
    setattr(module, net.__name__, net)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    model = resolve_model(f"{module.__name__}:{net.__name__}", scale=2)
    model.net.load_state_dict(_model(net()).net.state_dict())
    result = compress(model, 0.5, criterion="l1", scope="all", input_size=(12, 12))
    assert 0.35 < result.ratio_achieved < 0.65, result.summary()
    onnx = export_onnx(model, tmp_path / "m.onnx", (12, 12))
    check_parity(model, onnx.path, (12, 12))
    loaded = load_artifact(save_artifact(model, tmp_path / "m.srp"), trust_import=True)
    assert channel_splits(loaded.net) == channel_splits(model.net)
    with torch.no_grad():
        assert torch.allclose(loaded(_x(2)), model(_x(2)), atol=1e-4)


def test_a_damaged_split_table_is_one_clear_error(tmp_path):
    model = _model(Distilling())
    compress(model, 0.5, criterion="l1", scope="all", input_size=(12, 12))
    model.name, model.arch = "edsr", "edsr"  # any registered name: the file fails earlier
    path = save_artifact(model, tmp_path / "m.srp")
    data = read_artifact(path)
    assert data.splits
    data.splits = {0: [-1, 3]}
    write_artifact(data, tmp_path / "bad.srp")
    with pytest.raises(SrpruneError, match="'channel_splits' is not a table"):
        load_artifact(tmp_path / "bad.srp")


@pytest.mark.parametrize("name", ["plksr", "swinir-light"])
def test_functional_forwards_compute_what_spandrel_computes(name):
    from srprune.models import spandrel_zoo

    spec = MODELS.get(name)
    ours = spec.build(spec.small_config(2)).net  # the CI-size configuration
    switched = [m for m in ours.modules() if type(m) in spandrel_zoo._FUNCTIONAL.values()]
    assert switched
    theirs = __import__("copy").deepcopy(ours)
    for module in theirs.modules():  # back to spandrel's own classes
        if type(module) in spandrel_zoo._FUNCTIONAL.values():
            module.__class__ = type(module).__mro__[1]
    x = _x(3, (16, 16))
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x.clone()), atol=1e-3)
