"""HRank-style channel criterion for srprune, shipped as a separate package (entry point).

HRank (Lin et al., CVPR 2020) keeps the channels whose feature maps have the highest average
matrix rank over the input images: a low-rank map carries little information and is cheaply
rebuilt by the remaining channels.
"""

from __future__ import annotations

import torch

from srprune import Context, ScoreCriterion, SrpruneError, Unit
from srprune.prune.contracts import Batch

__all__ = ["FEATURES", "HRank", "map_ranks"]

FEATURES = ("consumer", "producer")


def map_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Matrix rank of every (H, W) map of an (N, C, H, W) batch, as (N, C) float64."""
    return torch.linalg.matrix_rank(maps.float()).double()


class HRank(ScoreCriterion):
    """HRank: score = average matrix rank of each channel's feature maps (higher = keep).

    Options (``--criterion-opt key=value``):

    * ``images`` (16): calibration images used (from the first batches); 0 = all.
    * ``feature`` ("consumer"): which maps are ranked: "consumer" = the maps the first
      consumer layer reads (after activation / pixel shuffle, as HRank ranks post-ReLU maps),
      "producer" = the raw output maps of every producer conv, the ``group_size`` maps of a
      channel and the producers' ranks summed.

    Ties (e.g. several full-rank channels) go to the lower channel index.
    """

    needs_data = True

    def __init__(self, images: int = 16, feature: str = "consumer") -> None:
        if int(images) != images or images < 0:
            raise SrpruneError(f"hrank: images must be an integer >= 0, got {images!r}")
        if feature not in FEATURES:
            raise SrpruneError(f"hrank: feature must be one of {', '.join(FEATURES)}, "
                               f"got {feature!r}")
        self.images, self.feature = int(images), feature

    def _batches(self, ctx: Context) -> list[Batch]:
        batches, seen = [], 0
        for lr, hr in ctx.require_data("criterion 'hrank'"):
            if self.images and seen >= self.images:
                break
            take = lr[0].shape[0] if not self.images else min(lr[0].shape[0],
                                                                self.images - seen)
            batches.append(([lr[0][:take]], hr[:take]))
            seen += take
        return batches

    def score(self, unit: Unit, ctx: Context) -> torch.Tensor:
        batches = self._batches(ctx)
        if self.feature == "consumer":
            layers = unit.consumer_modules()[:1]
            what = "input"
        else:
            layers = unit.producer_modules()
            what = "output"
        if not layers:
            raise SrpruneError(f"hrank: unit {unit.name} has no {self.feature} layer")
        scores = torch.zeros(unit.width, dtype=torch.float64)
        for name, _, index in layers:
            total, count = None, 0
            for maps in ctx.capture(name, batches, what=what):
                if maps.dim() != 4:
                    raise SrpruneError(f"hrank: layer {name} has no spatial feature maps")
                ranks = map_ranks(maps).sum(0).cpu()
                total = ranks if total is None else total + ranks
                count += maps.shape[0]
            scores += (total / count)[index].sum(1)
        return scores
