"""Plans without search: the same ratio for every unit, or a plan read from a file."""

from __future__ import annotations

from collections.abc import Sequence

from srprune.errors import SrpruneError
from srprune.prune.contracts import Context, CostModel, Plan, Unit
from srprune.prune.plan import read_plan, read_removed_blocks
from srprune.search.base import Strategy, bisect_plan, register_strategy, round_width


@register_strategy("uniform")
class Uniform(Strategy):
    """One channel-keep fraction for all units, chosen so the parameter reduction hits the target.

    Options: ``round_to`` (kept widths are multiples of it, default 1) and ``min_width``
    (never keep fewer channels, default 1).
    """

    def __init__(self, round_to: int = 1, min_width: int = 1) -> None:
        if round_to < 1 or min_width < 1:
            raise SrpruneError("round_to and min_width must be >= 1")
        self.round_to, self.min_width = int(round_to), int(min_width)

    def widths(self, units: Sequence[Unit], fraction: float) -> Plan:
        return {u.name: round_width(u.width, fraction, self.round_to, self.min_width)
                for u in units}

    def plan(self, units: Sequence[Unit], ratio: float, ctx: Context, cost: CostModel) -> Plan:
        if ratio == 0:
            return {u.name: u.width for u in units}
        floor = cost.reduction(self.widths(units, 0.0))
        if floor < ratio - 0.02:
            raise SrpruneError(
                f"ratio {ratio:g} is out of reach: pruning every unit in this scope to its "
                f"minimum width removes only {floor:.1%} of the parameters (--scope all "
                "also prunes the trunks)"
            )
        # over the keep fraction in [0, 1]: reduction(1) <= ratio <= reduction(0)
        return bisect_plan(lambda fraction: self.widths(units, fraction), cost, ratio, 0.0, 1.0)


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
