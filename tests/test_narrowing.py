"""A unit narrowed for a measurement (srprune.search.narrowing) and the latency search's
sensitivity measured through the run's criterion: the model is put back exactly, and a unit
whose L1 ranking is wrong is priced by what the criterion really loses."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from srprune.criteria.cp import ChannelPruning
from srprune.criteria.magnitude import L1Magnitude
from srprune.models.srmodel import SRModel
from srprune.prune.context import PruneContext
from srprune.prune.graph import SRGraph
from srprune.search.latency import LatencyTarget
from srprune.search.narrowing import narrowed

SCALE = 2


class Misranked(nn.Module):
    """head -> a -> ReLU -> b (+ skip) -> tail -> PixelShuffle. Unit ``a``'s channels 0-3 have
    large filters that ``b`` ignores; channels 4-7 small filters that ``b`` relies on: ``l1``
    keeps the useless half."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 3 * SCALE * SCALE, 3, padding=1)
        self.up = nn.PixelShuffle(SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x / 255)
        return self.up(self.tail(h + self.b(torch.relu(self.a(h)))))


def misranked() -> SRModel:
    torch.manual_seed(0)
    net = Misranked().eval()
    with torch.no_grad():
        net.a.weight[:4] *= 20.0
        net.b.weight[:, :4] *= 0.001
        net.b.weight[:, 4:] *= 5.0
    return SRModel(net=net, scale=SCALE, arch="misranked")


def batches(n: int = 2, size: int = 12) -> list:
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        lr = torch.rand(4, 3, size, size, generator=gen) * 255
        out.append(([lr], torch.zeros(4, 3, size * SCALE, size * SCALE)))
    return out


def context(model: SRModel, criterion=None, compensate: bool = False):
    graph = SRGraph(model.net, SCALE)
    ctx = PruneContext(model=model, original=copy.deepcopy(model), graph=graph,
                       batches=batches(), criterion=criterion,
                       criterion_name="cp" if criterion is not None else "",
                       compensate=compensate)
    unit = next(u for u in graph.units("internal") if u.name == "a")
    return ctx, unit


def state(model: SRModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def output(model: SRModel) -> torch.Tensor:
    with torch.no_grad():
        return model(batches()[0][0][0])


def test_inside_the_block_the_removed_channels_carry_zeros_and_after_it_all_is_put_back():
    model = misranked()
    ctx, unit = context(model)
    before, reference = state(model), output(model)
    with narrowed(unit, 4, ctx, order=[7, 6, 5, 4, 3, 2, 1, 0]) as kept:
        assert kept == [4, 5, 6, 7]
        assert torch.count_nonzero(model.net.a.weight[:4]) == 0
        assert torch.count_nonzero(model.net.a.bias[:4]) == 0
        assert torch.equal(model.net.a.weight[4:], before["a.weight"][4:])
        assert not torch.allclose(output(model), reference)
    for key, value in state(model).items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(output(model), reference)


def test_a_criterion_that_refits_or_replaces_parameters_is_undone_even_on_error():
    model = misranked()
    ctx, unit = context(model, ChannelPruning(samples=400))
    before = state(model)
    with narrowed(unit, 4, ctx, ctx.criterion) as kept:
        assert len(kept) == 4
        assert not torch.equal(model.net.b.weight, before["b.weight"])  # cp refit b
    assert all(torch.equal(v, before[k]) for k, v in state(model).items())

    class Replacing(L1Magnitude):
        def select(self, unit, n_keep, ctx):
            ctx.model.net.b.weight = nn.Parameter(torch.full_like(ctx.model.net.b.weight, 9.0))
            raise RuntimeError("criterion failed")

    with pytest.raises(RuntimeError, match="criterion failed"), \
            narrowed(unit, 4, ctx, Replacing()):
        pass
    assert all(torch.equal(v, before[k]) for k, v in state(model).items())


def test_exactly_one_of_criterion_and_order():
    model = misranked()
    ctx, unit = context(model)
    with pytest.raises(ValueError, match="exactly one"), narrowed(unit, 4, ctx):
        pass


def test_the_criterion_prices_a_misranked_unit_by_what_it_really_loses():
    """Halving ``a`` the l1 way (the strongest filters stay) costs several times what ``cp``'s
    choice and refit cost; the search's table says so only in the "criterion" order."""
    model = misranked()
    ctx, unit = context(model, ChannelPruning(samples=400))
    steps, floor = {"a": 4}, {"a": 4}
    by_l1 = LatencyTarget(speedup=1.5, align=1, order="l1")._sensitivity(
        ctx, [unit], steps, floor)["a"][4]
    search = LatencyTarget(speedup=1.5, align=1, order="criterion")
    by_cp = search._sensitivity(ctx, [unit], steps, floor)["a"][4]
    assert search.sensitivity_order == "cp"
    assert by_cp > 0
    assert by_l1 > 5 * by_cp, (by_l1, by_cp)


def test_l1_is_the_default_order_and_the_fallback_without_a_criterion():
    model = misranked()
    ctx, unit = context(model, ChannelPruning(samples=400))
    default = LatencyTarget(speedup=1.5, align=1)
    by_default = default._sensitivity(ctx, [unit], {"a": 4}, {"a": 4})
    assert default.order == "l1" and default.sensitivity_order == "l1"
    ctx, unit = context(model)
    search = LatencyTarget(speedup=1.5, align=1, order="criterion")
    table = search._sensitivity(ctx, [unit], {"a": 4}, {"a": 4})
    assert search.sensitivity_order == "l1"
    explicit = LatencyTarget(speedup=1.5, align=1, order="l1")._sensitivity(
        ctx, [unit], {"a": 4}, {"a": 4})
    assert table == explicit == by_default


def test_an_unknown_order_is_refused():
    from srprune.errors import SrpruneError

    with pytest.raises(SrpruneError, match="order must be 'criterion' or 'l1'"):
        LatencyTarget(speedup=1.5, order="random")
