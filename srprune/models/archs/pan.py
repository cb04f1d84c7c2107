"""PAN, pixel attention network (Zhao et al., 2020), laid out like zhaohengyuan1/PAN
``codes/models/archs/PAN_arch.py``.

Keys: ``conv_first``, ``SCPA_trunk.<i>.{conv1_a, conv1_b, k1.0, PAConv.k2, PAConv.k3,
PAConv.k4, conv3}`` (bias-free except ``k2``), ``trunk_conv``, then per upsampling step
``upconv<j>`` (after nearest interpolation), ``att<j>.conv`` (pixel attention) and
``HRconv<j>`` (two steps at x4, one x2/x3 step otherwise), and ``conv_last``; a bilinear
upsampling of the input is added. PAN is trained on RGB in [0, 1]: ``forward`` takes and
returns [0, 255] and scales inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel


class PA(nn.Module):
    """Pixel attention: ``x * sigmoid(conv1x1(x))``."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """``k4(k3(x) * sigmoid(k2(x)))`` with a 1x1 ``k2`` and bias-free 3x3 ``k3``, ``k4``."""

    def __init__(self, nf: int, k_size: int = 3) -> None:
        super().__init__()
        pad = (k_size - 1) // 2
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, k_size, padding=pad, bias=False)
        self.k4 = nn.Conv2d(nf, nf, k_size, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention: two 1x1 branches (nf -> nf/2), a plain
    3x3 on one and a PAConv on the other, concat, 1x1 back to nf, plus the input."""

    def __init__(self, nf: int, reduction: int = 2) -> None:
        super().__init__()
        gw = nf // reduction
        self.conv1_a = nn.Conv2d(nf, gw, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, gw, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(gw, gw, 3, padding=1, bias=False))
        self.PAConv = PAConv(gw)
        self.conv3 = nn.Conv2d(gw * reduction, nf, 1, bias=False)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.lrelu(self.k1(self.lrelu(self.conv1_a(x))))
        b = self.lrelu(self.PAConv(self.lrelu(self.conv1_b(x))))
        return x + self.conv3(torch.cat([a, b], dim=1))


class PAN(nn.Module):
    """See module docstring; scales 2, 3 (one nearest x``scale`` step) and 4 (two x2 steps)."""

    def __init__(self, scale: int = 4, nf: int = 40, unf: int = 24, nb: int = 16) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"PAN supports scales 2, 3 and 4, got {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(3, nf, 3, padding=1)
        self.SCPA_trunk = nn.Sequential(*[SCPA(nf) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upconv1 = nn.Conv2d(nf, unf, 3, padding=1)
        self.att1 = PA(unf)
        self.HRconv1 = nn.Conv2d(unf, unf, 3, padding=1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(unf, unf, 3, padding=1)
            self.att2 = PA(unf)
            self.HRconv2 = nn.Conv2d(unf, unf, 3, padding=1)
        self.conv_last = nn.Conv2d(unf, 3, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2)

    def _up(self, fea: torch.Tensor, factor: int, up: nn.Module, att: nn.Module,
            hr: nn.Module) -> torch.Tensor:
        fea = up(F.interpolate(fea, scale_factor=factor, mode="nearest"))
        return self.lrelu(hr(self.lrelu(att(fea))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        if self.scale == 4:
            fea = self._up(fea, 2, self.upconv1, self.att1, self.HRconv1)
            fea = self._up(fea, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            fea = self._up(fea, self.scale, self.upconv1, self.att1, self.HRconv1)
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return (self.conv_last(fea) + base) * 255.0


def build_pan(scale: int, nf: int = 40, unf: int = 24, nb: int = 16) -> SRModel:
    """A PAN as an :class:`SRModel` (no dual nets)."""
    return SRModel(net=PAN(scale, nf, unf, nb), scale=scale, arch="pan",
                   config={"scale": scale, "nf": nf, "unf": unf, "nb": nb})


SPECS: list[ModelSpec] = [
    ModelSpec("pan",
              "PAN (pixel attention, 40/24 channels, 16 SCPA blocks; 272 K params at x4), "
              "zhaohengyuan1/PAN layout",
              {s: {"nf": 40, "unf": 24, "nb": 16} for s in (2, 3, 4)},
              builder=build_pan, family="pan"),
]
