"""``dr``: dual-regression channel pruning (the paper's channel-level method).

Greedy gradient-norm selection (see :mod:`srprune.criteria.greedy`) on
``L_M + gamma * L_DR`` where ``L_DR`` is the dual-regression loss of the whole pruned model:
L1 of every output scale against HR / the LR pyramid, plus ``dual_weight`` (lambda, 0.1) times
L1 of the frozen dual nets' projections against the LR images.
"""

from __future__ import annotations

from typing import Any

import torch

from srprune.criteria.base import register_criterion
from srprune.criteria.greedy import GreedyGradientSelection
from srprune.training.loss import DUAL_FEATS, dr_loss_from_outputs, fit_duals


@register_criterion("dr")
class DualRegression(GreedyGradientSelection):
    """Dual-regression pruning: greedy gradient selection on L_M + gamma * L_DR.

    Extra options: ``dual_weight`` (0.1, lambda of L_DR) and ``fit_duals`` (200: when the
    model has no dual nets, new ones of width 16 are fitted for this many Adam steps on the
    calibration batches, primal frozen, before pruning starts). All options of
    :class:`~srprune.criteria.greedy.GreedyGradientSelection` apply, with one different
    default: ``refit="lstsq"`` (the kept consumer weights are refit by least squares after the
    selection; ``refit="none"`` is the paper's procedure exactly). On drn-t the refit raised
    the fine-tuned PSNR in every seed (benchmarks/RESULTS.md).
    """

    def __init__(self, dual_weight: float = 0.1, fit_duals: int = 200, refit: str = "lstsq",
                 **options: Any) -> None:
        super().__init__(refit=refit, **options)
        self.dual_weight, self.fit_duals = float(dual_weight), int(fit_duals)

    def prepare(self, ctx: Any) -> None:
        model = ctx.model
        if model.duals is None:
            from srprune.models.drn import dual_models

            model.duals = dual_models(model.scale, DUAL_FEATS).to(ctx.device)
            fit_duals(model, ctx.batches, steps=self.fit_duals, device=ctx.device)
        model.duals.eval()

    def aux_loss(self, ctx: Any, outputs: list[torch.Tensor], lr_pyramid: list[torch.Tensor],
                 hr: torch.Tensor) -> torch.Tensor:
        total, _, _ = dr_loss_from_outputs(ctx.model, outputs, lr_pyramid, hr, self.dual_weight)
        return total
