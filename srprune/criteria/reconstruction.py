"""The base of the reconstruction criteria (CP, ThiNet): sample, choose, rewrite.

For one unit, every consumer conv is sampled on the calibration batches into sufficient
statistics (:mod:`srprune.criteria.sampling`: input patches from the model being pruned,
targets from the original or the current model); a subclass chooses the kept channels,
usually from the Gram sums of the channels' contributions (:mod:`srprune.criteria.gram`);
then the consumer weights are rewritten by least squares on the kept inputs
(:mod:`srprune.criteria.least_squares`). The engine records the kept channels, so later
units can still match an earlier-pruned consumer's outputs to the original model's.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from srprune.criteria.base import SelectionCriterion
from srprune.criteria.least_squares import least_squares_update
from srprune.criteria.magnitude import L1Magnitude
from srprune.criteria.sampling import TARGETS, ConsumerStats, collect_stats, grouped_consumer
from srprune.errors import SrpruneError
from srprune.prune.contracts import Context, Unit


class ReconstructionCriterion(SelectionCriterion):
    """Base of CP and ThiNet: sample consumers, choose channels, rewrite consumer weights.

    Common options: ``samples`` (positions sampled per consumer), ``ridge`` (relative ridge of
    the least-squares solves, towards the current weights), ``target`` ("original" or
    "current": whose consumer output is reconstructed). Defaults are set by subclasses.
    """

    needs_data = True
    label = "reconstruction"

    def __init__(self, samples: int = 4000, ridge: float = 1e-3, target: str = "original",
                 **options: Any) -> None:
        super().__init__(**options)
        if int(samples) != samples or samples < 1:
            raise SrpruneError(f"{self.label}: samples must be a positive integer, "
                               f"got {samples!r}")
        if not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge < 0:
            raise SrpruneError(f"{self.label}: ridge must be a finite number >= 0, "
                               f"got {ridge!r}")
        if target not in TARGETS:
            raise SrpruneError(f"{self.label}: target must be one of {', '.join(TARGETS)}, "
                               f"got {target!r}")
        self.samples, self.ridge, self.target = int(samples), float(ridge), target

    @property
    def who(self) -> str:
        return f"criterion '{self.label}'"

    def choose(self, unit: Unit, n_keep: int, stats: list[ConsumerStats]) -> list[int]:
        """The channels to keep, from the sampled statistics of the unit's consumers."""
        raise NotImplementedError

    def update(self, unit: Unit, kept: list[int], stats: list[ConsumerStats]) -> None:
        """Rewrite the consumers for ``kept`` (default: least-squares refit of each)."""
        for s in stats:
            least_squares_update(s, kept, self.ridge, self.who)

    def select(self, unit: Unit, n_keep: int, ctx: Context) -> list[int]:
        if not 1 <= n_keep <= unit.width:
            raise SrpruneError(f"{self.who}: cannot keep {n_keep} of {unit.width} channels "
                               f"in unit {unit.name}")
        grouped = grouped_consumer(unit)
        if grouped is not None:  # a grouped conv or a Linear reads it: l1 instead
            warnings.warn(f"{self.who}: unit {unit.name} feeds {grouped}; its channels are "
                          "chosen by L1 magnitude, without reconstruction", UserWarning,
                          stacklevel=2)
            scores = L1Magnitude().score(unit, ctx)
            return sorted(int(j) for j in torch.topk(scores, n_keep).indices)
        stats = collect_stats(unit, ctx, self.samples, self.target, self.who)
        kept = sorted(int(j) for j in self.choose(unit, n_keep, stats))
        self.update(unit, kept, stats)
        return kept


__all__ = ["ReconstructionCriterion"]
