"""IMDN (Hui et al., 2019), laid out like Zheng222/IMDN.

State-dict keys follow ``model/architecture.py`` (class ``IMDN``) and ``model/block.py`` of that
repository: ``fea_conv.*``, ``IMDB1..IMDB6`` (information multi-distillation blocks with
``c1..c4`` 3x3 convs, ``c5`` 1x1 fusion and ``cca.conv_du.{0,2}`` contrast-aware channel
attention), ``c.0.*`` (1x1 fusion of the six block outputs), ``LR_conv.*`` and
``upsampler.0.*`` (conv to 3 * scale^2 channels + PixelShuffle), so the authors' checkpoints
(x2, x3, x4) load with ``strict=True``.

The authors work on RGB in [0, 1]; the net here takes and returns [0, 255] and converts inside
``forward`` (no extra parameters or keys).
"""

from __future__ import annotations

import torch
from torch import nn

from srprune.models.archs.distillation import cascade_forward
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

SCALES = (2, 3, 4)


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.05)


def _contrast(x: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation over the spatial dimensions (biased), (N, C, 1, 1)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).pow(0.5)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: ``x * sigmoid(W2 relu(W1 (std(x) + mean(x))))``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _contrast(x) + x.mean(dim=(2, 3), keepdim=True)
        return x * self.conv_du(y)


class IMDModule(nn.Module):
    """Information multi-distillation block: three times conv + split into a distilled quarter
    and a remaining three quarters (the remainder feeds the next conv), a last conv to a
    quarter, concat of the four quarters, CCA, 1x1 fusion, + input."""

    def __init__(self, channels: int, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = _conv(channels, channels, 3)
        self.c2 = _conv(self.remaining, channels, 3)
        self.c3 = _conv(self.remaining, channels, 3)
        self.c4 = _conv(self.remaining, self.distilled, 3)
        self.act = _lrelu()
        self.c5 = _conv(4 * self.distilled, channels, 1)
        self.cca = CCALayer(4 * self.distilled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        rest = x
        for conv in (self.c1, self.c2, self.c3):
            kept, rest = torch.split(self.act(conv(rest)), [self.distilled, self.remaining],
                                     dim=1)
            parts.append(kept)
        parts.append(self.c4(rest))
        return self.c5(self.cca(torch.cat(parts, dim=1))) + x


class IMDN(nn.Module):
    """IMDN: conv, six IMDBs, 1x1 fusion of all six outputs (LeakyReLU), conv + long skip,
    sub-pixel upsampler straight to RGB. Takes and returns RGB in [0, 255]."""

    def __init__(self, scale: int = 4, nf: int = 64, num_modules: int = 6) -> None:
        super().__init__()
        if num_modules != 6:
            raise ValueError(f"IMDN has 6 modules (keys IMDB1..IMDB6), got {num_modules}")
        self.fea_conv = _conv(3, nf, 3)
        for i in range(1, num_modules + 1):
            self.add_module(f"IMDB{i}", IMDModule(nf))
        self.num_modules = num_modules
        self.c = nn.Sequential(_conv(nf * num_modules, nf, 1), _lrelu())
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(_conv(nf, 3 * scale * scale, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade_forward(self, x, "IMDB", self.num_modules)


def build_imdn(scale: int, nf: int = 64) -> SRModel:
    """An IMDN as an :class:`SRModel` (no dual nets)."""
    net = IMDN(scale, nf)
    return SRModel(net=net, scale=scale, arch="imdn", config={"scale": scale, "nf": nf})


SPECS: list[ModelSpec] = [
    ModelSpec("imdn",
              "IMDN (6 multi-distillation blocks, 64 channels; 715 K params at x4), "
              "Zheng222/IMDN layout",
              {s: {"nf": 64} for s in SCALES}, builder=build_imdn, family="imdn",
              notes="progressive channel split 64 -> 16 + 48 three times per block; "
                    "contrast-aware channel attention"),
]
