"""Bias compensation (srprune.prune.compensation): exact for constant activations, a large
error cut where removed channels have large means, only with calibration data, never on top
of a criterion's own bias refit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from srprune.config import RunConfig
from srprune.criteria.magnitude import L1Magnitude
from srprune.errors import SrpruneError
from srprune.hooks import capture_layer
from srprune.models.srmodel import SRModel
from srprune.prune.compensation import compensate_biases, consumer_state, input_means
from srprune.prune.context import PruneContext
from srprune.prune.engine import compress
from srprune.prune.graph import SRGraph

SCALE = 2


class Tiny(nn.Module):
    """head -> [a -> ReLU -> b] + skip -> tail -> PixelShuffle; ``a`` is an internal unit
    whose only consumer is ``b``."""

    def __init__(self, k: int = 1, head_k: int = 1, bias_b: bool = True,
                 b_k: int | None = None) -> None:
        super().__init__()
        b_k = k if b_k is None else b_k
        self.head = nn.Conv2d(3, 8, head_k, padding=head_k // 2)
        self.a = nn.Conv2d(8, 8, k, padding=k // 2)
        self.b = nn.Conv2d(8, 8, b_k, padding=b_k // 2, bias=bias_b)
        self.tail = nn.Conv2d(8, 3 * SCALE * SCALE, 3, padding=1)
        self.up = nn.PixelShuffle(SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x / 255)
        return self.up(self.tail(h + self.b(torch.relu(self.a(h)))))


def tiny(seed: int = 0, **kw) -> SRModel:
    torch.manual_seed(seed)
    net = Tiny(**kw).eval()
    with torch.no_grad():  # ReLU outputs with large, unequal means: what removal loses
        net.a.bias.copy_(torch.linspace(1.0, 6.0, 8))
    return SRModel(net=net, scale=SCALE, arch="tiny")


def batches(n: int = 2, size: int = 10, constant: float | None = None, seed: int = 1) -> list:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lr = torch.rand(4, 3, size, size, generator=gen) * 255
        if constant is not None:
            lr = torch.full_like(lr, constant)
        out.append(([lr], torch.zeros(4, 3, size * SCALE, size * SCALE)))
    return out


def unit_a(model: SRModel, data: list):
    graph = SRGraph(model.net, SCALE)
    ctx = PruneContext(model=model, original=copy.deepcopy(model), graph=graph, batches=data)
    unit = next(u for u in graph.units("internal") if u.name == "a")
    return graph, ctx, unit


def b_output(model: SRModel, lr: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), capture_layer(model.net.b, "output") as got:
        model.net(lr)
    return got[0]


def halve_a(model: SRModel, data: list, compensate: bool) -> dict[str, float]:
    """Prune unit ``a`` to 4 channels by l1, with or without compensation."""
    graph, ctx, unit = unit_a(model, data)
    before = consumer_state(unit)
    kept = L1Magnitude().select(unit, 4, ctx)
    changes = compensate_biases(unit, kept, ctx, before) if compensate else {}
    graph.prune(unit, kept)
    return changes


def test_exact_for_constant_activations():
    """Constant inputs make every activation constant: compensation restores the consumer's
    output exactly (1x1 convs: no border), and the bias moves by W[:, removed] @ mu."""
    data = batches(constant=100.0)
    lr = data[0][0][0]
    original = tiny()
    want = b_output(original, lr)
    model = copy.deepcopy(original)
    _, ctx, unit = unit_a(model, data)
    kept = L1Magnitude().select(unit, 4, ctx)
    removed = [j for j in range(8) if j not in kept]
    mu = torch.relu(original.net.a(original.net.head(lr / 255)))[0, :, 0, 0].detach().double()
    expect = original.net.b.weight.detach().double()[:, removed, 0, 0] @ mu[removed]
    bias0 = model.net.b.bias.detach().double().clone()
    model2 = copy.deepcopy(original)
    halve_a(model2, data, compensate=True)
    torch.testing.assert_close(model2.net.b.bias.detach().double() - bias0, expect,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b_output(model2, lr), want, rtol=1e-5, atol=1e-4)
    plain = copy.deepcopy(original)
    halve_a(plain, data, compensate=False)
    assert (b_output(plain, lr) - want).abs().max() > 1e-2  # removal alone is not exact


def test_exact_in_the_interior_of_a_3x3_consumer():
    """A 3x3 consumer: the kernel sum is its interior response, exact away from borders."""
    data = batches(constant=60.0, size=12)
    lr = data[0][0][0]
    original = tiny(b_k=3)
    want = b_output(original, lr)
    model = copy.deepcopy(original)
    halve_a(model, data, compensate=True)
    got = b_output(model, lr)
    torch.testing.assert_close(got[..., 2:-2, 2:-2], want[..., 2:-2, 2:-2], rtol=1e-5,
                               atol=1e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_compensation_cuts_the_error_of_removing_large_mean_channels(k):
    data = batches(n=3, size=12)
    test = batches(n=1, size=16, seed=7)[0][0][0]  # other images than the calibration ones
    original = tiny(seed=3, k=k, head_k=3)
    want = b_output(original, test)
    errors = {}
    for compensate in (False, True):
        model = copy.deepcopy(original)
        halve_a(model, data, compensate)
        errors[compensate] = float((b_output(model, test) - want).pow(2).mean())
    assert errors[True] < 0.2 * errors[False], errors


def test_rescaled_kept_weights_keep_the_mean():
    """A criterion that rescales the kept inputs (thinet's update) but leaves the bias: the
    shift is S_before @ mu - S_after[:, kept] @ mu[kept], exact again for constant inputs."""
    data = batches(constant=80.0)
    lr = data[0][0][0]
    original = tiny()
    want = b_output(original, lr)
    model = copy.deepcopy(original)
    graph, ctx, unit = unit_a(model, data)
    before = consumer_state(unit)
    kept = [0, 2, 4, 6]
    with torch.no_grad():
        model.net.b.weight[:, kept] *= 2.0
    compensate_biases(unit, kept, ctx, before)
    graph.prune(unit, kept)
    torch.testing.assert_close(b_output(model, lr), want, rtol=1e-5, atol=1e-4)


def test_nothing_without_data_or_without_removal():
    model = tiny()
    _, ctx, unit = unit_a(model, [])
    state = copy.deepcopy(model.net.state_dict())
    assert compensate_biases(unit, [0, 1, 2, 3], ctx) == {}
    _, ctx, unit = unit_a(model, batches())
    assert compensate_biases(unit, list(range(8)), ctx) == {}
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_engine_compensates_only_with_data():
    data = batches()
    runs = {}
    for compensate in (False, True):
        for given in (False, True):
            model = tiny()
            compress(model, 0.1, data if given else [], criterion="l1", scope="internal",
                     compensate=compensate)
            runs[compensate, given] = model.net.b.bias.detach().clone()
    assert torch.equal(runs[False, False], runs[True, False])  # no data: plain removal
    assert torch.equal(runs[False, False], runs[False, True])  # off: plain removal
    assert not torch.allclose(runs[True, True], runs[False, True])


def test_a_criterion_that_refits_the_bias_is_left_alone():
    """cp fits the consumer's intercept itself: compensation must not add to it."""
    data = batches(n=3, size=12)
    biases = []
    for compensate in (False, True):
        model = tiny(k=3, head_k=3)
        compress(model, 0.1, data, criterion="cp", scope="internal", compensate=compensate,
                 criterion_options={"samples": 300})
        biases.append(model.net.b.bias.detach().clone())
    assert torch.equal(biases[0], biases[1])


def test_trunk_units_only_on_request():
    """A trunk channel's mean is image content, not an offset: left alone by default."""
    model = tiny()
    graph = SRGraph(model.net, SCALE)
    ctx = PruneContext(model=model, original=copy.deepcopy(model), graph=graph,
                       batches=batches())
    trunk = next(u for u in graph.units("all") if u.kind == "trunk")
    assert consumer_state(trunk) == {}
    assert compensate_biases(trunk, [0, 1, 2, 3], ctx) == {}
    state = consumer_state(trunk, trunks=True)
    assert set(state) == {"a", "tail"}
    assert set(compensate_biases(trunk, [0, 1, 2, 3], ctx, state, trunks=True)) == {"a", "tail"}


def test_bias_free_consumer_is_skipped():
    model = tiny(bias_b=False)
    graph, ctx, unit = unit_a(model, batches())
    assert consumer_state(unit) == {}
    assert compensate_biases(unit, [0, 1, 2, 3], ctx) == {}
    graph.prune(unit, [0, 1, 2, 3])
    assert model.net.b.bias is None


def test_input_means_of_conv_and_linear_inputs():
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten(2), nn.Linear(4, 5))
    x = torch.rand(3, 2, 2, 2)
    means = input_means(net, {"0": net[0], "2": net[2]}, [x, x + 1])
    torch.testing.assert_close(means["0"], torch.cat([x, x + 1]).double().mean((0, 2, 3)))
    hidden = torch.cat([net[1](net[0](x)), net[1](net[0](x + 1))]).detach().double()
    torch.testing.assert_close(means["2"], hidden.flatten(0, 1).mean(0))


def test_setting_must_be_a_bool():
    assert RunConfig.build(ratio=0.5).selection.compensate is True
    assert RunConfig.build(ratio=0.5, compensate=False).selection.compensate is False
    with pytest.raises(SrpruneError, match="compensate"):
        RunConfig.build(ratio=0.5, compensate="yes")
