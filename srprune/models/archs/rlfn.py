"""RLFN (Kong et al., 2022), laid out like bytedance/RLFN.

State-dict keys follow ``model/rlfn.py`` and ``model/block.py`` of that repository:
``conv_1.*``, ``block_1..block_6`` (residual local feature blocks: 3x3 convs ``c1_r``,
``c2_r``, ``c3_r``, 1x1 ``c5`` and ``esa.{conv1, conv_f, conv2, conv3, conv4}``), ``conv_2.*``
and ``upsampler.0.*``, so the authors' checkpoint loads with ``strict=True``. Default
configuration: 52 feature channels, ESA with 16 channels (543,740 parameters at x4, 526,856 at
x2; the paper's 543 K / 527 K).

The authors work on RGB in [0, 1]; the net here takes and returns [0, 255] and converts inside
``forward`` (no extra parameters or keys).

Input size: ESA downsamples with a stride-2 3x3 conv (no padding) and then max-pools with a 7x7
window, so LR inputs need at least ``MIN_INPUT`` (15) pixels per side, as in the original.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

SCALES = (2, 3, 4)
MIN_INPUT = 15  # smallest LR side ESA accepts: (15 - 3) // 2 + 1 = 7 = the max-pool window


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


class ESA(nn.Module):
    """RLFN's lighter ESA (no ``conv_max`` / ``conv3_``): 1x1 squeeze, stride-2 conv, 7x7/3
    max-pool, 3x3 conv, bilinear upsample back, + 1x1 of the squeeze, 1x1 expand, sigmoid gate
    on the input."""

    def __init__(self, esa_channels: int, n_feats: int) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.conv1(x)
        low = F.max_pool2d(self.conv2(squeezed), kernel_size=7, stride=3)
        low = F.interpolate(self.conv3(low), size=x.shape[2:], mode="bilinear",
                            align_corners=False)
        return x * torch.sigmoid(self.conv4(low + self.conv_f(squeezed)))


class RLFB(nn.Module):
    """Residual local feature block: three (3x3 conv, LeakyReLU) + identity, 1x1 conv, ESA."""

    def __init__(self, channels: int, mid_channels: int | None = None,
                 esa_channels: int = 16) -> None:
        super().__init__()
        mid = channels if mid_channels is None else mid_channels
        self.c1_r = _conv(channels, mid, 3)
        self.c2_r = _conv(mid, mid, 3)
        self.c3_r = _conv(mid, channels, 3)
        self.c5 = _conv(channels, channels, 1)
        self.esa = ESA(esa_channels, channels)
        self.act = nn.LeakyReLU(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out)) + x
        return self.esa(self.c5(out))


class RLFN(nn.Module):
    """RLFN: conv, six RLFBs, conv + long skip, sub-pixel upsampler straight to RGB. Takes and
    returns RGB in [0, 255]."""

    def __init__(self, scale: int = 4, feature_channels: int = 52, esa_channels: int = 16,
                 n_blocks: int = 6, mid_channels: int | None = None) -> None:
        super().__init__()
        self.conv_1 = _conv(3, feature_channels, 3)
        for i in range(1, n_blocks + 1):
            self.add_module(f"block_{i}", RLFB(feature_channels, mid_channels, esa_channels))
        self.n_blocks = n_blocks
        self.conv_2 = _conv(feature_channels, feature_channels, 3)
        self.upsampler = nn.Sequential(_conv(feature_channels, 3 * scale * scale, 3),
                                       nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_1(x / 255.0)
        out = fea
        for i in range(1, self.n_blocks + 1):
            out = getattr(self, f"block_{i}")(out)
        return self.upsampler(self.conv_2(out) + fea) * 255.0


def build_rlfn(scale: int, feature_channels: int = 52, esa_channels: int = 16,
               n_blocks: int = 6, mid_channels: int | None = None) -> SRModel:
    """An RLFN as an :class:`SRModel` (no dual nets). ``n_blocks`` and ``mid_channels``
    (the width inside each block) give the authors' ``RLFN_Prune`` (46 channels, 48 inside,
    4 blocks: the NTIRE 2022 efficient-SR winner)."""
    net = RLFN(scale, feature_channels, esa_channels, n_blocks, mid_channels)
    config: dict = {"scale": scale, "feature_channels": feature_channels,
                    "esa_channels": esa_channels}
    if n_blocks != 6:
        config["n_blocks"] = n_blocks
    if mid_channels is not None:
        config["mid_channels"] = mid_channels
    return SRModel(net=net, scale=scale, arch="rlfn", config=config)


def infer_rlfn(shapes: dict[str, tuple[int, ...]]) -> dict | None:
    """The builder config of an RLFN-layout state dict of any width and depth (the published
    RLFN and ``RLFN_Prune``), read from its tensor shapes; None for other layouts."""
    needed = ("conv_1.weight", "block_1.c1_r.weight", "block_1.esa.conv1.weight",
              "upsampler.0.weight")
    if not all(k in shapes for k in needed):
        return None
    blocks = sum(1 for k in shapes if k.startswith("block_") and k.endswith(".c1_r.weight"))
    out = shapes["upsampler.0.weight"][0]
    scale = round((out / 3) ** 0.5)
    features, mid = shapes["conv_1.weight"][0], shapes["block_1.c1_r.weight"][0]
    config = {"scale": scale, "feature_channels": features,
              "esa_channels": shapes["block_1.esa.conv1.weight"][0], "n_blocks": blocks}
    if mid != features:
        config["mid_channels"] = mid
    return config


SPECS: list[ModelSpec] = [
    ModelSpec("rlfn",
              "RLFN (6 residual local feature blocks, 52 channels; 544 K params at x4), "
              "bytedance/RLFN layout",
              {s: {"feature_channels": 52, "esa_channels": 16} for s in SCALES},
              builder=build_rlfn, family="rlfn",
              notes=f"ESA needs LR inputs of at least {MIN_INPUT}x{MIN_INPUT}; only the x4 "
                    "checkpoint is published",
              extra={"min_input": MIN_INPUT, "infer": infer_rlfn}),
]
