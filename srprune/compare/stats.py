"""Cells grouped by method and ratio: means and spreads over seeds, and the Pareto front."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Spread:
    """Values over seeds: their mean and sample standard deviation (None for one value)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def show(self, digits: int, scale: float = 1.0) -> str:
        """``28.745±0.012`` (just the mean for one value, ``-`` for none)."""
        if not self.values:
            return "-"
        mean = f"{self.mean / scale:.{digits}f}"
        return mean if self.std is None else f"{mean}±{self.std / scale:.{digits}f}"


@dataclass
class Group:
    """One method (criterion + strategy) at one ratio: its finished seeds, summarised."""

    ratio: float
    method: str
    criterion: str
    strategy: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # finished cells, by seed
    failed: int = 0

    def spread(self, getter: Any) -> Spread:
        values = []
        for row in self.rows:
            value = getter(row)
            if value is not None:
                values.append(float(value))
        return Spread(tuple(values))

    def psnr(self, eval_name: str) -> Spread:
        return self.spread(lambda r: r["quality"][eval_name]["psnr"])

    def ssim(self, eval_name: str) -> Spread:
        return self.spread(lambda r: r["quality"][eval_name]["ssim"])

    def by_seed(self, eval_name: str) -> dict[int, float]:
        return {int(r["seed"]): float(r["quality"][eval_name]["psnr"]) for r in self.rows}

    @property
    def params(self) -> Spread:
        return self.spread(lambda r: r["params"])

    @property
    def macs(self) -> Spread:
        return self.spread(lambda r: r["macs"])

    @property
    def psnr_pruned(self) -> Spread:
        return self.spread(lambda r: r.get("psnr_pruned"))

    @property
    def latency(self) -> Spread:
        return self.spread(lambda r: (r.get("latency") or {}).get("median_ms"))

    @property
    def efficiency(self) -> Spread:
        return self.spread(lambda r: (r.get("latency") or {}).get("efficiency"))


def group_rows(rows: Sequence[dict[str, Any]]) -> list[Group]:
    """Rows grouped by (ratio, method), in the order the rows come (the grid's order)."""
    groups: dict[tuple[float, str], Group] = {}
    for row in rows:
        key = (float(row["ratio"]), row["method"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(float(row["ratio"]), row["method"], row["criterion"],
                                        row["strategy"])
        if row.get("status") == "ok":
            group.rows.append(row)
        else:
            group.failed += 1
    for group in groups.values():
        group.rows.sort(key=lambda r: r["seed"])
    return list(groups.values())


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y),
    sorted by x. Points with a NaN coordinate are never on the front."""
    valid = [i for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    front = []
    for i in valid:
        xi, yi = points[i]
        dominated = any(points[j][0] <= xi and points[j][1] >= yi
                        and (points[j][0] < xi or points[j][1] > yi) for j in valid)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))
