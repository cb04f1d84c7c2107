"""The Python front door: presets fill unset budgets and options; explicit values win."""

from __future__ import annotations

import pytest

import srprune
from srprune.api import API_CALIBRATION, apply_preset
from srprune.config import PRESETS
from srprune.errors import SrpruneError
from srprune.models import build_model


def test_no_preset_keeps_the_api_defaults_and_the_given_options():
    batches, batch, patch, crit, strat = apply_preset(None, "dr", "uniform", None, None, None,
                                                      {"rounds": 3}, None)
    assert (batches, batch, patch) == tuple(API_CALIBRATION.values())
    assert crit == {"rounds": 3} and strat == {}


def test_preset_fills_only_what_was_not_given():
    fast = PRESETS["fast"]
    batches, batch, patch, crit, strat = apply_preset("fast", "dr", "dr-search", None, 7, None,
                                                      {"sgd_steps": 3}, None)
    assert (batches, batch, patch) == (fast["calib_batches"], 7, fast["calib_patch"])
    assert crit == {**fast["greedy"], "sgd_steps": 3}
    assert strat == fast["search"]


def test_score_criteria_get_no_greedy_options():
    _, _, _, crit, strat = apply_preset("thorough", "l1", "uniform", None, None, None, None, None)
    assert crit == {} and strat == {}


def test_unknown_preset_or_criterion_is_a_clear_error():
    with pytest.raises(SrpruneError, match="unknown preset 'quick'"):
        apply_preset("quick", "l1", "uniform", None, None, None, None, None)
    with pytest.raises(SrpruneError, match="unknown criterion 'nope'"):
        apply_preset("fast", "nope", "uniform", None, None, None, None, None)


def test_compress_accepts_a_preset():
    model = build_model("drn-t", 4, pretrained=False, n_blocks=1)
    before = model.n_params
    result = srprune.compress(model, ratio=0.5, criterion="l1", preset="fast")
    assert result.model.n_params < before
    assert abs(result.summary()["ratio_achieved"] - 0.5) < 0.1


def test_compress_stays_the_function_after_engine_imports():
    import srprune.prune.engine  # a submodule import must not shadow srprune.compress

    assert callable(srprune.compress) and srprune.compress.__name__ == "compress_model"
