"""Tiles with overlap: a large image through a model piece by piece, seamlessly.

The LR image is cut into a grid of *cores* of at most ``tile`` x ``tile`` pixels; each core
is run with ``pad`` pixels of its neighbours around it (clipped at the image border, so a
border tile sees exactly the border the whole image has), and only the core's part of the
output is kept. Where the model's receptive field reaches no further than ``pad`` LR pixels,
every kept output pixel saw the same input as in one untiled run, so the two agree to float
rounding (``tests/test_upscale.py`` checks it on a zoo model). Models with global context
(channel attention, SwinIR's windows of the whole image) differ a little at any pad.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from srprune.errors import SrpruneError

DEFAULT_PAD = 16  # LR pixels of context around each tile
LIVE_MAPS = 3  # feature maps alive at once at the widest layer: input, output, a skip
MAX_TILE = 2048


@dataclass(frozen=True)
class Tile:
    """One piece: ``core`` (y0, y1, x0, x1) is the LR region it contributes, ``window`` the
    padded region it is run on (both in LR pixels of the whole image)."""

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def input_size(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.window
        return y1 - y0, x1 - x0


def plan_tiles(size: tuple[int, int], tile: int | None, pad: int,
               minimum: int = 1) -> list[Tile]:
    """The tiles covering an LR image of ``size`` (H, W); ``tile`` None or >= the image:
    one tile, the whole image. Cores are as equal as the grid allows (no sliver at the end);
    a window narrower than ``minimum`` (the model's smallest input) takes more context."""
    h, w = size
    if pad < 0:
        raise SrpruneError(f"--tile-pad must be at least 0, got {pad}")
    if tile is None or (tile >= h and tile >= w):
        return [Tile((0, h, 0, w), (0, h, 0, w))]
    rows, cols = _cuts(h, tile), _cuts(w, tile)
    tiles = []
    for y0, y1 in rows:
        for x0, x1 in cols:
            window = (*_span(y0, y1, pad, h, minimum), *_span(x0, x1, pad, w, minimum))
            tiles.append(Tile((y0, y1, x0, x1), window))
    return tiles


def _span(a: int, b: int, pad: int, n: int, minimum: int) -> tuple[int, int]:
    """``[a, b)`` with ``pad`` around it, inside ``[0, n)``, widened to ``minimum``."""
    lo, hi = max(0, a - pad), min(n, b + pad)
    while hi - lo < min(minimum, n):
        lo, hi = max(0, lo - 1), min(n, hi + 1)
    return lo, hi


def _cuts(n: int, tile: int) -> list[tuple[int, int]]:
    count = math.ceil(n / tile)
    edges = [round(i * n / count) for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def upscale_tiled(run: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, scale: int,
                  tiles: list[Tile], on_tile: Callable[[int, int], None] | None = None,
                  convert: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``run`` (LR 3xHxW float32 -> SR 3x(sH)x(sW)) over ``tiles`` of ``lr``, stitched.

    Channels first all the way: a tile's output is pasted row block by row block, with no
    transposition of the large SR tensor per tile. ``convert`` turns each tile's part into
    what is kept (e.g. uint8 samples: the whole result then never exists as float32).
    ``on_tile(done, total)`` is called after each tile.
    """
    h, w = lr.shape[1:]
    keep = convert or (lambda values: values)
    if len(tiles) == 1 and tiles[0].window == (0, h, 0, w):
        out = keep(_checked(run(lr), (h, w), scale))
        if convert is None and getattr(run, "reuses_output", False):
            out = out.copy()  # the runner's buffer: ours to keep now
        if on_tile is not None:
            on_tile(1, 1)
        return out
    out = None
    for i, t in enumerate(tiles, 1):
        wy0, wy1, wx0, wx1 = t.window
        y0, y1, x0, x1 = t.core
        sr = _checked(run(np.ascontiguousarray(lr[:, wy0:wy1, wx0:wx1])), t.input_size, scale)
        oy, ox = (y0 - wy0) * scale, (x0 - wx0) * scale
        part = keep(sr[:, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale])
        if out is None:
            out = np.empty((part.shape[0], h * scale, w * scale), dtype=part.dtype)
        out[:, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = part
        if on_tile is not None:
            on_tile(i, len(tiles))
    return out


def _checked(sr: np.ndarray, size: tuple[int, int], scale: int) -> np.ndarray:
    expected = (size[0] * scale, size[1] * scale)
    if tuple(sr.shape[1:]) != expected:
        raise SrpruneError(f"the model turned a {size[0]}x{size[1]} tile into "
                           f"{sr.shape[1]}x{sr.shape[2]}, not {expected[0]}x{expected[1]} "
                           f"(x{scale})")
    return sr


def auto_tile(bytes_per_pixel: float | None, available: int | None, pad: int,
              minimum: int, share: float = 0.25) -> int:
    """The largest tile side whose padded window's feature maps take at most ``share`` of
    the ``available`` memory (``bytes_per_pixel``: float32 bytes of the widest feature map
    per LR pixel); a multiple of 8 between ``minimum`` and :data:`MAX_TILE`; 512 when either
    figure is unknown."""
    if not bytes_per_pixel or not available:
        return 512
    side = math.sqrt(share * available / (LIVE_MAPS * bytes_per_pixel)) - 2 * pad
    return int(max(minimum, min(MAX_TILE, side // 8 * 8)))
