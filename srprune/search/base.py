"""The search-strategy contract: (units, target ratio) -> plan of kept widths per unit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from srprune.prune.contracts import Context, CostModel, Plan, Unit
from srprune.registry import STRATEGIES


class Strategy:
    """Turns units and a target parameter reduction into ``{unit name: kept width}``.

    ``plan(units, ratio, ctx, cost)`` gets the units in network order, the target fraction
    of primal parameters to remove, the pruning context (model, data, seed, dual weight) and a
    cost model that predicts params/MACs of any plan exactly.

    Class attributes: ``needs_data`` (the run must have calibration batches; an instance may
    set it when one of its options needs data), ``uses_ratio``
    (False: the strategy ignores ``--ratio``) and ``preset_group``: the name of a preset
    section (e.g. ``"search"``: ``steps``) whose options the run configuration passes to the
    strategy's constructor under ``--preset``; explicit ``--strategy-opt`` values win. None
    (the default): presets set no option of this strategy. Optional depth hooks:
    ``removed_blocks`` (residual blocks the engine removes after :meth:`plan`) or
    ``blocks_to_remove()`` (blocks removed before it; see ``docs/plugins.md``).
    """

    needs_data: bool = False
    uses_ratio: ClassVar[bool] = True
    preset_group: ClassVar[str | None] = None

    def __init__(self, **options: object) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no option {sorted(options)[0]!r}")

    def plan(self, units: Sequence[Unit], ratio: float, ctx: Context, cost: CostModel) -> Plan:
        raise NotImplementedError


def register_strategy(name: str) -> Callable[[type], type]:
    """Class decorator registering a built-in strategy under ``name``."""
    return STRATEGIES.register(name)


def round_width(width: int, fraction: float, round_to: int, min_width: int) -> int:
    """``width * fraction`` rounded to a multiple of ``round_to``, within [min_width, width]."""
    target = width * fraction
    kept = round(target / round_to) * round_to
    return max(min(min_width, width), min(width, kept))


def bisect_plan(plan_at: Callable[[float], Plan], cost: CostModel, ratio: float,
                lo: float, hi: float, steps: int = 40) -> Plan:
    """The plan ``plan_at(x)`` for x in [lo, hi] whose parameter reduction is closest to ``ratio``.

    ``plan_at`` must keep more as ``x`` grows (reduction falls): ``steps`` bisection steps
    narrow [lo, hi] around the ratio, then the closer of ``plan_at(lo)`` and ``plan_at(hi)``
    wins (lo on a tie).
    """
    for _ in range(steps):
        mid = (lo + hi) / 2
        if cost.reduction(plan_at(mid)) > ratio:
            lo = mid
        else:
            hi = mid
    return min((plan_at(lo), plan_at(hi)), key=lambda p: abs(cost.reduction(p) - ratio))
