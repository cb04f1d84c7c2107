"""CARN and CARN-M (Ahn et al., 2018), laid out like nmhkahn/CARN-pytorch.

State-dict keys follow ``carn/model/carn.py``, ``carn_m.py`` and ``ops.py`` of that repository:
``sub_mean.shifter.*`` / ``add_mean.shifter.*`` (fixed mean shifts), ``entry.*``,
``b{1,2,3}.*`` (cascading blocks), ``c{1,2,3}.body.0.*`` (global 1x1 fusions),
``upsample.up{2,3,4}.body.<i>.*`` (multi-scale sub-pixel upsamplers) and ``exit.*``, so the
authors' checkpoints load with ``strict=True``.

Conventions:

- **Multi-scale.** The published nets (and checkpoints) are multi-scale: one trunk with three
  upsamplers (x2, x3, x4) and ``forward(x, scale)``. Here the scale is fixed at build time and
  ``forward(x)`` runs the matching upsampler; the other two stay in the module (unused) so
  official checkpoints load strictly and the parameter count is the published one (CARN
  1,591,963 = 1,592 K, CARN-M 414,811 = 412 K in the paper). ``multi_scale=False`` builds the
  repository's single-scale variant (one upsampler, key ``upsample.up``; CARN x4: 1,111,899);
  ``single_scale_state_dict`` converts a multi-scale checkpoint to it. The unused upsamplers
  of the multi-scale net never run, so a traced pruning graph or an ONNX export does not see
  them: they stay unpruned and count as parameters of the torch module only.
- **Mean shifts.** As in the original, ``sub_mean`` / ``add_mean`` are 1x1 ``nn.Conv2d`` layers
  (identity weight, -/+ the DIV2K mean as bias) whose parameters are frozen
  (``requires_grad=False``); they are parameters, so they are counted (24 of the totals above).
- **Pixel range.** The authors train on RGB in [0, 1]; the net here takes and returns [0, 255]
  and converts inside ``forward`` (no extra parameters or keys).
- **CARN-M** shares one efficient residual block (``b1``: grouped 3x3, grouped 3x3, 1x1)
  between the three cascade steps of each block and uses grouped convs (groups 4) in the
  upsampler too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
SCALES = (2, 3, 4)


class MeanShift(nn.Module):
    """Adds ``sign * mean`` per channel through a frozen 1x1 conv (key ``shifter``)."""

    def __init__(self, sign: int, mean: tuple[float, ...] = DIV2K_MEAN) -> None:
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(sign * torch.tensor(mean))
        for p in self.shifter.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class BasicBlock(nn.Module):
    """``body`` = conv (1x1 fusion here), ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    """CARN's residual block: ``relu(x + conv(relu(conv(x))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class EResidualBlock(nn.Module):
    """CARN-M's efficient residual block: grouped 3x3, ReLU, grouped 3x3, ReLU, 1x1, + x, ReLU."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups), nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


def _cascade(x: torch.Tensor, units: list[nn.Module], fusions: list[nn.Module]) -> torch.Tensor:
    """Cascading connections: each unit's output is concatenated to everything before it and
    fused back to ``channels`` by a 1x1 conv, which feeds the next unit."""
    cat, out = x, x
    for unit, fuse in zip(units, fusions):
        cat = torch.cat([cat, unit(out)], dim=1)
        out = fuse(cat)
    return out


