"""``dcp``: discrimination-aware channel pruning (Zhuang et al. 2018), adapted to SR.

As in the DRC authors' port (notes ``baselines.md`` §4.3, option 1): no auxiliary heads and no
stage-wise fine-tuning; the discriminative loss is the pixel loss of the whole pruned network.
"""

from __future__ import annotations

import torch

from srprune.criteria.base import register_criterion
from srprune.criteria.greedy import GreedyGradientSelection
from srprune.prune.contracts import Context
from srprune.training.loss import dr_loss_from_outputs


@register_criterion("dcp")
class DiscriminationAware(GreedyGradientSelection):
    """DCP: greedy gradient selection on L_M + gamma * L1(SR, HR) (no dual term).

    The L1 term covers every output scale of multi-scale nets (DRN) against the HR image and
    the LR pyramid. All options of :class:`~srprune.criteria.greedy.GreedyGradientSelection`
    apply, with the same defaults.
    """

    def aux_loss(self, ctx: Context, outputs: list[torch.Tensor], lr_pyramid: list[torch.Tensor],
                 hr: torch.Tensor) -> torch.Tensor:
        total, _, _ = dr_loss_from_outputs(ctx.model, outputs, lr_pyramid, hr, 0.0)
        return total


__all__ = ["DiscriminationAware"]
