"""Plugins are built from user options with one-line errors naming the option."""

from __future__ import annotations

import pytest

from srprune.errors import SrpruneError
from srprune.prune.engine import make_criterion, make_strategy
from srprune.prune.factory import constructor_options


def test_options_follow_kwargs_into_base_classes():
    from srprune.criteria.dr import DualRegression

    options = constructor_options(DualRegression)
    assert {"dual_weight", "fit_duals", "rounds", "sgd_steps", "refit"} <= set(options)


@pytest.mark.parametrize(("maker", "name", "options", "message"), [
    (make_criterion, "dr", {"bogus": 1}, r"criterion 'dr' has no option 'bogus'; its options: "
                                         r"cache_prefix, dual_weight"),
    (make_criterion, "dr", {"gamma": "abc"}, r"criterion 'dr' option gamma: expected a number"),
    (make_criterion, "cp", {"samples": 1.5}, r"option samples: expected an integer, got 1.5"),
    (make_criterion, "dr", {"cache_prefix": "yes"}, r"option cache_prefix: expected true or"),
    (make_criterion, "dr", {"refit": "x"}, r"criterion 'dr': refit must be one of"),
    (make_strategy, "dr-search", {"alpha_lr": "abc"}, r"strategy 'dr-search' option alpha_lr"),
    (make_strategy, "uniform", {"round_to": 0}, r"strategy 'uniform': round_to must be 'auto'"),
    (make_criterion, "l1", {"x": 1}, r"criterion 'l1' has no option 'x'; its options: none"),
])
def test_bad_options_are_one_line_naming_the_plugin(maker, name, options, message):
    with pytest.raises(SrpruneError, match=message):
        maker(name, options)


def test_good_options_build():
    crit = make_criterion("dr", {"gamma": 2, "rounds": 3.0, "dual_weight": None})
    assert crit.gamma == 2.0 and crit.rounds == 3
    assert make_strategy("uniform", {"round_to": 8}).round_to == 8
