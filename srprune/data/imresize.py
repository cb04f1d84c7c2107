"""MATLAB-compatible bicubic ``imresize`` for numpy images.

Reproduces MATLAB's ``imresize(I, scale, 'bicubic')``: Keys cubic kernel with a = -0.5,
antialiasing when downscaling (the kernel is stretched by 1/scale), symmetric (mirror)
border padding, separable application (rows first, then columns) in float64. The
result is *not* rounded; call :func:`quantize` to round and clip like MATLAB does for
``uint8`` input (or like saving a PNG).

Each axis is resized by a sparse ``out x in`` weight matrix, so the cost is
``O(out * taps * other_dims)`` with no per-pixel Python loops.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

_KERNEL_WIDTH = 4.0  # support of the cubic kernel, [-2, 2]
_SIZE_EPS = 1e-9  # guards ceil(in * scale) against float noise like 99.00000000000001


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


def output_length(in_length: int, scale: float) -> int:
    """Output size MATLAB uses for a scale factor: ``ceil(in_length * scale)``."""
    return max(1, math.ceil(in_length * scale - _SIZE_EPS))


def _mirror(indices: np.ndarray, length: int) -> np.ndarray:
    """Map 0-based indices outside ``[0, length)`` by symmetric padding (edge repeated)."""
    period = 2 * length
    m = np.mod(indices, period)
    return np.where(m < length, m, period - 1 - m)


def resize_weights(
    in_length: int, out_length: int, scale: float, antialias: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-pixel taps along one axis, as MATLAB's ``contributions``.

    Returns ``(weights, indices)``, both ``out_length x taps``; indices are 0-based and
    already mirrored into ``[0, in_length)``. Each weight row sums to 1.
    """
    if scale < 1.0 and antialias:
        width = _KERNEL_WIDTH / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * x)
    else:
        width = _KERNEL_WIDTH
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # 1-based input coordinate of each output pixel
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based candidate input pixels
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights, _mirror(idx.astype(np.int64) - 1, in_length)


def resize_matrix(
    in_length: int, out_length: int, scale: float, antialias: bool = True
) -> sparse.csr_matrix:
    """Sparse ``out_length x in_length`` matrix that resizes one axis."""
    weights, indices = resize_weights(in_length, out_length, scale, antialias)
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    coo = sparse.coo_matrix(
        (weights.ravel(), (rows, indices.ravel())), shape=(out_length, in_length)
    )
    return coo.tocsr()  # duplicate (mirrored) entries are summed


def _resize_axis0(img: np.ndarray, matrix: sparse.csr_matrix) -> np.ndarray:
    """Apply a resize matrix along the first axis of an array of any rank."""
    flat = img.reshape(img.shape[0], -1)
    return np.asarray(matrix @ flat).reshape((matrix.shape[0], *img.shape[1:]))


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Resize an ``HxW`` or ``HxWxC`` image like MATLAB ``imresize(img, scale, 'bicubic')``.

    Give either ``scale`` (same factor for both axes; output ``ceil(H*scale) x
    ceil(W*scale)``) or ``output_shape`` ``(h, w)`` (per-axis factor ``h/H``, ``w/W``).
    Input may be any real dtype (uint8 values are taken as-is, not divided by 255).
    Returns float64, unrounded and unclipped.
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(f"imresize expects an HxW or HxWxC array, got shape {arr.shape}")
    in_h, in_w = arr.shape[:2]
    if in_h == 0 or in_w == 0:
        raise ValueError(f"imresize got an empty image of shape {arr.shape}")
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize needs exactly one of scale and output_shape")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"imresize scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_h, out_w = output_length(in_h, scale), output_length(in_w, scale)
    else:
        out_h, out_w = (int(v) for v in output_shape)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"imresize output_shape must be positive, got {output_shape}")
        scales = (out_h / in_h, out_w / in_w)
    rows = resize_matrix(in_h, out_h, scales[0], antialias)
    cols = resize_matrix(in_w, out_w, scales[1], antialias)
    out = _resize_axis0(arr, rows)
    out = _resize_axis0(np.swapaxes(out, 0, 1), cols)
    return np.ascontiguousarray(np.swapaxes(out, 0, 1))


def quantize(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round half away from zero, as MATLAB's uint8 conversion.

    The result keeps a float dtype (float32 stays float32, anything else becomes float64)
    but only holds the integer levels a uint8 PNG can store.
    """
    arr = np.asarray(img)
    dtype = np.float32 if arr.dtype == np.float32 else np.float64
    return np.floor(np.clip(arr.astype(np.float64), 0.0, 255.0) + 0.5).astype(dtype)
