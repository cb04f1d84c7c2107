"""Calibration inputs for INT8: LR patches drawn from the user's images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srprune.data.images import ImageSet, PatchSampler, open_image_set
from srprune.errors import SrpruneError

MAX_PATCH = 48  # LR side of a calibration patch (smaller when an image is smaller)
# The smallest LR patch side calibration accepts, as compress's presets (calib_patch 16):
# activation ranges seen on tinier patches are mostly zero padding and border, and INT8
# calibrated on them lost 11 dB on one 8x8 image at x4 (2x2 LR patches)
MIN_PATCH = 16


def calibration_inputs(data: str | Path, scale: int, n_patches: int,
                       lr_dir: str | Path | None = None, seed: int = 0,
                       patch: int = MAX_PATCH) -> list[np.ndarray]:
    """``n_patches`` seeded LR patches (3, p, p) float32 in 0..255 from the images in ``data``.

    ``p`` is ``patch``, or the smallest image's LR side when that is smaller; images too small
    for a :data:`MIN_PATCH` patch are refused (see :func:`check_calibration_images`).
    """
    if n_patches < 1:
        raise SrpruneError(f"need at least one calibration patch, got {n_patches}")
    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    images = open_image_set(data, scale, lr_dir)
    side = min(patch, check_calibration_images(images, scale, data))
    sampler = PatchSampler(images, scale, side, n_patches, seed=seed)
    lr = sampler.next_batch()[0][0].numpy()  # the LR_scale level: (n, 3, p, p)
    return list(lr)


def check_calibration_images(images: ImageSet, scale: int, data: str | Path,
                             minimum: int = MIN_PATCH) -> int:
    """The smallest LR side among ``images``; refuses, before any work, a set with an image
    too small for a ``minimum`` x ``minimum`` LR patch (as compress refuses images smaller
    than its calibration patch), naming the image and the HR size that would do."""
    smallest, name = min((min(pair.lr[0].shape[:2]), pair.name) for pair in images)
    if smallest < minimum:
        pair = next(p for p in images if p.name == name)
        h, w = pair.hr.shape[:2]
        raise SrpruneError(
            f"--data {data}: image {name} is {h}x{w}, too small to calibrate INT8 at x{scale}: "
            f"calibration needs LR patches of at least {minimum}x{minimum}, i.e. images of at "
            f"least {minimum * scale}x{minimum * scale} (use larger images, e.g. "
            "--data builtin)")
    return smallest
