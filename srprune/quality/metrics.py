"""SR quality metrics as the SR literature computes them (EDSR/DRN/BasicSR/RCAN).

* SR output is rounded and clipped to uint8 levels first (like saving a PNG).
* Metrics use the Y channel of BT.601 YCbCr (MATLAB ``rgb2ycbcr``), in float64, on
  [16, 235], after cropping ``crop`` pixels from every border (``crop = scale``).
* PSNR = ``10 log10(255^2 / MSE)``.
* SSIM: 11x11 Gaussian window (sigma 1.5), population covariance, C1 = (0.01*255)^2,
  C2 = (0.03*255)^2, valid region only; computed with scikit-image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from srprune.data.images import ImagePair, check_scale
from srprune.data.imresize import imresize, quantize
from srprune.errors import SrpruneError

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_SSIM_WINDOW = 11  # skimage's Gaussian window for sigma=1.5, truncate=3.5


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Luma of an ``HxWx3`` RGB image in [0, 255]: ``16 + (65.481 R + 128.553 G + 24.966 B)/255``.

    Returns float64 ``HxW`` (unrounded), in [16, 235] for inputs in [0, 255].
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise SrpruneError(f"expected an HxWx3 RGB image, got shape {arr.shape}")
    return 16.0 + arr @ _Y_WEIGHTS


def _y_pair(sr: np.ndarray, hr: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantised-SR and HR Y channels with ``crop`` pixels removed at every border."""
    sr, hr = np.asarray(sr), np.asarray(hr)
    if sr.shape != hr.shape:
        raise SrpruneError(f"SR shape {sr.shape} does not match HR shape {hr.shape}")
    crop = int(crop)
    h, w = hr.shape[:2]
    if crop < 0 or 2 * crop >= min(h, w):
        raise SrpruneError(f"border crop {crop} leaves nothing of a {h}x{w} image")
    region = (slice(crop, h - crop), slice(crop, w - crop))
    return rgb_to_y(quantize(sr))[region], rgb_to_y(hr)[region]


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """Y-channel PSNR in dB (``inf`` when identical); SR is rounded/clipped to uint8 first."""
    y_sr, y_hr = _y_pair(sr, hr, crop)
    mse = float(np.mean((y_sr - y_hr) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """Y-channel SSIM (Wang et al. 2004, MATLAB ``ssim_index`` settings); SR quantised first."""
    y_sr, y_hr = _y_pair(sr, hr, crop)
    if min(y_hr.shape) < _SSIM_WINDOW:
        raise SrpruneError(
            f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after the border crop, "
            f"got {y_hr.shape[0]}x{y_hr.shape[1]}"
        )
    value = structural_similarity(
        y_sr,
        y_hr,
        data_range=255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    return float(value)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic upscaling of an LR image (float64, unrounded): the baseline."""
    return imresize(lr, float(check_scale(scale)))


def _score(sr: np.ndarray, hr: np.ndarray, crop: int) -> tuple[float, float]:
    return psnr_y(sr, hr, crop), ssim_y(sr, hr, crop)


def evaluate(
    sr_fn: Callable[[np.ndarray], Any], image_set: Iterable[ImagePair], scale: int
) -> dict[str, Any]:
    """Score ``sr_fn`` and the bicubic baseline on every image, cropping ``scale`` px borders.

    ``sr_fn`` gets the LR image (float32 ``HxWx3`` in [0, 255], i.e. ``pair.lr[0]``) and
    returns the SR image ``HxWx3`` (any real dtype) of the HR size. Returns the means
    ``psnr``, ``ssim``, ``bicubic_psnr``, ``bicubic_ssim`` and a ``per_image`` list.
    """
    scale = check_scale(scale)
    set_scale = getattr(image_set, "scale", scale)
    if set_scale != scale:
        raise SrpruneError(f"image set is for x{set_scale}, but evaluation is for x{scale}")
    rows = []
    for pair in image_set:
        lr = pair.lr[0]
        sr = np.asarray(sr_fn(lr))
        if sr.shape != pair.hr.shape:
            raise SrpruneError(
                f"SR output for image {pair.name} has shape {sr.shape}, expected {pair.hr.shape} "
                f"(LR {lr.shape} x{scale})"
            )
        psnr, ssim = _score(sr, pair.hr, scale)
        bic_psnr, bic_ssim = _score(bicubic_upscale(lr, scale), pair.hr, scale)
        rows.append(
            {
                "name": pair.name,
                "psnr": psnr,
                "ssim": ssim,
                "bicubic_psnr": bic_psnr,
                "bicubic_ssim": bic_ssim,
            }
        )
    if not rows:
        raise SrpruneError("cannot evaluate on an empty image set")
    means = {
        key: float(np.mean([r[key] for r in rows]))
        for key in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
    }
    return {**means, "per_image": rows}
