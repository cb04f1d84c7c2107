"""Data-free criteria: L1 filter magnitude and seeded random."""

from __future__ import annotations

import torch

from srprune.criteria.base import ScoreCriterion, register_criterion
from srprune.prune.contracts import Context, Unit


@register_criterion("l1")
class L1Magnitude(ScoreCriterion):
    """L1 norm of each channel's producer filters (r^2 shuffled sub-filters share one score)."""

    def score(self, unit: Unit, ctx: Context) -> torch.Tensor:
        scores = torch.zeros(unit.width, dtype=torch.float64)
        for _, module, index in unit.producer_modules():
            rows = module.weight.detach().abs().flatten(1).sum(1).double().cpu()
            scores += rows[index].sum(1)
        return scores


@register_criterion("random")
class RandomChoice(ScoreCriterion):
    """Uniformly random channels, reproducible from the run's seed and the unit."""

    def score(self, unit: Unit, ctx: Context) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(ctx.seed) * 100003 + unit.uid)
        return torch.rand(unit.width, generator=generator, dtype=torch.float64)
