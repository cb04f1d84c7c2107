"""DRN (Dual Regression Network) with the authors' module names.

The primal network's ``state_dict`` matches the authors' released checkpoints key for key and
shape for shape (see ``srprune/reference/official_state_dict_keys.json``), so their weights
load with ``strict=True``. Optional per-layer inner widths build the compressed DRN-S models
(the authors' channel-config files) and any pruned plan of the same family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

RGB_MEAN = (0.4488, 0.4371, 0.4040)
LEAKY_SLOPE = 0.2
CA_REDUCTION = 16


def _conv(c_in: int, c_out: int, k: int = 3, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """1x1 conv adding (sign=+1) or subtracting (sign=-1) the dataset RGB mean; trainable."""

    def __init__(self, rgb_range: float, sign: int) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(RGB_MEAN))


class ChannelAttention(nn.Module):
    """Squeeze-excite gate: global pool, 1x1 down, ReLU, 1x1 up, sigmoid, multiply."""

    def __init__(self, channels: int, reduction: int = CA_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel-attention block; ``inner`` is the prunable width between the convs."""

    def __init__(self, channels: int, inner: int | None = None) -> None:
        super().__init__()
        inner = channels if inner is None else inner
        self.body = nn.Sequential(
            _conv(channels, inner), nn.ReLU(inplace=True), _conv(inner, channels),
            ChannelAttention(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class DownBlock(nn.Module):
    """Stride-2 conv, LeakyReLU, conv (no biases): the encoder step and the dual model."""

    def __init__(self, c_in: int, inner: int, c_out: int) -> None:
        super().__init__()
        self.dual_module = nn.Sequential(
            nn.Sequential(_conv(c_in, inner, bias=False, stride=2),
                          nn.LeakyReLU(LEAKY_SLOPE, inplace=True)),
            _conv(inner, c_out, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dual_module(x)


class Upsampler(nn.Sequential):
    """conv (width -> 4*width') then PixelShuffle(2); width' is the prunable upsampler width."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__(_conv(channels, 4 * width), nn.PixelShuffle(2))


@dataclass
class DRNWidths:
    """Per-layer inner widths: encoder DownBlocks, RCABs per stage, upsampler per stage."""

    down: list[int]
    rcab: list[list[int]]
    up: list[int] = field(default_factory=list)

    def as_lines(self) -> list[int]:
        """The authors' channel-config order: downs, then per stage its RCABs and upsampler."""
        lines = list(self.down)
        for stage, up in zip(self.rcab, self.up):
            lines += [*stage, up]
        return lines


def full_widths(scale: int, n_feats: int, n_blocks: int) -> DRNWidths:
    """The unpruned widths of a DRN."""
    levels = _levels(scale)
    stage_w = [stage_width(n_feats, levels, i) for i in range(levels)]
    return DRNWidths(
        down=[n_feats * 2**p for p in range(levels)],
        rcab=[[w] * n_blocks for w in stage_w],
        up=list(stage_w),
    )


def _levels(scale: int) -> int:
    levels = int(round(math.log2(scale)))
    if scale < 2 or 2**levels != scale:
        raise ValueError(f"DRN needs a power-of-two scale >= 2, got {scale}")
    return levels


def stage_width(n_feats: int, levels: int, stage: int) -> int:
    """Trunk width of decoder stage ``stage``: C*2^P for stage 0, C*2^(P-stage+1) after."""
    return n_feats * 2**levels if stage == 0 else n_feats * 2 ** (levels - stage + 1)


class DRN(nn.Module):
    """Primal DRN. ``forward`` returns ``[out_0 (1x), out_1 (2x), ..., out_P (scale x)]``."""

    def __init__(self, scale: int = 4, n_feats: int = 16, n_blocks: int = 30,
                 widths: DRNWidths | None = None, rgb_range: float = 255.0) -> None:
        super().__init__()
        levels = _levels(scale)
        self.scale, self.levels, self.n_feats, self.n_blocks = scale, levels, n_feats, n_blocks
        widths = widths or full_widths(scale, n_feats, n_blocks)
        _check_widths(widths, levels, n_blocks)
        self.upsample = nn.Upsample(scale_factor=scale, mode="bicubic", align_corners=False)
        self.sub_mean = MeanShift(rgb_range, -1)
        self.head = _conv(3, n_feats)
        self.down = nn.ModuleList(
            DownBlock(n_feats * 2**p, widths.down[p], n_feats * 2 ** (p + 1))
            for p in range(levels)
        )
        up_blocks = []
        for i in range(levels):
            w = stage_width(n_feats, levels, i)
            blocks: list[nn.Module] = [RCAB(w, widths.rcab[i][j]) for j in range(n_blocks)]
            blocks.append(Upsampler(w, widths.up[i]))
            blocks.append(nn.Conv2d(widths.up[i], n_feats * 2 ** (levels - 1 - i), 1))
            up_blocks.append(nn.Sequential(*blocks))
        self.up_blocks = nn.ModuleList(up_blocks)
        tails = [_conv(n_feats * 2**levels, 3)]
        tails += [_conv(n_feats * 2 ** (levels - i), 3) for i in range(levels)]
        self.tail = nn.ModuleList(tails)
        self.add_mean = MeanShift(rgb_range, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.sub_mean(self.upsample(x))
        x = self.head(x)
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        outputs = [self.add_mean(self.tail[0](x))]
        for i, stage in enumerate(self.up_blocks):
            x = torch.cat((stage(x), skips[self.levels - 1 - i]), dim=1)
            outputs.append(self.add_mean(self.tail[i + 1](x)))
        return outputs


def _check_widths(widths: DRNWidths, levels: int, n_blocks: int) -> None:
    if len(widths.down) != levels or len(widths.up) != levels or len(widths.rcab) != levels:
        raise ValueError(f"widths need {levels} down, {levels} up and {levels} RCAB stages")
    if any(len(stage) != n_blocks for stage in widths.rcab):
        raise ValueError(f"every RCAB stage needs {n_blocks} widths")


def dual_models(scale: int, n_feats: int) -> nn.ModuleList:
    """The dual nets: one DownBlock 3 -> C -> 3 per x2 step (dual k maps 2^(k+1) -> 2^k)."""
    return nn.ModuleList(DownBlock(3, n_feats, 3) for _ in range(_levels(scale)))
