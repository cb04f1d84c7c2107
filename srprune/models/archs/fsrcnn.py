"""FSRCNN (Dong et al., 2016), laid out like yjn870/FSRCNN-pytorch ``models.py``.

Keys: ``first_part.{0,1}`` (5x5 conv 1 -> d, PReLU), ``mid_part.<i>`` (1x1 shrink d -> s,
m 3x3 convs s -> s, 1x1 expand s -> d, each followed by a PReLU), ``last_part``
(ConvTranspose2d d -> 1, kernel 9, stride = scale). The layers are a Y-channel net trained on
Y in [0, 1]; ``forward`` takes and returns RGB in [0, 255]: RGB -> YCbCr (BT.601, MATLAB
``rgb2ycbcr``), the layers run on Y / 255, Cb and Cr are upsampled bicubically, and the result
is converted back to RGB. The colour conversion is plain tensor arithmetic (no modules), so the
state_dict is exactly the official one. :func:`y_channel_sr` is shared with ESPCN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

# MATLAB rgb2ycbcr for RGB in [0, 255]: ycc = OFFSET + M @ rgb / 255.
_M = ((65.481, 128.553, 24.966),
      (-37.797, -74.203, 112.0),
      (112.0, -93.786, -18.214))
_OFFSET = (16.0, 128.0, 128.0)
_M_INV = tuple(tuple(v) for v in
               (torch.linalg.inv(torch.tensor(_M, dtype=torch.float64) / 255.0)).tolist())


def _mix(rows: tuple[tuple[float, ...], ...], channels: list[torch.Tensor],
         offset: tuple[float, ...]) -> list[torch.Tensor]:
    return [off + sum(w * c for w, c in zip(row, channels)) for row, off in zip(rows, offset)]


def rgb_to_ycbcr(x: torch.Tensor) -> list[torch.Tensor]:
    """(N, 3, H, W) RGB in [0, 255] -> [Y, Cb, Cr], each (N, 1, H, W), MATLAB range."""
    rgb = [x[:, i:i + 1] for i in range(3)]
    return _mix(tuple(tuple(w / 255.0 for w in row) for row in _M), rgb, _OFFSET)


def ycbcr_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`: (N, 3, H, W) RGB in [0, 255] (not clamped)."""
    centred = [y - _OFFSET[0], cb - _OFFSET[1], cr - _OFFSET[2]]
    return torch.cat(_mix(_M_INV, centred, (0.0, 0.0, 0.0)), dim=1)


def y_channel_sr(x: torch.Tensor, scale: int,
                 net: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Super-resolve RGB [0, 255] with a Y-channel ``net`` that maps Y in [0, 1] (N, 1, H, W)
    to (N, 1, sH, sW); chroma is upsampled bicubically."""
    y, cb, cr = rgb_to_ycbcr(x)
    y_sr = net(y / 255.0) * 255.0
    chroma = F.interpolate(torch.cat([cb, cr], dim=1), scale_factor=scale, mode="bicubic",
                           align_corners=False)
    return ycbcr_to_rgb(y_sr, chroma[:, 0:1], chroma[:, 1:2])


def _init_he(conv: nn.Conv2d) -> None:
    """The reference init: N(0, sqrt(2 / (out_channels * k * k))), zero bias."""
    fan = conv.out_channels * conv.weight[0][0].numel()
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan))
    nn.init.zeros_(conv.bias)


class FSRCNN(nn.Module):
    """See module docstring; any integer scale >= 2 (the ConvTranspose2d stride)."""

    def __init__(self, scale: int = 4, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"FSRCNN needs an integer scale >= 2, got {scale}")
        self.scale = scale
        self.first_part = nn.Sequential(nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d))
        mid: list[nn.Module] = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            mid += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        mid += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*mid)
        self.last_part = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4,
                                            output_padding=scale - 1)
        for layer in [*self.first_part, *self.mid_part]:
            if isinstance(layer, nn.Conv2d):
                _init_he(layer)
        nn.init.normal_(self.last_part.weight, 0.0, 0.001)
        nn.init.zeros_(self.last_part.bias)

    def y_forward(self, y: torch.Tensor) -> torch.Tensor:
        """The official forward: Y in [0, 1] (N, 1, H, W) -> (N, 1, sH, sW)."""
        return self.last_part(self.mid_part(self.first_part(y)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return y_channel_sr(x, self.scale, self.y_forward)


def build_fsrcnn(scale: int, d: int = 56, s: int = 12, m: int = 4) -> SRModel:
    """An FSRCNN as an :class:`SRModel` (no dual nets)."""
    return SRModel(net=FSRCNN(scale, d, s, m), scale=scale, arch="fsrcnn",
                   config={"scale": scale, "d": d, "s": s, "m": m})


SPECS: list[ModelSpec] = [
    ModelSpec("fsrcnn",
              "FSRCNN (d56 s12 m4, Y channel, ConvTranspose2d upsampler; 12.8 K params), "
              "yjn870/FSRCNN-pytorch layout",
              {sc: {"d": 56, "s": 12, "m": 4} for sc in (2, 3, 4)},
              builder=build_fsrcnn, family="fsrcnn"),
]
