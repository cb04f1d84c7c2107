"""The defaults that work on real models: a criterion that sees the data when there is data, a
learning rate that backs off when it wrecks a converged model, bias compensation as a flag,
and a warning with what to try when compress's own evaluation shows a large drop."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import srprune.api as api
from srprune.api import compress_model
from srprune.cli import main
from srprune.config import AUTO_CRITERION, RunConfig
from srprune.errors import SrpruneError
from srprune.models import build_model
from srprune.quality.advice import LARGE_DROP_DB, quality_drop_advice
from tests.conftest import write_photos

TINY = dict(calib_batches=1, calib_batch=2, calib_patch=8, input_size=(8, 8))


def test_the_criterion_follows_the_data():
    assert RunConfig.build(ratio=0.5).selection.criterion == AUTO_CRITERION["without_data"]
    assert RunConfig.build(ratio=0.5, data="builtin").selection.criterion == "cp"
    assert RunConfig.build(ratio=0.5, criterion="auto").selection.criterion == "l1"
    assert RunConfig.build(ratio=0.5, data="builtin", criterion="l1").selection.criterion == "l1"


def test_the_learning_rate_is_auto_or_a_positive_number():
    assert RunConfig.build(ratio=0.5).finetune.lr == "auto"
    assert RunConfig.build(ratio=0.5, finetune_lr=1e-5).finetune.lr == 1e-5
    with pytest.raises(SrpruneError, match="--finetune-lr"):
        RunConfig.build(ratio=0.5, finetune_lr="fast")
    result = CliRunner().invoke(main, ["compress", "drn-t", "--ratio", "0.5", "--finetune-lr",
                                       "fast", "--out", "x.srp"])
    assert result.exit_code == 2 and "neither a number nor 'auto'" in result.output


def test_auto_backs_off_a_rate_that_wrecks_the_model(tmp_path, monkeypatch):
    """A rate of 50 destroys the pruned net at once: the run restores the pruned weights and
    goes on at the next rate, and the report lists both."""
    monkeypatch.setattr(api, "AUTO_LEARNING_RATES", (50.0, 1e-5))
    folder = write_photos(tmp_path / "photos", 48, n=5)
    torch.manual_seed(0)
    result = compress_model(build_model("drn-t", 4), 0.3, data=str(folder), criterion="l1",
                            finetune_steps=4, finetune_batch=2, finetune_patch=8,
                            finetune_eval_every=2, finetune_keep="last", **TINY)
    tune = result.finetune
    tried = tune["lr_auto"]["tried"]
    assert [rate for rate, _ in tried] == [50.0, 1e-5]
    assert tried[0][1] is None or tried[0][1] < tune["validation"]["start_psnr"] - 3, tried
    assert tune["lr"] == 1e-5 and tune["lr_auto"]["extra_steps"] == 2
    # kept "last": the weights of the 1e-5 run, close to the pruned model, not the wreck
    assert tune["validation"]["last_psnr"] > tune["validation"]["start_psnr"] - 0.5


def test_a_fixed_rate_is_used_as_given(tmp_path):
    folder = write_photos(tmp_path / "photos", 48, n=5)
    result = compress_model(build_model("drn-t", 4), 0.3, data=str(folder), criterion="l1",
                            finetune_steps=2, finetune_batch=2, finetune_patch=8,
                            finetune_lr=2e-4, **TINY)
    assert result.finetune["lr"] == 2e-4 and result.finetune["lr_auto"] is None


def _summary(before: float, after: float, **extra: object) -> dict:
    return {"quality_before": {"psnr": before}, "quality_after": {"psnr": after}, **extra}


def test_advice_names_the_drop_and_what_to_try():
    assert quality_drop_advice({"criterion": "l1"}) is None  # no --eval: nothing to judge
    assert quality_drop_advice(_summary(30.0, 30.0 - LARGE_DROP_DB / 2)) is None
    line = quality_drop_advice(_summary(30.77, 11.82, criterion="l1"))
    assert line.startswith("PSNR fell by 18.95 dB") and "--criterion cp" in line
    assert "--finetune-steps 500" in line and "--ratio" in line
    stuck = {"lr": 5e-4, "validation": {"kept": "start"}}
    line = quality_drop_advice(_summary(30.0, 29.0, criterion="cp", finetune=stuck))
    assert "--criterion" not in line and "lower --finetune-lr" in line and "0.0005" in line


def test_compress_warns_on_a_large_drop(tmp_path):
    out = tmp_path / "m.srp"
    result = CliRunner().invoke(main, ["compress", "drn-t", "--ratio", "0.9", "--criterion",
                                       "l1", "--scope", "all", "--input-size", "8", "8",
                                       "--eval", "builtin", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    warning = [ln for ln in result.output.splitlines() if ln.startswith("warning: PSNR fell")]
    assert len(warning) == 1 and "--criterion cp" in warning[0], result.output


def test_no_compensate_reaches_the_engine(tmp_path):
    states = {}
    for flag in (True, False):
        torch.manual_seed(0)
        result = compress_model(build_model("drn-t", 4), 0.5, data="builtin", criterion="l1",
                                compensate=flag, **TINY)
        states[flag] = result.model.net.state_dict()
    differ = [k for k in states[True] if not torch.equal(states[True][k], states[False][k])]
    assert differ and all(k.endswith("bias") for k in differ), differ


def test_the_default_with_data_falls_back_per_unit_where_cp_cannot_refit():
    """OmniSR's attention gates feed Linear layers: cp ranks those units by L1 (a warning names
    each) and refits the others, so the default criterion works on every zoo model."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"feeds the Linear .* \(not a convolution\); its "
                                         "channels are chosen by L1 magnitude"):
        result = compress_model(build_model("omnisr", 4, pretrained=False), 0.5, data="builtin",
                                calib_batches=1, calib_batch=2, calib_patch=16,
                                input_size=(16, 16))
    assert result.criterion == "cp" and abs(result.ratio_achieved - 0.5) < 0.03


