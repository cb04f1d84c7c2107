"""EDSR and EDSR-baseline (Lim et al., 2017), laid out like sanghyun-son/EDSR-PyTorch.

State-dict keys follow ``src/model/edsr.py`` of that repository: ``sub_mean.*``, ``head.0.*``,
``body.<i>.body.{0,2}.*`` (residual blocks), ``body.<n>.*`` (the conv closing the body),
``tail.0.<j>.*`` (sub-pixel upsampler), ``tail.1.*`` and ``add_mean.*``, so the authors'
checkpoints load with ``strict=True``. The net works on RGB in [0, 255] like the original
(``rgb_range`` 255).

The mean shifts are fixed 1x1 convolutions (identity weight, +/- the DIV2K mean as bias). The
original makes them ``nn.Conv2d`` with frozen parameters; here ``weight`` and ``bias`` are
buffers, so they stay in the state_dict under the same names but are neither counted as
parameters (the published 1,518 K / 43.1 M exclude them) nor seen by a pruning graph as a
prunable convolution.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Adds ``sign * rgb_range * mean`` per channel, as a fixed 1x1 conv (keys ``weight``,
    ``bias``, stored as buffers)."""

    def __init__(self, rgb_range: float = 255.0, sign: int = -1,
                 mean: tuple[float, ...] = DIV2K_MEAN) -> None:
        super().__init__()
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * rgb_range * torch.tensor(mean))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ResBlock(nn.Module):
    """``body`` = conv, ReLU, conv; output ``x + res_scale * body(x)``."""

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(n_feats, n_feats), nn.ReLU(), _conv(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1:
            res = res * self.res_scale
        return x + res


def upsampler(scale: int, n_feats: int) -> nn.Sequential:
    """Sub-pixel upsampler: (conv n -> 4n, PixelShuffle(2)) per factor 2, or one conv n -> 9n
    with PixelShuffle(3) for x3."""
    if scale == 3:
        return nn.Sequential(_conv(n_feats, 9 * n_feats), nn.PixelShuffle(3))
    steps = int(round(math.log2(scale))) if scale >= 2 else 0
    if steps == 0 or 2**steps != scale:
        raise ValueError(f"EDSR supports scales 2, 3, 4 and 8, got {scale}")
    layers: list[nn.Module] = []
    for _ in range(steps):
        layers += [_conv(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """EDSR: head conv, ``n_resblocks`` residual blocks + conv with a long skip, sub-pixel
    upsampler, conv to RGB; takes and returns RGB in [0, ``rgb_range``]."""

    def __init__(self, scale: int = 4, n_resblocks: int = 16, n_feats: int = 64,
                 res_scale: float = 1.0, rgb_range: float = 255.0) -> None:
        super().__init__()
        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(_conv(3, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
                                  _conv(n_feats, n_feats))
        self.tail = nn.Sequential(upsampler(scale, n_feats), _conv(n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(self.sub_mean(x))
        feat = self.body(feat) + feat
        return self.add_mean(self.tail(feat))


def build_edsr(scale: int, n_resblocks: int = 16, n_feats: int = 64,
               res_scale: float = 1.0) -> SRModel:
    """An EDSR as an :class:`SRModel` (no dual nets)."""
    net = EDSR(scale, n_resblocks, n_feats, res_scale)
    config = {"scale": scale, "n_resblocks": n_resblocks, "n_feats": n_feats,
              "res_scale": res_scale}
    return SRModel(net=net, scale=scale, arch="edsr", config=config)


BASICSR_KEYS = (  # BasicSR's EDSR (basicsr/archs/edsr_arch.py) -> this layout
    (r"^conv_first\.", "head.0."), (r"^body\.(\d+)\.conv1\.", r"body.\1.body.0."),
    (r"^body\.(\d+)\.conv2\.", r"body.\1.body.2."), (r"^upsample\.", "tail.0."),
    (r"^conv_last\.", "tail.1."))


def from_basicsr(state: dict[str, Any]) -> dict[str, Any]:
    """BasicSR's EDSR keys renamed to the authors' layout (values untouched); any other
    state dict is returned as it is. BasicSR keeps its RGB mean (the DIV2K mean by default)
    outside the state dict: the mean shifts are added."""
    if "conv_first.weight" not in state or "conv_after_body.weight" not in state:
        return state
    blocks = sum(1 for k in state if re.fullmatch(r"body\.\d+\.conv1\.weight", k))
    renamed = {}
    for key, value in state.items():
        new = re.sub(r"^conv_after_body\.", f"body.{blocks}.", key)
        for pattern, replacement in BASICSR_KEYS:
            new = re.sub(pattern, replacement, new)
        renamed[new] = value
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):  # BasicSR's default mean
        for key, tensor in MeanShift(255.0, sign).state_dict().items():
            renamed[f"{name}.{key}"] = tensor
    return renamed


def infer_edsr(shapes: dict[str, Any]) -> dict[str, Any] | None:
    """The builder config of an EDSR state dict of any width and depth (authors' or
    BasicSR's layout, see :func:`from_basicsr`), from its tensor shapes; None for other
    layouts. The residual scaling is not in the weights: 0.1 for 256 channels (both
    projects' published EDSR), else 1."""
    shapes = from_basicsr(shapes)
    if "head.0.weight" not in shapes or "tail.1.weight" not in shapes:
        return None
    blocks = sum(1 for k in shapes if re.fullmatch(r"body\.\d+\.body\.0\.weight", k))
    features = shapes["head.0.weight"][0]
    ups = [v for k, v in shapes.items() if re.fullmatch(r"tail\.0\.\d+\.weight", k)]
    if not ups or not blocks:
        return None
    scale = 3 if ups[0][0] == 9 * features else 2 ** len(ups)
    return {"scale": scale, "n_resblocks": blocks, "n_feats": features,
            "res_scale": 0.1 if features == 256 else 1.0}


_BASELINE = {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0}
_FULL = {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1}

SPECS: list[ModelSpec] = [
    ModelSpec("edsr-baseline",
              "EDSR baseline (16 blocks, 64 channels; 1.52 M params at x4), "
              "sanghyun-son/EDSR-PyTorch layout",
              {s: dict(_BASELINE) for s in (2, 3, 4)}, builder=build_edsr, family="edsr",
              extra={"infer": infer_edsr, "rename": from_basicsr}),
    ModelSpec("edsr",
              "EDSR (32 blocks, 256 channels, residual scaling 0.1; 43.1 M params at x4), "
              "sanghyun-son/EDSR-PyTorch layout",
              {s: dict(_FULL) for s in (2, 3, 4)}, builder=build_edsr, family="edsr",
              extra={"infer": infer_edsr, "rename": from_basicsr}),
]
