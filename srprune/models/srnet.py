"""A configurable EDSR/RCAN-style SR family, used for tests and as a second reference family.

head conv -> n_blocks residual blocks (optional channel attention) -> body conv + long skip
-> optional concat with the head features and a 1x1 fuse -> sub-pixel upsampler
(PixelShuffle x2 stages for 2/4/8, one x3 stage for 3, each with an optional activation)
-> tail conv to RGB, plus an optional global bicubic skip of the input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("relu", "prelu", "lrelu")


def _act(kind: str, channels: int) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "lrelu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"unknown activation '{kind}'; use one of {', '.join(ACTIVATIONS)}")


class ResBlock(nn.Module):
    """conv -> act -> conv (-> channel attention) + input."""

    def __init__(self, channels: int, act: str, attention: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = _act(act, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        hidden = max(1, channels // 4)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid(),
        ) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        if self.attention is not None:
            y = y * self.attention(y)
        return x + y


def _stages(scale: int) -> list[int]:
    if scale == 3:
        return [3]
    levels = int(round(math.log2(scale)))
    if scale < 2 or 2**levels != scale:
        raise ValueError(f"srnet supports scales 2, 3, 4 and 8, got {scale}")
    return [2] * levels


class SRNet(nn.Module):
    """See module docstring. Returns the SR image in [0, 255] space (no clamping)."""

    def __init__(self, scale: int = 4, n_feats: int = 16, n_blocks: int = 2, act: str = "relu",
                 attention: bool = False, concat_skip: bool = False, up_act: bool = False,
                 bicubic_skip: bool = False) -> None:
        super().__init__()
        self.scale, self.bicubic_skip, self.concat_skip = scale, bicubic_skip, concat_skip
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(n_feats, act, attention) for _ in range(n_blocks)])
        self.body_tail = nn.Conv2d(n_feats, n_feats, 3, padding=1)
        self.fuse = nn.Conv2d(2 * n_feats, n_feats, 1) if concat_skip else None
        layers: list[nn.Module] = []
        for r in _stages(scale):
            layers += [nn.Conv2d(n_feats, n_feats * r * r, 3, padding=1), nn.PixelShuffle(r)]
            if up_act:
                layers.append(_act(act, n_feats))
        self.upsampler = nn.Sequential(*layers)
        self.tail = nn.Conv2d(n_feats, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x / 255.0 - 0.5)
        feat = self.body_tail(self.body(head)) + head
        if self.fuse is not None:
            feat = self.fuse(torch.cat([feat, head], dim=1))
        residual = self.tail(self.upsampler(feat)) * 255.0
        if self.bicubic_skip:
            return residual + F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                            align_corners=False)
        return residual + 127.5
