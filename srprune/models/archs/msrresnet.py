"""MSRResNet: SRResNet without batch norm (BasicSR ``basicsr/archs/srresnet_arch.py``).

Keys: ``conv_first``, ``body.<i>.conv1`` / ``conv2`` (residual blocks, ReLU inside),
``upconv1`` (+ ``upconv2`` at x4), ``conv_hr``, ``conv_last``. LeakyReLU(0.1) after the first
conv and each upsampling step; a bilinear upsampling of the input is added to the output.
BasicSR trains it on RGB in [0, 1]: ``forward`` takes and returns [0, 255] and scales inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel


def _init_scaled(modules: list[nn.Module], scale: float = 0.1) -> None:
    """BasicSR's ``default_init_weights``: Kaiming-normal weights times ``scale``, zero bias."""
    for m in modules:
        nn.init.kaiming_normal_(m.weight)
        with torch.no_grad():
            m.weight.mul_(scale)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))``."""

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.relu = nn.ReLU()
        _init_scaled([self.conv1, self.conv2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """See module docstring; scales 2, 3 (one conv + PixelShuffle(s)) and 4 (two x2 steps)."""

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 16) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"MSRResNet supports scales 2, 3 and 4, got {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(3, num_feat, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        step = 2 if scale == 4 else scale
        self.upconv1 = nn.Conv2d(num_feat, num_feat * step * step, 3, padding=1)
        self.upconv2 = (nn.Conv2d(num_feat, num_feat * 4, 3, padding=1) if scale == 4
                        else None)
        self.pixel_shuffle = nn.PixelShuffle(step)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)
        _init_scaled([m for m in (self.conv_first, self.upconv1, self.upconv2, self.conv_hr,
                                  self.conv_last) if m is not None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upconv2 is not None:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return (out + base) * 255.0


def build_msrresnet(scale: int, num_feat: int = 64, num_block: int = 16) -> SRModel:
    """An MSRResNet as an :class:`SRModel` (no dual nets)."""
    net = MSRResNet(scale, num_feat, num_block)
    return SRModel(net=net, scale=scale, arch="msrresnet",
                   config={"scale": scale, "num_feat": num_feat, "num_block": num_block})


SPECS: list[ModelSpec] = [
    ModelSpec("msrresnet",
              "MSRResNet (SRResNet without BN, 16 blocks, 64 channels; 1.52 M params at x4), "
              "BasicSR layout",
              {s: {"num_feat": 64, "num_block": 16} for s in (2, 3, 4)},
              builder=build_msrresnet, family="msrresnet"),
]
