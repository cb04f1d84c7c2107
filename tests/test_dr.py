"""The paper's method: the dr criterion and the dr-search strategy, on tiny nets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main
from srprune.errors import SrpruneError
from srprune.models import build_model
from srprune.models.zoo import build_srnet
from srprune.prune.engine import compress
from srprune.search.dr_search import DRSearch
from srprune.training.loss import dr_loss
from tests.conftest import write_photos


def batches(scale: int, n: int = 2, size: int = 8, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        hr = torch.rand(2, 3, size * scale, size * scale, generator=g) * 255
        pyramid = [torch.nn.functional.avg_pool2d(hr, f) for f in
                   [scale // 2**i for i in range(int(np.log2(scale)))]]
        out.append((pyramid, hr))
    return out


FAST = {"rounds": 2, "sgd_steps": 1}


def tiny_drn():
    return build_model("drn-t", 4, pretrained=False, n_blocks=1)


def trained_tiny_drn():
    """A tiny DRN after a short DR training on smooth images (seeded, ~1 s)."""
    from srprune.data.images import PatchSampler
    from srprune.training.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    yy, xx = np.mgrid[0:64, 0:64]
    imgs = [np.stack([np.sin(xx / (5 + i)) * 100 + 128, np.cos(yy / (7 + i)) * 100 + 128,
                      (xx + yy) % 255], axis=2).astype(np.uint8) for i in range(3)]
    model = tiny_drn()
    Trainer(model, PatchSampler(imgs, 4, 8, 4, seed=0),
            TrainConfig(steps=40, batch=4, patch=8, lr=2e-3)).run()
    return model, PatchSampler(imgs, 4, 8, 4, seed=9)


def test_dr_keeps_the_planned_counts_and_lowers_its_loss_versus_random():
    import copy

    trained, sampler = trained_tiny_drn()
    calib = [sampler.next_batch() for _ in range(2)]
    result = compress(copy.deepcopy(trained), 0.5, criterion="dr", batches=calib,
                      criterion_options=FAST, seed=1)
    assert all(w > 0 for w in result.plan["units"].values())
    dr_model = result.model
    rnd = compress(copy.deepcopy(trained), 0.5, criterion="random", seed=1).model
    with torch.no_grad():
        dr_value = sum(dr_loss(dr_model, lr, hr)[0] for lr, hr in calib)
        rnd_value = sum(dr_loss(rnd, lr, hr)[0] for lr, hr in calib)
    assert dr_model.n_params == rnd.n_params
    assert dr_value < rnd_value


def test_prefix_cache_changes_nothing_but_time():
    states = []
    for cache in (False, True):
        torch.manual_seed(5)
        model = tiny_drn()
        compress(model, 0.5, criterion="dr", batches=batches(4),
                 criterion_options={**FAST, "cache_prefix": cache}, seed=2)
        states.append(model.net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_dr_is_deterministic_under_a_seed():
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = tiny_drn()
        compress(model, 0.4, criterion="dr", batches=batches(4), criterion_options=FAST, seed=3)
        runs.append(model.net.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_dr_builds_and_fits_duals_when_the_model_has_none():
    model = build_srnet(scale=2, n_feats=8, n_blocks=1, duals=False)
    assert model.duals is None
    compress(model, 0.5, criterion="dr", batches=batches(2),
             criterion_options={**FAST, "fit_duals": 5})
    assert model.duals is not None and len(model.duals) == 1


def _dr_context(model, calib: list, dual_weight: float):
    import copy

    from srprune.prune.context import PruneContext
    from srprune.prune.graph import SRGraph

    return PruneContext(model=model, original=copy.deepcopy(model), graph=SRGraph(model.net, 4),
                        batches=calib, dual_weight=dual_weight)


def test_dr_uses_the_runs_dual_weight_unless_the_option_overrides_it():
    """``--dual-weight`` / ``dual_weight=`` reach the selection loss; ``dual_weight=X`` wins."""
    from srprune.criteria.dr import DualRegression

    torch.manual_seed(0)
    model = tiny_drn()
    calib = batches(4)
    lr_pyramid, hr = calib[0]
    losses = {}
    for option in (None, 0.1):
        crit = DualRegression() if option is None else DualRegression(dual_weight=option)
        for lam in (0.0, 5.0):
            ctx = _dr_context(model, calib, lam)
            crit.prepare(ctx)
            with torch.no_grad():
                outputs = model.outputs(lr_pyramid[0])
                losses[option, lam] = float(crit.aux_loss(ctx, outputs, lr_pyramid, hr))
    with torch.no_grad():
        want = {lam: float(dr_loss(model, lr_pyramid, hr, lam)[0]) for lam in (0.0, 0.1, 5.0)}
    assert want[0.0] != want[5.0]  # the dual term is not zero on this model
    assert losses[None, 0.0] == want[0.0] and losses[None, 5.0] == want[5.0]
    assert losses[0.1, 0.0] == losses[0.1, 5.0] == want[0.1]


def test_dr_frobenius_variant_and_bad_variant():
    compress(tiny_drn(), 0.5, criterion="dr", batches=batches(4),
             criterion_options={**FAST, "variant": "frobenius"})
    with pytest.raises(SrpruneError, match="variant"):
        compress(tiny_drn(), 0.5, criterion="dr", batches=batches(4),
                 criterion_options={"variant": "nope"})


def _consumer_output(model, name: str, calib: list) -> torch.Tensor:
    store = []
    module = dict(model.net.named_modules())[name]
    handle = module.register_forward_hook(lambda m, i, o: store.append(o.detach()))
    with torch.no_grad():
        for lr, _ in calib:
            model.net(lr[0])
    handle.remove()
    return torch.cat(store)


def test_dr_lstsq_refit_lowers_the_first_consumers_reconstruction_error():
    import copy

    trained, sampler = trained_tiny_drn()
    calib = [sampler.next_batch() for _ in range(2)]
    consumer = "down.0.dual_module.1"  # first unit's consumer: its input is never pruned
    want = _consumer_output(trained, consumer, calib)
    errors = {}
    for refit in ("none", "lstsq"):
        model = compress(copy.deepcopy(trained), 0.5, criterion="dr", batches=calib,
                         criterion_options={**FAST, "refit": refit}, seed=1,
                         strategy_options={"round_to": 1}).model  # the first unit is cut
        errors[refit] = float(torch.nn.functional.mse_loss(
            _consumer_output(model, consumer, calib), want))
    assert errors["lstsq"] < 0.9 * errors["none"]


def test_dr_bad_refit_options():
    with pytest.raises(SrpruneError, match="lr a finite number"):
        compress(tiny_drn(), 0.5, criterion="dr", batches=batches(4),
                 criterion_options={"lr": float("nan")})
    for bad in ({"refit": "sgd"}, {"refit_samples": 0}, {"refit_samples": "abc"},
                {"refit_samples": True}, {"refit_ridge": -1}, {"refit_ridge": float("nan")}):
        with pytest.raises(SrpruneError, match="refit"):
            compress(tiny_drn(), 0.5, criterion="dr", batches=batches(4),
                     criterion_options=bad)


def test_sgd_updates_that_raise_the_loss_are_undone():
    """At a learning rate far too large for the layer the guarded SGD keeps the model sound."""
    import copy

    trained, sampler = trained_tiny_drn()
    calib = [sampler.next_batch() for _ in range(2)]
    losses = {}
    for lr in (5e-5, 10.0):
        model = compress(copy.deepcopy(trained), 0.5, criterion="dr", batches=calib, seed=1,
                         criterion_options={**FAST, "refit": "none", "lr": lr}).model
        assert all(bool(torch.isfinite(p).all()) for p in model.net.parameters())
        with torch.no_grad():
            losses[lr] = float(sum(dr_loss(model, lr_, hr)[0] for lr_, hr in calib))
    assert losses[10.0] < 1.5 * losses[5e-5]


def test_an_update_rejected_at_every_rate_changes_nothing():
    """At lr 1e6 every try raises the loss: weights and biases end as with no SGD at all."""
    import copy

    trained, sampler = trained_tiny_drn()
    calib = [sampler.next_batch() for _ in range(2)]
    states = []
    for extra in ({"lr": 1e6}, {"sgd_steps": 0}):
        model = compress(copy.deepcopy(trained), 0.5, criterion="dr", batches=calib, seed=1,
                         criterion_options={**FAST, "refit": "none", **extra}).model
        states.append(model.net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("criterion", ["dcp", "dr"])
def test_all_scope_on_a_trained_drn_stays_finite_at_the_default_lr(criterion):
    """The output conv is a consumer under --scope all; unguarded SGD diverged to NaN there."""
    import copy

    trained, sampler = trained_tiny_drn()
    calib = [sampler.next_batch() for _ in range(2)]
    options = {**FAST, "refit": "none"} if criterion == "dr" else FAST
    model = compress(copy.deepcopy(trained), 0.5, criterion=criterion, scope="all",
                     batches=calib, criterion_options=options, seed=1).model
    assert all(bool(torch.isfinite(p).all()) for p in model.net.parameters())


def test_dr_without_data_is_a_clear_error():
    with pytest.raises(SrpruneError, match="needs calibration images"):
        compress(tiny_drn(), 0.5, criterion="dr")


def test_dr_search_hits_the_ratio_and_saves_both_formats(tmp_path):
    model = tiny_drn()
    prefix = tmp_path / "plan"
    result = compress(model, 0.3, strategy="dr-search", batches=batches(4, n=4),
                      strategy_options={"steps": 3, "save": str(prefix)})
    assert abs(result.ratio_achieved - 0.3) < 0.08
    data = json.loads(prefix.with_suffix(".json").read_text())
    text = prefix.with_suffix(".txt").read_text().split()
    assert [int(v) for v in text] == list(data["units"].values())
    assert len(data["search"]["history"]) == 3
    assert all(abs(sum(p) - 1) < 1e-5 for p in data["search"]["probabilities"].values())


def test_dr_search_options_and_copy_semantics():
    search = DRSearch(round_to=4)
    assert search.options_for(64, 0.5) == [16, 20, 24, 28, 32]
    assert search.options_for(8, 0.5) == [4]
    model = tiny_drn()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    compress(model, 0.0, strategy="dr-search", batches=batches(4, n=2),
             strategy_options={"steps": 2})
    after = model.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # search trains a copy


def test_dr_search_needs_two_batches():
    with pytest.raises(SrpruneError, match="at least 2 calibration batches"):
        compress(tiny_drn(), 0.3, strategy="dr-search", batches=batches(4, n=1))


@pytest.fixture
def photo_dir(tmp_path):
    return write_photos(tmp_path / "photos", 96)


def test_cli_dr_with_dr_search_and_finetune(photo_dir, tmp_path):
    out = tmp_path / "m.srp"
    args = ["compress", "drn-t", "--ratio", "0.5", "--criterion", "dr", "--strategy",
            "dr-search", "--data", str(photo_dir), "--calib-batches", "2", "--calib-batch", "2",
            "--calib-patch", "8", "--criterion-opt", "rounds=1", "--criterion-opt",
            "sgd_steps=1", "--strategy-opt", "steps=2", "--finetune-steps", "2",
            "--finetune-patch", "8",
            "--eval", str(photo_dir), "--out", str(out), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"quality_before", "quality_pruned", "quality_after", "finetune"} <= set(data)
    assert data["finetune"]["steps"] == 2
    assert out.exists()


def test_cli_dr_without_data_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["compress", "drn-t", "--ratio", "0.5", "--criterion", "dr",
                                       "--out", str(tmp_path / "m.srp")])
    assert result.exit_code == 2 and "needs calibration images" in result.stderr


def test_cli_data_at_the_wrong_scale_exit_2(tmp_path):
    bench = tmp_path / "bench"
    (bench / "HR").mkdir(parents=True)
    (bench / "LR_bicubic" / "X4").mkdir(parents=True)
    (bench / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(bench / "HR" / "a.png")
    for f in (4, 2):  # LR files at the wrong size for their factor
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(
            bench / "LR_bicubic" / f"X{f}" / f"ax{f}.png")
    result = CliRunner().invoke(main, ["compress", "drn-t", "--ratio", "0.5", "--criterion", "dr",
                                       "--data", str(bench), "--out", str(tmp_path / "m.srp")])
    assert result.exit_code == 2 and "scale mismatch" in result.stderr
