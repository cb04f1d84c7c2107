"""The search-strategy contract: (units, target ratio) -> plan of kept widths per unit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from srprune.registry import STRATEGIES


class Strategy:
    """Turns units and a target parameter reduction into ``{unit name: kept width}``.

    ``plan(units, ratio, ctx, cost)`` gets the units in network order, the target fraction
    of primal parameters to remove, the pruning context (model, data, seed) and a
    ``srprune.prune.plan.PlanCost`` that predicts params/MACs of any plan exactly.
    """

    needs_data: ClassVar[bool] = False
    uses_ratio: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no option {sorted(options)[0]!r}")

    def plan(self, units: list, ratio: float, ctx: Any, cost: Any) -> dict[str, int]:
        raise NotImplementedError


def register_strategy(name: str) -> Callable[[type], type]:
    """Class decorator registering a built-in strategy under ``name``."""
    return STRATEGIES.register(name)


def round_width(width: int, fraction: float, round_to: int, min_width: int) -> int:
    """``width * fraction`` rounded to a multiple of ``round_to``, within [min_width, width]."""
    target = width * fraction
    kept = round(target / round_to) * round_to
    return max(min(min_width, width), min(width, kept))
