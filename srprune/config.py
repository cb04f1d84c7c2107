"""Named budgets for data-driven compression: calibration size and search/selection effort.

``fast`` is for demos, ``default`` keeps DR pruning of DRN-S x4 within minutes on 2 CPU cores,
``thorough`` spends more for quality. Explicit options always win over a preset.
"""

from __future__ import annotations

from typing import Any

from srprune.errors import SrpruneError

PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"calib_batches": 2, "calib_batch": 4, "calib_patch": 16,
             "greedy": {"rounds": 1, "sgd_steps": 1, "max_batches": 2},
             "search": {"steps": 10}},
    "default": {"calib_batches": 8, "calib_batch": 4, "calib_patch": 16,
                "greedy": {"rounds": 2, "sgd_steps": 2, "max_batches": 4},
                "search": {"steps": 60}},
    "thorough": {"calib_batches": 16, "calib_batch": 8, "calib_patch": 24,
                 "greedy": {"rounds": 4, "sgd_steps": 4, "max_batches": 8},
                 "search": {"steps": 200}},
}


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise SrpruneError(f"unknown preset '{name}'; use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def criterion_defaults(name: str, criterion_cls: type) -> dict[str, Any]:
    """Preset options for criteria built on greedy gradient selection (dr, dcp, ...)."""
    from srprune.criteria.greedy import GreedyGradientSelection

    return dict(preset(name)["greedy"]) if issubclass(criterion_cls,
                                                      GreedyGradientSelection) else {}


def strategy_defaults(name: str, strategy_cls: type) -> dict[str, Any]:
    from srprune.search.dr_search import DRSearch

    return dict(preset(name)["search"]) if issubclass(strategy_cls, DRSearch) else {}
