"""Calibration inputs for INT8: LR patches drawn from the user's images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srprune.data.images import ImageSet, PatchSampler, open_image_set
from srprune.errors import SrpruneError

MAX_PATCH = 48  # LR side of a calibration patch (smaller when an image is smaller)


def calibration_inputs(data: str | Path, scale: int, n_patches: int,
                       lr_dir: str | Path | None = None, seed: int = 0,
                       patch: int = MAX_PATCH) -> list[np.ndarray]:
    """``n_patches`` seeded LR patches (3, p, p) float32 in 0..255 from the images in ``data``.

    ``p`` is ``patch``, or the smallest image's LR side when that is smaller.
    """
    if n_patches < 1:
        raise SrpruneError(f"need at least one calibration patch, got {n_patches}")
    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    images = open_image_set(data, scale, lr_dir)
    side = min(patch, _smallest_lr_side(images))
    sampler = PatchSampler(images, scale, side, n_patches, seed=seed)
    lr = sampler.next_batch()[0][0].numpy()  # the LR_scale level: (n, 3, p, p)
    return list(lr)


def _smallest_lr_side(images: ImageSet) -> int:
    return min(min(pair.lr[0].shape[:2]) for pair in images)