class CascadingBlock(nn.Module):
    """CARN's local block: residual blocks ``b1..b3`` with fusions ``c1..c3``. With
    ``shared=True`` (CARN-M) only ``b1`` exists and is applied at all three steps."""

    def __init__(self, channels: int, shared: bool = False, groups: int = 1) -> None:
        super().__init__()
        self.shared = shared
        if shared:
            self.b1 = EResidualBlock(channels, groups)
        else:
            self.b1 = ResidualBlock(channels)
            self.b2 = ResidualBlock(channels)
            self.b3 = ResidualBlock(channels)
        self.c1 = BasicBlock(2 * channels, channels)
        self.c2 = BasicBlock(3 * channels, channels)
        self.c3 = BasicBlock(4 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        units = [self.b1] * 3 if self.shared else [self.b1, self.b2, self.b3]
        return _cascade(x, units, [self.c1, self.c2, self.c3])


class _Upsample(nn.Module):
    """Sub-pixel upsampler for one scale: (conv n -> r^2 n, ReLU, PixelShuffle(r)) per step."""

    def __init__(self, channels: int, scale: int, groups: int) -> None:
        super().__init__()
        if scale == 3:
            steps = [3]
        elif scale in (2, 4, 8):
            steps = [2] * int(round(math.log2(scale)))
        else:
            raise ValueError(f"CARN supports scales 2, 3, 4 and 8, got {scale}")
        layers: list[nn.Module] = []
        for r in steps:
            layers += [nn.Conv2d(channels, r * r * channels, 3, padding=1, groups=groups),
                       nn.ReLU(), nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpsampleBlock(nn.Module):
    """``up2``/``up3``/``up4`` (multi-scale) or a single ``up``; runs the one for ``scale``."""

    def __init__(self, channels: int, scale: int, multi_scale: bool, groups: int) -> None:
        super().__init__()
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2 = _Upsample(channels, 2, groups)
            self.up3 = _Upsample(channels, 3, groups)
            self.up4 = _Upsample(channels, 4, groups)
        else:
            self.up = _Upsample(channels, scale, groups)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        if not self.multi_scale:
            return self.up(x)
        return getattr(self, f"up{scale}")(x)


class CARN(nn.Module):
    """CARN (``mobile=False``) or CARN-M (``mobile=True``: shared efficient residual blocks,
    grouped convs). Takes and returns RGB in [0, 255]; runs the upsampler of ``scale``."""

    def __init__(self, scale: int = 4, multi_scale: bool = True, mobile: bool = False,
                 groups: int | None = None, channels: int = 64) -> None:
        super().__init__()
        if multi_scale and scale not in SCALES:
            raise ValueError(f"multi-scale CARN supports scales 2, 3 and 4, got {scale}")
        groups = (4 if mobile else 1) if groups is None else groups
        self.scale = scale
        self.sub_mean = MeanShift(-1)
        self.add_mean = MeanShift(+1)
        self.entry = nn.Conv2d(3, channels, 3, padding=1)
        self.b1 = CascadingBlock(channels, mobile, groups)
        self.b2 = CascadingBlock(channels, mobile, groups)
        self.b3 = CascadingBlock(channels, mobile, groups)
        self.c1 = BasicBlock(2 * channels, channels)
        self.c2 = BasicBlock(3 * channels, channels)
        self.c3 = BasicBlock(4 * channels, channels)
        self.upsample = UpsampleBlock(channels, scale, multi_scale, groups)
        self.exit = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.entry(self.sub_mean(x / 255.0))
        feat = _cascade(feat, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3])
        out = self.exit(self.upsample(feat, self.scale))
        return self.add_mean(out) * 255.0


def single_scale_state_dict(state_dict: dict[str, torch.Tensor],
                            scale: int) -> dict[str, torch.Tensor]:
    """A multi-scale CARN / CARN-M state_dict reduced to the single-scale layout of ``scale``
    (``upsample.up{scale}.*`` renamed ``upsample.up.*``, the other upsamplers dropped), for
    ``build_carn(scale, multi_scale=False)``: a net without unused upsamplers, whose parameter
    count is what actually runs (CARN x4: 1,111,899)."""
    if scale not in SCALES:
        raise ValueError(f"multi-scale CARN checkpoints hold scales 2, 3 and 4, got {scale}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("upsample.up") and not key.startswith("upsample.up."):
            head, _, rest = key[len("upsample.up"):].partition(".")
            if head == str(scale):
                out[f"upsample.up.{rest}"] = value
        else:
            out[key] = value
    return out


def build_carn(scale: int, multi_scale: bool = True, mobile: bool = False) -> SRModel:
    """A CARN (or CARN-M with ``mobile=True``) as an :class:`SRModel` (no dual nets)."""
    net = CARN(scale, multi_scale=multi_scale, mobile=mobile)
    config = {"scale": scale, "multi_scale": multi_scale, "mobile": mobile}
    return SRModel(net=net, scale=scale, arch="carn", config=config)


SPECS: list[ModelSpec] = [
    ModelSpec("carn",
              "CARN (cascading residual network, 64 channels; 1.59 M params, multi-scale "
              "x2/x3/x4 upsamplers), nmhkahn/CARN-pytorch layout",
              {s: {"multi_scale": True, "mobile": False} for s in SCALES},
              builder=build_carn, family="carn",
              notes="the published multi-scale net: all three upsamplers are kept (official "
                    "checkpoints load strictly), only the build scale's runs"),
    ModelSpec("carn-m",
              "CARN-M (shared efficient residual blocks, grouped convs; 415 K params, "
              "multi-scale x2/x3/x4 upsamplers), nmhkahn/CARN-pytorch layout",
              {s: {"multi_scale": True, "mobile": True} for s in SCALES},
              builder=build_carn, family="carn",
              notes="weights shared inside each cascading block; groups 4 (also in the "
                    "upsamplers)"),
]
