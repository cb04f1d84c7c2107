"""ESPCN (Shi et al., 2016), laid out like yjn870/ESPCN-pytorch ``models.py``.

Keys: ``first_part.0`` (5x5 conv 1 -> 64), ``first_part.2`` (3x3 conv 64 -> 32), both
followed by Tanh, and ``last_part.0`` (3x3 conv 32 -> scale^2) feeding PixelShuffle(scale)
straight to the image. A Y-channel net trained on Y in [0, 1]; ``forward`` takes and returns
RGB in [0, 255] through the colour handling shared with FSRCNN (:func:`y_channel_sr`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from srprune.models.archs.fsrcnn import y_channel_sr
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel


class ESPCN(nn.Module):
    """See module docstring; any integer scale >= 2."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"ESPCN needs an integer scale >= 2, got {scale}")
        self.scale = scale
        self.first_part = nn.Sequential(nn.Conv2d(1, 64, 5, padding=2), nn.Tanh(),
                                        nn.Conv2d(64, 32, 3, padding=1), nn.Tanh())
        self.last_part = nn.Sequential(nn.Conv2d(32, scale * scale, 3, padding=1),
                                       nn.PixelShuffle(scale))
        # The reference init: tiny weights for the sub-pixel conv, He-style for the others.
        for conv in (self.first_part[0], self.first_part[2], self.last_part[0]):
            fan = conv.out_channels * conv.weight[0][0].numel()
            std = 0.001 if conv.in_channels == 32 else math.sqrt(2.0 / fan)
            nn.init.normal_(conv.weight, 0.0, std)
            nn.init.zeros_(conv.bias)

    def y_forward(self, y: torch.Tensor) -> torch.Tensor:
        """The official forward: Y in [0, 1] (N, 1, H, W) -> (N, 1, sH, sW)."""
        return self.last_part(self.first_part(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return y_channel_sr(x, self.scale, self.y_forward)


def build_espcn(scale: int) -> SRModel:
    """An ESPCN as an :class:`SRModel` (no dual nets)."""
    return SRModel(net=ESPCN(scale), scale=scale, arch="espcn", config={"scale": scale})


SPECS: list[ModelSpec] = [
    ModelSpec("espcn",
              "ESPCN (Y channel, Tanh, sub-pixel output; 24.8 K params at x4), "
              "yjn870/ESPCN-pytorch layout",
              {s: {} for s in (2, 3, 4)}, builder=build_espcn, family="espcn"),
]
