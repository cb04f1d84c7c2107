"""``dr``: dual-regression channel pruning (the paper's channel-level method).

Greedy gradient-norm selection (see :mod:`srprune.criteria.greedy`) on
``L_M + gamma * L_DR`` where ``L_DR`` is the dual-regression loss of the whole pruned model:
L1 of every output scale against HR / the LR pyramid, plus ``dual_weight`` (lambda: the run's
``--dual-weight`` / ``dual_weight=``, 0.1 by default) times L1 of the frozen dual nets'
projections against the LR images.
"""

from __future__ import annotations

from typing import Any

import torch

from srprune.criteria.base import register_criterion
from srprune.criteria.greedy import GreedyGradientSelection
from srprune.prune.contracts import Context
from srprune.training.loss import DUAL_FEATS, dr_loss_from_outputs, dual_nets, fit_duals


@register_criterion("dr")
class DualRegression(GreedyGradientSelection):
    """Dual-regression pruning: greedy gradient selection on L_M + gamma * L_DR.

    Extra options: ``dual_weight`` (None: the run's ``ctx.dual_weight``, i.e. the CLI's
    ``--dual-weight`` or the API's ``dual_weight=``; a number here overrides it for the
    selection only) and ``fit_duals`` (200: when the model has no dual nets, new ones of width
    16 are fitted for this many Adam steps on the calibration batches, primal frozen, before
    pruning starts). All options of :class:`~srprune.criteria.greedy.GreedyGradientSelection`
    apply, with one different default: ``refit="lstsq"`` (the kept consumer weights are refit
    by least squares after the selection; ``refit="none"`` is the paper's procedure exactly).
    On drn-t the refit raised the fine-tuned PSNR in every seed (benchmarks/RESULTS.md).
    """

    def __init__(self, dual_weight: float | None = None, fit_duals: int = 200,
                 refit: str = "lstsq", **options: Any) -> None:
        super().__init__(refit=refit, **options)
        self.dual_weight = None if dual_weight is None else float(dual_weight)
        self.fit_duals = int(fit_duals)

    def lam(self, ctx: Context) -> float:
        """Lambda of L_DR: the ``dual_weight`` option if given, else the run's."""
        return float(ctx.dual_weight) if self.dual_weight is None else self.dual_weight

    def prepare(self, ctx: Context) -> None:
        """Build and fit dual nets when the model has none; freeze them in eval mode."""
        model = ctx.model
        if model.duals is None:
            model.duals = dual_nets(model.scale, DUAL_FEATS).to(ctx.device)
            fit_duals(model, ctx.batches, steps=self.fit_duals, device=ctx.device)
        model.duals.eval()

    def aux_loss(self, ctx: Context, outputs: list[torch.Tensor],
                 lr_pyramid: list[torch.Tensor], hr: torch.Tensor) -> torch.Tensor:
        total, _, _ = dr_loss_from_outputs(ctx.model, outputs, lr_pyramid, hr, self.lam(ctx))
        return total


__all__ = ["DualRegression"]
