"""RFDN (Liu et al., 2020), the AIM 2020 efficient-SR variant, laid out like njulj/RFDN.

State-dict keys follow ``RFDN.py`` and ``block.py`` of that repository: ``fea_conv.*``,
``B1..B4`` (residual feature distillation blocks: 1x1 distillation convs ``c{1,2,3}_d``, 3x3
residual convs ``c{1,2,3}_r``, ``c4``, 1x1 fusion ``c5`` and ``esa.{conv1, conv_f, conv_max,
conv2, conv3, conv3_, conv4}``), ``c.0.*`` (1x1 fusion of the four block outputs),
``LR_conv.*`` and ``upsampler.0.*``, so the authors' checkpoint loads with ``strict=True``.
Default configuration: nf 50, 4 blocks (433,448 parameters at x4; the paper's RFDN-L is larger).

The official code builds an x4 upsampler whatever ``upscale`` says, and only an x4 checkpoint is
published: only x4 is registered. ``build_rfdn`` accepts 2 and 3 too (a different
upsampler conv), as an unpublished configuration.

The authors work on RGB in [0, 1]; the net here takes and returns [0, 255] and converts inside
``forward`` (no extra parameters or keys).

Input size: ESA downsamples with a stride-2 3x3 conv (no padding) and then max-pools with a 7x7
window, so LR inputs need at least ``MIN_INPUT`` (15) pixels per side, as in the original.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models.archs.distillation import cascade_forward
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

MIN_INPUT = 15  # smallest LR side ESA accepts: (15 - 3) // 2 + 1 = 7 = the max-pool window


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


class ESA(nn.Module):
    """Enhanced spatial attention: 1x1 squeeze to ``n_feats // 4``, stride-2 conv, 7x7/3
    max-pool, three 3x3 convs, bilinear upsample back, + 1x1 of the squeeze, 1x1 expand,
    sigmoid gate on the input."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        f = n_feats // 4
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.conv1(x)
        low = F.max_pool2d(self.conv2(squeezed), kernel_size=7, stride=3)
        low = F.relu(self.conv3(F.relu(self.conv_max(low))))
        low = F.interpolate(self.conv3_(low), size=x.shape[2:], mode="bilinear",
                            align_corners=False)
        return x * torch.sigmoid(self.conv4(low + self.conv_f(squeezed)))


class RFDB(nn.Module):
    """Residual feature distillation block: three steps of (1x1 distillation to half the
    channels, 3x3 conv + identity), a last 3x3 conv to half, concat of the four halves, 1x1
    fusion, ESA. (No residual around the block.)"""

    def __init__(self, channels: int) -> None:
        super().__init__()
        dc = channels // 2
        self.c1_d = _conv(channels, dc, 1)
        self.c1_r = _conv(channels, channels, 3)
        self.c2_d = _conv(channels, dc, 1)
        self.c2_r = _conv(channels, channels, 3)
        self.c3_d = _conv(channels, dc, 1)
        self.c3_r = _conv(channels, channels, 3)
        self.c4 = _conv(channels, dc, 3)
        self.act = nn.LeakyReLU(0.05)
        self.c5 = _conv(4 * dc, channels, 1)
        self.esa = ESA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        feat = x
        for dist, res in ((self.c1_d, self.c1_r), (self.c2_d, self.c2_r),
                          (self.c3_d, self.c3_r)):
            parts.append(self.act(dist(feat)))
            feat = self.act(res(feat) + feat)
        parts.append(self.act(self.c4(feat)))
        return self.esa(self.c5(torch.cat(parts, dim=1)))


class RFDN(nn.Module):
    """RFDN: conv, ``num_modules`` RFDBs, 1x1 fusion of their outputs (LeakyReLU), conv + long
    skip, sub-pixel upsampler straight to RGB. Takes and returns RGB in [0, 255]."""

    def __init__(self, scale: int = 4, nf: int = 50, num_modules: int = 4) -> None:
        super().__init__()
        self.fea_conv = _conv(3, nf, 3)
        for i in range(1, num_modules + 1):
            self.add_module(f"B{i}", RFDB(nf))
        self.num_modules = num_modules
        self.c = nn.Sequential(_conv(nf * num_modules, nf, 1), nn.LeakyReLU(0.05))
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(_conv(nf, 3 * scale * scale, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade_forward(self, x, "B", self.num_modules)


def build_rfdn(scale: int, nf: int = 50, num_modules: int = 4) -> SRModel:
    """An RFDN as an :class:`SRModel` (no dual nets)."""
    if scale not in (2, 3, 4):
        raise ValueError(f"RFDN supports scales 2, 3 and 4, got {scale}")
    net = RFDN(scale, nf, num_modules)
    return SRModel(net=net, scale=scale, arch="rfdn",
                   config={"scale": scale, "nf": nf, "num_modules": num_modules})


SPECS: list[ModelSpec] = [
    ModelSpec("rfdn",
              "RFDN, AIM 2020 variant (4 distillation blocks, 50 channels; 433 K params at x4), "
              "njulj/RFDN layout",
              {4: {"nf": 50, "num_modules": 4}}, builder=build_rfdn, family="rfdn",
              notes=f"ESA needs LR inputs of at least {MIN_INPUT}x{MIN_INPUT}",
              extra={"min_input": MIN_INPUT}),
]
