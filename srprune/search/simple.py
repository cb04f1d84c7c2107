"""Plans without search: the same ratio for every unit, or a plan read from a file."""

from __future__ import annotations

from collections.abc import Sequence

from srprune.errors import SrpruneError
from srprune.prune.contracts import Context, CostModel, Plan, Unit
from srprune.prune.plan import read_plan, read_removed_blocks
from srprune.search.base import (
    Strategy,
    aligned_plan,
    auto_multiples,
    bisect_plan,
    check_round_to,
    register_strategy,
    rounded_plan,
    rounding_report,
)


@register_strategy("uniform")
class Uniform(Strategy):
    """One channel-keep fraction for all units, chosen so the parameter reduction hits the target.

    Options: ``round_to`` ("auto", the default: multiples of ORT's NCHWc block on this CPU,
    see below; an integer: multiples of it; 1: exact widths) and ``min_width`` (never keep
    fewer channels, default 1).

    Aligned widths (``round_to`` above 1): a unit no wider than the multiple stays whole;
    wider units keep multiples of it, the rounding error carried from unit to unit of the
    same width (:func:`~srprune.search.base.aligned_plan`), so the achieved ratio stays near
    the target. With "auto", the block is tried first, then halved multiples down to the
    width ORT's blocked convs accept, then exact widths: the first whose plan lands within
    :data:`~srprune.search.base.RATIO_TOLERANCE` of the ratio wins (``report`` says which).
    """

    def __init__(self, round_to: int | str | None = "auto", min_width: int = 1) -> None:
        self.round_to = check_round_to(round_to)
        if int(min_width) < 1:
            raise SrpruneError(f"min_width must be >= 1, got {min_width}")
        self.min_width = int(min_width)
        self.report: dict[str, object] = {}

    def widths(self, units: Sequence[Unit], fraction: float, multiple: int | None = None
               ) -> Plan:
        """The kept widths at one keep ``fraction`` (multiples of ``multiple``; default:
        ``round_to``, or exact widths when it is "auto")."""
        multiple = multiple or self.round_to or 1
        return aligned_plan(units, {u.name: u.width * fraction for u in units}, multiple,
                            self.min_width)

    def plan(self, units: Sequence[Unit], ratio: float, ctx: Context, cost: CostModel) -> Plan:
        if ratio == 0:
            multiples = [self.round_to] if self.round_to is not None else auto_multiples()
            self.report = rounding_report(self.round_to, multiples[0], multiples)
            return {u.name: u.width for u in units}

        def plan_at(multiple: int) -> Plan:
            floor = cost.reduction(self.widths(units, 0.0, multiple))
            if floor < ratio - 0.02:
                aligned = (f" with widths in multiples of {multiple} (--round-to 1: exact "
                           "widths)" if multiple > 1 else "")
                raise SrpruneError(
                    f"ratio {ratio:g} is out of reach: pruning every unit in this scope to its "
                    f"minimum width{aligned} removes only {floor:.1%} of the parameters "
                    "(--scope all also prunes the trunks)"
                )
            # over the keep fraction in [0, 1]: reduction(1) <= ratio <= reduction(0)
            return bisect_plan(lambda fraction: self.widths(units, fraction, multiple), cost,
                               ratio, 0.0, 1.0)

        plan, self.report = rounded_plan(self.round_to, plan_at, cost, ratio)
        return plan


@register_strategy("from-file")
class FromFile(Strategy):
    """Widths read from ``--plan FILE``: srprune's JSON plan or the authors' text format
    (a JSON plan's ``removed_blocks`` are removed too, before any channel is cut)."""

    uses_ratio = False

    def __init__(self, plan: str | None = None) -> None:
        if not plan:
            raise SrpruneError("strategy from-file needs a plan file (--plan FILE)")
        self.path = plan

    def plan(self, units: Sequence[Unit], ratio: float, ctx: Context, cost: CostModel) -> Plan:
        return read_plan(self.path, units)

    def blocks_to_remove(self) -> list[str]:
        """The plan file's removed blocks: the engine removes them before :meth:`plan`."""
        return read_removed_blocks(self.path)
