"""The search-strategy contract: (units, target ratio) -> plan of kept widths per unit."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from srprune.errors import SrpruneError
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


AUTO = "auto"
RATIO_TOLERANCE = 0.02  # an aligned plan this far from --ratio gives way to a finer multiple


def check_round_to(value: object) -> int | None:
    """``round_to`` as given: None or "auto" (None: the runtime's block, see
    :func:`auto_multiples`) or an integer >= 1; anything else is one clear error."""
    if value is None or value == AUTO:
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1 or (isinstance(value, float) and value != number):
        raise SrpruneError(f"round_to must be 'auto' or an integer >= 1, got {value!r}")
    return number


def round_to_option(strategy: str, round_to: int | None, options: dict[str, Any]) -> None:
    """Put an explicit ``round_to`` (the CLI's ``--round-to N``, the API's ``round_to=``) into
    ``options`` under the strategy's own name for it (``align`` for latency); None leaves every
    strategy's default ("auto": the NCHWc block). An option already there wins."""
    if round_to is None:
        return
    if strategy == "from-file":
        raise SrpruneError("--round-to does not apply to --strategy from-file: its widths "
                           "come from --plan FILE (drop --round-to)")
    options.setdefault("align" if strategy == "latency" else "round_to", round_to)


def auto_multiples() -> list[int]:
    """The multiples ``round_to="auto"`` tries, coarsest first: ORT's NCHWc block here (16 on
    AVX-512, 8 on AVX2), halved down to the width its blocked convs still accept, then 1
    (exact widths). Probed once per machine and cached (:mod:`srprune.measure.nchwc`)."""
    from srprune.measure.nchwc import default_round_to, nchwc_alignment

    block, accepted = default_round_to(), max(1, nchwc_alignment())
    multiples = []
    while block > 1 and block >= accepted:
        multiples.append(block)
        block //= 2
    return [*multiples, 1]


def aligned_plan(units: Sequence[Unit], targets: Mapping[str, float], multiple: int,
                 min_width: int) -> Plan:
    """Kept widths near ``targets`` (float widths per unit), multiples of ``multiple``.

    ``multiple`` 1: each target rounded (exact widths). Above 1: a unit no wider than
    ``multiple`` stays whole (a narrower width would be padded back to the block by the
    runtime); wider ones keep a multiple of it (or their full width), at least
    ``min_width`` rounded up to the multiple. The rounding error is carried to the next unit of
    the same width (error diffusion), so units that alone could only keep 16 or 32 channels
    keep 16 and 32 in turn and together keep what the targets ask.
    """
    plan: Plan = {}
    carry: dict[int, float] = {}
    for u in units:
        target = targets[u.name]
        if multiple <= 1:
            plan[u.name] = max(min(min_width, u.width), min(u.width, round(target)))
            continue
        if u.width <= multiple:
            plan[u.name] = u.width
            continue
        floor = min(u.width, multiple * math.ceil(min_width / multiple))
        wanted = target + carry.get(u.width, 0.0)
        kept = max(floor, min(u.width, round(wanted / multiple) * multiple))
        carry[u.width] = max(-multiple, min(multiple, wanted - kept))
        plan[u.name] = kept
    return plan


def choose_aligned(plan_for: Callable[[int], Plan], multiples: Sequence[int], cost: CostModel,
                   ratio: float) -> tuple[Plan, int]:
    """The plan of the first multiple (coarsest first) whose parameter reduction is within
    :data:`RATIO_TOLERANCE` of ``ratio``, else the closest one; and that multiple.

    ``plan_for(m)`` may raise :class:`SrpruneError` (out of reach at that multiple): the next
    one is tried, and the last one's error is raised.
    """
    best: tuple[float, Plan, int] | None = None
    for i, multiple in enumerate(multiples):
        try:
            plan = plan_for(multiple)
        except SrpruneError:
            if i == len(multiples) - 1 and best is None:
                raise
            continue
        gap = abs(cost.reduction(plan) - ratio)
        if gap <= RATIO_TOLERANCE:
            return plan, multiple
        if best is None or gap < best[0]:
            best = (gap, plan, multiple)
    assert best is not None
    return best[1], best[2]


def rounded_plan(round_to: int | None, plan_for: Callable[[int], Plan], cost: CostModel,
                 ratio: float) -> tuple[Plan, dict[str, Any]]:
    """The plan at the multiple ``round_to`` asks for (None: :func:`auto_multiples`, coarsest
    first, by :func:`choose_aligned`) and the report of its rounding."""
    multiples = [round_to] if round_to is not None else auto_multiples()
    plan, used = choose_aligned(plan_for, multiples, cost, ratio)
    return plan, rounding_report(round_to, used, multiples)


def rounding_report(asked: int | None, used: int, multiples: Sequence[int]) -> dict[str, Any]:
    """What the strategy report says of the widths' rounding (the artifact records it)."""
    report: dict[str, Any] = {"round_to": used, "round_to_asked": AUTO if asked is None
                              else asked}
    if asked is None:
        from srprune.measure.nchwc import nchwc_alignment, nchwc_block

        report.update({"nchwc_block": nchwc_block(), "nchwc_alignment": nchwc_alignment(),
                       "round_to_tried": [m for m in multiples if m >= used]})
    return report


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
