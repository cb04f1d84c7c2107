"""``thinet``: greedy channel removal by next-layer reconstruction error (Luo et al. 2017).

Adapted to SR as the DRC authors did (notes ``baselines.md`` §3.5): the channels of a unit
are judged by their contribution to the consumer conv's output at sampled positions; the
channel whose removal adds the least squared error is removed, one at a time, then the kept
channels are rescaled by least squares.
"""

from __future__ import annotations

import torch

from srprune.criteria.base import register_criterion
from srprune.criteria.gram import ChannelGram, total_gram
from srprune.criteria.least_squares import scale_update
from srprune.criteria.reconstruction import ReconstructionCriterion
from srprune.criteria.sampling import ConsumerStats
from srprune.errors import SrpruneError
from srprune.prune.contracts import Unit

UPDATES = ("scale", "full", "none")


def greedy_removal(gram: ChannelGram, n_keep: int) -> list[int]:
    """Kept channels after removing ``width - n_keep`` greedily (ties: lower index).

    With ``Z_j`` the contributions and ``r`` the target, removing set T leaves the error
    ``|e0 + sum_T Z_t|^2`` with ``e0 = r - sum_all Z``; in Gram form that is
    ``|e0|^2 + 2 sum_T <e0, Z_t> + sum_{t,u in T} <Z_t, Z_u>``, so adding channel j to T costs
    ``2 (<e0, Z_j> + sum_{t in T} G_tj) + G_jj``: one O(width) update per step. With the
    current model as target ``e0 = 0`` and this is ThiNet's ``|sum_T x_t|^2`` rule.
    """
    g = gram.gram
    width = g.shape[0]
    v = gram.corr - g.sum(1)  # <e0, Z_j>
    diag = torch.diagonal(g)
    alive = torch.ones(width, dtype=torch.bool)
    for _ in range(width - n_keep):
        cost = torch.where(alive, 2 * v + diag, torch.full_like(diag, float("inf")))
        j = int(torch.argmin(cost))  # first minimum: ties go to the lower index
        alive[j] = False
        v = v + g[:, j]
    return torch.nonzero(alive).flatten().tolist()


@register_criterion("thinet")
class ThiNet(ReconstructionCriterion):
    """ThiNet: greedy removal minimising the consumer-output reconstruction error.

    Options (``--criterion-opt key=value``):

    * ``samples`` (4000): output positions sampled per consumer over the calibration images
      (every output channel is used at each position, where ThiNet drew one at random).
    * ``target`` ("current"): whose consumer output is reconstructed: "current" (the model
      being pruned, as ThiNet and the DRC port do) or "original" (the unpruned model; then
      errors of earlier units are compensated too).
    * ``update`` ("scale"): after selection, "scale" = ThiNet's least-squares scale per kept
      channel (bias unchanged), "full" = least-squares refit of the consumer weights and
      bias (as ``cp``), "none" = plain removal.
    * ``ridge`` (1e-3): relative ridge of those solves, towards the current weights.

    Removal uses the squared L2 norm of the official code (the DRC port used an L1 norm).
    """

    label = "thinet"

    def __init__(self, samples: int = 4000, target: str = "current", update: str = "scale",
                 ridge: float = 1e-3) -> None:
        super().__init__(samples=samples, ridge=ridge, target=target)
        if update not in UPDATES:
            raise SrpruneError(f"thinet: update must be one of {', '.join(UPDATES)}, "
                               f"got {update!r}")
        self.mode = update

    def choose(self, unit: Unit, n_keep: int, stats: list[ConsumerStats]) -> list[int]:
        return greedy_removal(total_gram(stats), n_keep)

    def update(self, unit: Unit, kept: list[int], stats: list[ConsumerStats]) -> None:
        if self.mode == "full":
            super().update(unit, kept, stats)
        elif self.mode == "scale":
            for s in stats:
                scale_update(s, kept, self.ridge, self.who)


__all__ = ["UPDATES", "ThiNet", "greedy_removal"]