def test_a_model_without_dual_nets_gets_them_fitted_before_fine_tuning(tmp_path, monkeypatch):
    """New dual nets start from a fit to the frozen model (their random start dominated the
    loss of a converged model); models with their own, or with the dual term off, are left."""
    import srprune.training.loss as loss

    monkeypatch.setattr(loss, "DUAL_FIT_STEPS", 80)
    folder = write_photos(tmp_path / "photos", 48, n=5)
    settings = dict(data=str(folder), criterion="l1", finetune_steps=2, finetune_batch=2,
                    finetune_patch=8, **TINY)
    torch.manual_seed(0)
    heard = []
    fitted = compress_model(build_model("espcn", 4, pretrained=False), 0.3,
                            progress=lambda *a: heard.append(a), **settings)
    assert ("dual nets", 0, 1) in heard and ("dual nets", 1, 1) in heard
    assert heard.index(("dual nets", 1, 1)) < heard.index(("finetune", 1, 2))
    duals = fitted.finetune["new_duals"]
    assert duals["fitted_steps"] == 80 and duals["batches"] == loss.DUAL_FIT_BATCHES
    assert duals["dual_loss_after"] < 0.6 * duals["dual_loss_before"], duals
    assert fitted.model.duals is not None
    off = compress_model(build_model("espcn", 4, pretrained=False), 0.3, dual_weight=0.0,
                         **settings)
    assert off.finetune["new_duals"] is None
    own = compress_model(build_model("drn-t", 4), 0.3, **settings)
    assert own.finetune["new_duals"] is None


def test_fitting_leaves_a_model_with_dual_nets_alone():
    from srprune.data.images import PatchSampler
    from srprune.training.loss import fit_new_duals

    model = build_model("drn-t", 4)
    before = {k: v.clone() for k, v in model.duals.state_dict().items()}
    assert fit_new_duals(model, PatchSampler.__new__(PatchSampler)) is None
    assert all(torch.equal(v, before[k]) for k, v in model.duals.state_dict().items())
