"""The Python front door and the run configuration: presets fill unset settings, explicit
values win, every setting is validated once, the CLI and the API build the same config."""

from __future__ import annotations

import pytest

import srprune
from srprune.config import API_CALIBRATION, PRESETS, RunConfig
from srprune.errors import SrpruneError
from srprune.models import build_model


def calibration(config: RunConfig) -> tuple[int, int, int]:
    c = config.calibration
    return c.batches, c.batch, c.patch


def test_no_preset_keeps_the_api_defaults_and_the_given_options():
    config = RunConfig.build(criterion="dr", criterion_options={"rounds": 3})
    assert calibration(config) == tuple(API_CALIBRATION.values())
    assert config.selection.criterion_options == {"rounds": 3}
    assert config.selection.strategy_options == {}


def test_preset_fills_only_what_was_not_given():
    fast = PRESETS["fast"]
    config = RunConfig.build(preset="fast", criterion="dr", strategy="dr-search",
                             calib_batch=7, criterion_options={"sgd_steps": 3})
    assert calibration(config) == (fast["calib_batches"], 7, fast["calib_patch"])
    assert config.selection.criterion_options == {**fast["greedy"], "sgd_steps": 3}
    assert config.selection.strategy_options == fast["search"]


def test_score_criteria_get_no_greedy_options():
    config = RunConfig.build(preset="thorough", criterion="l1", strategy="uniform")
    assert config.selection.criterion_options == {}
    assert config.selection.strategy_options == {}


def test_unknown_preset_or_criterion_is_a_clear_error():
    with pytest.raises(SrpruneError, match="unknown preset 'quick'"):
        RunConfig.build(preset="quick")
    with pytest.raises(SrpruneError, match="unknown criterion 'nope'"):
        RunConfig.build(preset="fast", criterion="nope")
    with pytest.raises(TypeError, match="unknown setting 'calib_batchez'"):
        RunConfig.build(calib_batchez=3)


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("calib_batches", 0, r"calib_batches \(--calib-batches\) must be an integer >= 1"),
    ("finetune_steps", -5, r"--finetune-steps\) must be an integer >= 0"),
    ("finetune_lr", float("nan"), r"--finetune-lr\) must be a finite number"),
    ("dual_weight", -1.0, r"--dual-weight\) must be a finite number"),
    ("ratio", 1.0, r"ratio 1.0 is outside \[0, 1\)"),
    ("scope", "trunk", "unknown scope 'trunk'"),
    ("input_size", (0, 8), "two positive integers"),
])
def test_every_setting_is_validated_once(setting, value, message):
    with pytest.raises(SrpruneError, match=message):
        RunConfig.build(**{setting: value})


def test_settings_round_trip_and_group_by_job():
    config = RunConfig.build(ratio=0.5, criterion="dr", preset="fast", seed=3, dual_weight=0.5,
                             finetune_steps=10, out="x.srp", input_size=[64, 48])
    assert config.selection.ratio == 0.5 and config.seed == 3
    assert config.finetune.steps == 10 and config.output.path == "x.srp"
    assert config.cost.input_size == (64, 48)
    assert RunConfig.build(**config.settings()) == config


def test_compress_accepts_a_preset():
    model = build_model("drn-t", 4, pretrained=False, n_blocks=1)
    before = model.n_params
    result = srprune.compress(model, ratio=0.5, criterion="l1", preset="fast")
    assert result.model.n_params < before
    assert abs(result.summary()["ratio_achieved"] - 0.5) < 0.1


def test_compress_stays_the_function_after_engine_imports():
    import srprune.prune.engine  # a submodule import must not shadow srprune.compress

    assert callable(srprune.compress) and srprune.compress.__name__ == "compress_model"
