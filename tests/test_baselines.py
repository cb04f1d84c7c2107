"""Reconstruction baselines (cp, thinet) and dcp on tiny nets: counts, errors, seeds, bad input."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from srprune.criteria.cp import ChannelPruning, lasso
from srprune.criteria.gram import ChannelGram, channel_gram, output_error
from srprune.criteria.least_squares import least_squares_update, ridge_solve
from srprune.criteria.magnitude import L1Magnitude
from srprune.criteria.sampling import ConsumerStats, collect_stats, conv_consumers, patches
from srprune.criteria.thinet import ThiNet, greedy_removal
from srprune.errors import SrpruneError
from srprune.hooks import capture_layer
from srprune.models import build_model
from srprune.models.zoo import build_srnet
from srprune.prune.context import PruneContext
from srprune.prune.engine import compress, make_criterion
from srprune.prune.graph import SRGraph

SCALE = 2


def make_batches(n: int = 2, batch: int = 4, size: int = 12, seed: int = 1,
                 constant: float | None = None) -> list:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lr = torch.rand(batch, 3, size, size, generator=gen) * 255
        if constant is not None:
            lr = torch.full_like(lr, constant)
        out.append(([lr], torch.rand(batch, 3, size * SCALE, size * SCALE, generator=gen) * 255))
    return out


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_srnet(scale=SCALE, n_feats=8, n_blocks=2, duals=False).eval()


def context(model, batches: list, seed: int = 0) -> PruneContext:
    original = copy.deepcopy(model).eval()
    return PruneContext(model=model, original=original, graph=SRGraph(model.net, SCALE),
                        batches=batches, seed=seed)


def all_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.net.parameters())


def consumer_error(ctx: PruneContext, name: str, batches: list) -> float:
    """Squared error of consumer ``name``'s output against the original model's."""
    total = 0.0
    for lr, _ in batches:
        with torch.no_grad(), capture_layer(ctx.module(name), "output") as got, \
                capture_layer(ctx.module(name, original=True), "output") as want:
            ctx.model.net(lr[0])
            ctx.original.net(lr[0])
        total += float(((got[0] - want[0]) ** 2).sum())
    return total


# ----------------------------------------------------------------- shared helpers


@pytest.mark.parametrize("conv", [
    nn.Conv2d(3, 4, 3, padding=1),
    nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"),
    nn.Conv2d(3, 4, (3, 1), dilation=2, padding="same"),
    nn.Conv2d(3, 4, 1),
])
def test_patches_reproduce_the_convolution(conv):
    x = torch.rand(2, 3, 9, 9)
    y = conv(x).detach()
    img = torch.tensor([0, 1, 1, 0])
    oh = torch.tensor([0, y.shape[2] - 1, 1, 2])
    ow = torch.tensor([y.shape[3] - 1, 0, 2, 1])
    flat = patches(x, conv, img, oh, ow)
    expect = y[img, :, oh, ow]
    got = flat @ conv.weight.detach().reshape(4, -1).T + conv.bias.detach()
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)


def random_stats(bias: bool = True, n: int = 60) -> tuple[ConsumerStats, torch.Tensor,
                                                         torch.Tensor]:
    """Stats of a 5-input conv whose unit owns inputs 0, 2, 4 (1 and 3 are other channels)."""
    gen = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(5, 4, 3, bias=bias).double()
    x = torch.randn(n, 45, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    stats = ConsumerStats(name="c", module=conv, index=torch.tensor([[0], [2], [4]]), n=n,
                          sum_x=x.sum(0), sum_y=y.sum(0), xx=x.T @ x, xy=x.T @ y,
                          yy=float((y * y).sum()))
    return stats, x, y


def test_channel_gram_matches_explicit_contributions():
    stats, x, y = random_stats()
    w = stats.module.weight.detach().reshape(4, 5, 9)
    xs = x.reshape(-1, 5, 9)
    z = torch.einsum("iqa,oqa->ioq", xs, w)  # contribution of each input channel
    r = y - stats.module.bias.detach() - z[:, :, 1] - z[:, :, 3]
    zu = z[:, :, [0, 2, 4]]
    gram = channel_gram(stats)
    torch.testing.assert_close(gram.gram, torch.einsum("ioj,iol->jl", zu, zu))
    torch.testing.assert_close(gram.corr, torch.einsum("io,ioj->j", r, zu))
    assert gram.rr == pytest.approx(float((r * r).sum()))
    kept = [0, 2]
    plain = y - stats.module.bias.detach() - z[:, :, [0, 1, 3, 4]].sum(2)
    assert output_error(stats, kept) == pytest.approx(float((plain * plain).sum()))
    assert gram.error(kept) == pytest.approx(float((plain * plain).sum()))


@pytest.mark.parametrize("bias", [True, False])
def test_least_squares_update_is_the_least_squares_solution(bias):
    stats, x, y = random_stats(bias=bias)
    kept = [1, 2]  # unit channels 1, 2 -> inputs 2, 4; inputs 1, 3 stay too
    cols = stats.columns(torch.tensor([1, 2, 3, 4]))
    design = x[:, cols]
    if bias:
        design = torch.cat([design, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    solution = torch.linalg.lstsq(design, y).solution
    assert least_squares_update(stats, kept, ridge=0.0, who="test")
    w = stats.module.weight.detach().reshape(4, -1)[:, cols]
    torch.testing.assert_close(w, solution[: len(cols)].T)
    if bias:
        torch.testing.assert_close(stats.module.bias.detach(), solution[-1])
    residual = y - design @ solution
    assert output_error(stats, kept) == pytest.approx(float((residual**2).sum()))


def test_ridge_solve_never_returns_nan():
    zero = torch.zeros(4, 4, dtype=torch.float64)
    rhs = torch.ones(4, 2, dtype=torch.float64)
    for ridge in (0.0, 1e-3):
        sol = ridge_solve(zero, rhs, ridge)
        assert sol is not None and bool(torch.isfinite(sol).all())
    singular = torch.ones(4, 4, dtype=torch.float64)  # rank one
    sol = ridge_solve(singular, singular @ rhs, 0.0)
    torch.testing.assert_close(singular @ sol, singular @ rhs)
    assert ridge_solve(torch.full((2, 2), float("nan"), dtype=torch.float64),
                       rhs[:2], 1e-3) is None


# ----------------------------------------------------------------- cp


def test_lasso_on_orthogonal_channels_keeps_the_strongest():
    gram = ChannelGram(torch.eye(4, dtype=torch.float64),
                       torch.tensor([3.0, -2.0, 1.0, 0.5], dtype=torch.float64), 20.0, 4)
    crit = ChannelPruning()
    assert crit.lasso_select(gram, 2) == [0, 1]
    assert crit.lasso_select(gram, 3) == [0, 1, 2]
    beta = lasso(gram.gram.numpy(), gram.corr.numpy(), 1.5, torch.zeros(4).numpy(), 50, 0)
    assert beta.tolist() == [1.5, -0.5, 0.0, 0.0]  # soft thresholding


@pytest.mark.parametrize("n_keep", [1, 3, 5, 8])
def test_cp_keeps_exactly_the_requested_count(n_keep):
    model = tiny_model()
    ctx = context(model, make_batches())
    unit = ctx.graph.units()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the documented top-|beta| fallback may speak
        kept = ChannelPruning().select(unit, n_keep, ctx)
    assert len(kept) == len(set(kept)) == n_keep
    assert all(0 <= j < unit.width for j in kept)
    assert all_finite(model)


@pytest.mark.parametrize("scope", ["internal", "all"])
@pytest.mark.parametrize("criterion", ["cp", "thinet"])
def test_compress_runs_and_stays_finite(criterion, scope):
    model = tiny_model()
    result = compress(model, 0.4, criterion=criterion, scope=scope, batches=make_batches(),
                      input_size=(12, 12))
    assert result.after.params < result.before.params
    assert all_finite(model)
    out = model(make_batches(1)[0][0][0])
    assert bool(torch.isfinite(out).all())


# ----------------------------------------------------------------- reconstruction quality


@pytest.mark.parametrize(("make", "margin"), [
    (lambda: ChannelPruning(), 0.85),
    (lambda: ThiNet(update="scale"), 0.999),  # one scale per channel: a smaller gain
    (lambda: ThiNet(update="full", target="original"), 0.85),
])
def test_reconstruction_beats_plain_removal_of_the_same_channels(make, margin):
    crit = make()
    calib, fresh = make_batches(seed=1), make_batches(seed=7)
    fitted = context(tiny_model(), calib)
    plain = context(tiny_model(), calib)
    unit, twin = fitted.graph.units()[0], plain.graph.units()[0]
    consumer = unit.consumers[0]
    kept = crit.select(unit, 4, fitted)
    fitted.graph.prune(unit, kept)
    plain.graph.prune(twin, kept)  # same channels, weights untouched
    for data in (calib, fresh):
        fitted_error = consumer_error(fitted, consumer, data)
        assert fitted_error < margin * consumer_error(plain, consumer, data)


def test_thinet_greedy_removal_matches_the_explicit_greedy():
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    r = z @ torch.rand(6, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(
        40, generator=gen, dtype=torch.float64)
    gram = ChannelGram(z.T @ z, z.T @ r, float(r @ r), 40)
    alive = list(range(6))
    for n_keep in range(5, 1, -1):
        j = min(alive, key=lambda c: (gram.error([k for k in alive if k != c]), c))
        alive.remove(j)
        assert greedy_removal(gram, n_keep) == alive


# ----------------------------------------------------------------- determinism


def _dcp_or_skip() -> str:
    try:
        import srprune.criteria.dcp  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"dcp is unavailable: {exc}")
    return "dcp"


@pytest.mark.parametrize("criterion", ["cp", "thinet", "dcp"])
def test_same_seed_same_channels_and_weights(criterion):
    options = {}
    if criterion == "dcp":
        _dcp_or_skip()
        options = {"rounds": 2, "sgd_steps": 1}
    runs = []
    for _ in range(2):
        model = tiny_model()
        ctx = context(model, make_batches(), seed=3)
        unit = ctx.graph.units()[0]
        crit = make_criterion(criterion, options)
        crit.prepare(ctx)
        kept = crit.select(unit, 3, ctx)
        ctx.graph.prune(unit, kept)
        runs.append((kept, model.net.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key
    assert all(bool(torch.isfinite(v).all()) for v in runs[0][1].values())


def test_sampling_depends_on_the_seed():
    model = tiny_model()
    batches = make_batches(batch=8, size=16)
    stats = []
    for seed in (0, 0, 1):
        ctx = context(model, batches, seed=seed)
        stats.append(collect_stats(ctx.graph.units()[0], ctx, 100, "current", "test")[0])
    assert torch.equal(stats[0].xx, stats[1].xx)
    assert not torch.equal(stats[0].xx, stats[2].xx)
    assert stats[0].n == 8 * 2 * 7  # ceil(100 / 16 images) = 7 positions per image


# ----------------------------------------------------------------- bad input


def test_too_few_samples_fall_back_to_plain_removal():
    tiny = make_batches(n=1, batch=1, size=3)  # 9 positions < 4*9 + 1 unknowns per output
    fitted, plain = context(tiny_model(), tiny), context(tiny_model(), tiny)
    unit = fitted.graph.units()[0]
    with pytest.warns(UserWarning, match="samples for .* unknowns"):
        kept = ChannelPruning().select(unit, 4, fitted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ChannelPruning(reconstruct=False).select(plain.graph.units()[0], 4, plain) == kept
    for a, b in zip(fitted.model.net.parameters(), plain.model.net.parameters()):
        assert torch.equal(a, b)
    assert all_finite(fitted.model)


@pytest.mark.parametrize("criterion", ["cp", "thinet"])
def test_singular_systems_stay_finite(criterion):
    flat = make_batches(n=1, batch=2, size=8, constant=128.0)  # rank-deficient patches
    model = tiny_model()
    options = {"ridge": 0.0} if criterion == "cp" else {"ridge": 0.0, "update": "full"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compress(model, 0.5, criterion=criterion, batches=flat, input_size=(8, 8),
                 criterion_options=options)
    assert all_finite(model)
    assert bool(torch.isfinite(model(make_batches(1)[0][0][0])).all())


@pytest.mark.parametrize("criterion", ["cp", "thinet"])
def test_missing_data_is_a_clear_error(criterion):
    with pytest.raises(SrpruneError, match="needs calibration images"):
        compress(tiny_model(), 0.5, criterion=criterion, input_size=(12, 12))


@pytest.mark.parametrize(("criterion", "options", "message"), [
    ("cp", {"samples": 0}, "samples must be a positive integer"),
    ("cp", {"ridge": -1}, "ridge must be"),
    ("cp", {"target": "hr"}, "target must be one of"),
    ("cp", {"bisect_steps": -1}, "bisect_steps"),
    ("cp", {"alpha": 1}, "no option|unexpected keyword"),
    ("thinet", {"update": "sgd"}, "update must be one of"),
])
def test_bad_options_are_clear_errors(criterion, options, message):
    with pytest.raises(SrpruneError, match=message):
        make_criterion(criterion, options)


def test_grouped_consumers_are_refused():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Conv2d(8, 12, 1),
                        nn.PixelShuffle(2))
    from srprune.models.srmodel import SRModel

    model = SRModel(net=net, scale=2, arch="test")
    ctx = context(model, make_batches(n=1))
    # the graph prunes the unit feeding a grouped conv group-aligned (data-free criteria) ...
    unit = next(u for u in ctx.graph.units("all") if u.name == "0")
    assert unit.consumers == ["2"] and unit.layout == "strided" and not unit.blocked
    # ... where the reconstruction criteria fall back to L1, saying so
    expected = L1Magnitude().score(unit, ctx).topk(2).indices.sort().values.tolist()
    with pytest.warns(UserWarning, match="grouped convolution 2; its channels are chosen by L1"):
        assert ChannelPruning().select(unit, 2, ctx) == expected
    # sampling itself still refuses a grouped consumer in one clear line
    with pytest.raises(SrpruneError, match="groups=2"):
        conv_consumers(unit, "cp")


def test_drn_pixel_shuffle_unit():
    model = build_model("drn-t", 4, pretrained=False)
    batches = [([torch.rand(2, 3, 8, 8) * 255], torch.rand(2, 3, 32, 32) * 255)]
    ctx = PruneContext(model=model, original=copy.deepcopy(model),
                       graph=SRGraph(model.net, 4), batches=batches)
    unit = next(u for u in ctx.graph.units() if u.group_size == 4)
    kept = ThiNet(update="full").select(unit, 16, ctx)
    ctx.graph.prune(unit, kept)
    assert len(kept) == 16 and all_finite(model)


def test_original_target_follows_consumer_outputs_pruned_earlier():
    model = tiny_model()
    ctx = context(model, make_batches())
    trunk = next(u for u in ctx.graph.units("all") if u.kind == "trunk")
    kept = ChannelPruning().select(trunk, 6, ctx)
    ctx.kept_rows.record(trunk, kept)  # as the engine does before pruning
    ctx.graph.prune(trunk, kept)
    unit = ctx.graph.units()[0]  # block 0: its consumer conv2 writes the pruned trunk
    original = collect_stats(unit, ctx, 4000, "original", "test")[0]
    current = collect_stats(unit, ctx, 4000, "current", "test")[0]
    assert original.sum_y.shape == current.sum_y.shape == (6,)
    # the same six channels, up to the trunk's reconstruction error
    assert float((original.sum_y - current.sum_y).norm()) < 0.1 * float(current.sum_y.norm())


def test_kept_rows_follow_a_producer_shared_by_two_units():
    """A conv whose output is concatenated belongs to two units: rows map back through both."""
    torch.manual_seed(0)
    model = build_model("drn-t", 4, pretrained=False, n_blocks=1)
    original = copy.deepcopy(model)
    ctx = PruneContext(model=model, original=original, graph=SRGraph(model.net, 4), batches=[])
    shared = "up_blocks.1.0.body.2"
    units = [u for u in ctx.graph.units("all")
             if shared in [name for name, _, _ in u.producer_modules()]]
    assert len(units) == 2
    for unit, kept in zip(units, ([1, 4, 6, 9, 15], [0, 2, 3, 7, 8, 10, 12, 13, 14])):
        ctx.kept_rows.record(unit, kept)
        ctx.graph.prune(unit, kept)
    conv = dict(model.net.named_modules())[shared]
    rows = ctx.original_rows(shared, conv.out_channels)
    assert len(rows) == conv.out_channels == 14
    # no consumer refit happened: the surviving rows are the original rows, unchanged
    assert torch.equal(conv.weight, dict(original.net.named_modules())[shared].weight[rows])


@pytest.mark.parametrize(("criterion", "options"), [
    ("cp", {}),
    ("dr", {"rounds": 1, "sgd_steps": 1, "fit_duals": 5}),
    ("dr", {"rounds": 1, "sgd_steps": 1, "fit_duals": 5, "refit": "none"}),
    ("dcp", {"rounds": 1, "sgd_steps": 1}),
])
def test_all_scope_on_drn_keeps_every_surviving_input_alive(criterion, options):
    """Concatenated inputs belong to two units: neither may zero the other's weights."""
    torch.manual_seed(0)
    model = build_model("drn-t", 4, pretrained=False, n_blocks=1)
    batches = [([torch.rand(2, 3, 8, 8) * 255, torch.rand(2, 3, 16, 16) * 255],
                torch.rand(2, 3, 32, 32) * 255) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny data: some refits fall back
        result = compress(model, 0.5, criterion=criterion, scope="all", batches=batches,
                          criterion_options=options)
    assert result.after.params < 0.6 * result.before.params
    assert all_finite(model)
    for name, conv in model.net.named_modules():
        if isinstance(conv, nn.Conv2d):
            dead = (conv.weight.detach().abs().sum((0, 2, 3)) == 0).nonzero().flatten()
            assert len(dead) == 0, f"{name}: input channels {dead.tolist()} have zero weights"
