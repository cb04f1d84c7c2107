"""Pictures in and out of ``srprune upscale``: every mode a user's folder holds, kept as it was.

A :class:`Picture` is what the model sees (RGB, float32, 0..255) plus what it does not
(alpha, bit depth, grey): the writer puts the upscaled picture back in the same kind of file.

* **Modes.** RGB, RGBA, grey (``L``, ``1``), grey + alpha (``LA``), palette (``P``: with its
  transparency as alpha), CMYK/YCbCr (converted to RGB). The result is written as RGB(A) or,
  for grey inputs, as grey (an upscaled palette picture has far more than 256 colours, so it
  is written as RGB(A), not re-quantised).
* **16-bit PNGs** stay 16-bit: grey through Pillow's ``I;16``; RGB and RGBA through Pillow's
  own PNG decoder run twice, once keeping the high bytes (``RGB;16B``) and once the low bytes
  (the little-endian unpacker on big-endian data), since Pillow has no 16-bit RGB mode; they
  are written by :func:`write_png16` (zlib, "up" filter). Values are scaled to 0..255 floats
  for the model (``v / 257``) and back (``* 257``, rounded), so no precision is cut to 8 bits
  on the way. (16-bit grey + alpha is read with 8-bit precision: Pillow has no unpacker for
  its low bytes; it is still written as 16-bit.)
* **EXIF orientation** is applied on reading (the output is upright and carries no
  orientation tag); the ICC profile is kept.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from srprune.errors import SrpruneError

READABLE = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
WRITABLE = ("png", "jpg", "webp")
ORIENTATION_TAG = 0x0112
_PNG16_RAW = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}  # high-byte -> low-byte unpacker
_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass
class Picture:
    """An image as the model sees it, and what it takes to write it back alike.

    ``rgb``: float32 HxWx3 in 0..255 (16-bit pictures keep their fractions); ``alpha``:
    float32 HxW in 0..255 or None; ``depth``: 8 or 16 bits per sample; ``grey``: written
    back as grey; ``mode``: the file's own mode (for messages).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    depth: int = 8
    grey: bool = False
    mode: str = "RGB"
    icc_profile: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    def with_pixels(self, rgb: np.ndarray, alpha: np.ndarray | None) -> Picture:
        return replace(self, rgb=rgb, alpha=alpha)


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in READABLE


def read_picture(path: str | Path) -> Picture:
    """Decode ``path`` (one-line :class:`SrpruneError` when it cannot be read)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            raw = im.tile[0].args if im.format == "PNG" and im.tile else None
            picture = _decode(im, path, raw)
            orientation = _orientation(im)
            icc = im.info.get("icc_profile")
    except SrpruneError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, struct.error,
            Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SrpruneError(f"{path}: not a readable image ({reason})") from None
    rgb = orient(picture.rgb, orientation)
    alpha = orient(picture.alpha, orientation) if picture.alpha is not None else None
    return replace(picture, rgb=np.ascontiguousarray(rgb),
                   alpha=None if alpha is None else np.ascontiguousarray(alpha),
                   icc_profile=icc if isinstance(icc, bytes) else None)


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block: no orientation, the pixels may still be fine
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """``arr`` (HxW or HxWxC) as EXIF ``orientation`` (1-8) says it is to be shown."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return np.rot90(arr, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _decode(im: Image.Image, path: Path, raw: object) -> Picture:
    """The pixels of ``im``; ``raw``: its PNG raw mode, read before anything loads it (a
    PNG's EXIF lookup decodes the image)."""
    mode = im.mode
    if raw in _PNG16_RAW:
        return _png16_colour(path, mode, raw)
    if raw == "LA;16B":  # 16-bit grey + alpha: 8-bit precision (see the module docstring)
        im.load()
        arr = np.asarray(im, dtype=np.float32)
        return Picture(_grey3(arr[..., 0]), arr[..., 3].copy(), 16, True, "LA;16")
    im.load()
    if mode in _GREY16:
        arr = np.asarray(im).astype(np.float32)
        if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise SrpruneError(f"{path}: 32-bit integer pixels outside 0..65535 are not "
                               "supported")
        return Picture(_grey3(arr / 257.0), None, 16, True, mode)
    if mode in ("1", "L"):
        return Picture(_grey3(np.asarray(im.convert("L"), dtype=np.float32)), grey=True,
                       mode=mode)
    if mode == "LA":
        arr = np.asarray(im, dtype=np.float32)
        return Picture(_grey3(arr[..., 0]), arr[..., 1].copy(), grey=True, mode=mode)
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode not in ("RGB", "RGBA"):
        if mode == "F":
            raise SrpruneError(f"{path}: floating-point pixels (mode F) are not supported")
        im = im.convert("RGBA" if "A" in mode else "RGB")
    arr = np.asarray(im, dtype=np.float32)
    alpha = arr[..., 3].copy() if arr.shape[-1] == 4 else None
    return Picture(np.ascontiguousarray(arr[..., :3]), alpha, 8, False, mode)


def _grey3(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2), dtype=np.float32)


def _png16_colour(path: Path, mode: str, high: str) -> Picture:
    """A 16-bit RGB(A) PNG, decoded twice by Pillow (high bytes, then low bytes)."""
    halves = []
    for raw in (high, _PNG16_RAW[high]):
        with Image.open(path) as im:
            im.tile = [im.tile[0]._replace(args=raw)]
            im.load()
            halves.append(np.asarray(im).astype(np.uint16))
    value = (halves[0] * 256 + halves[1]).astype(np.float32) / 257.0
    alpha = value[..., 3].copy() if value.shape[-1] == 4 else None
    return Picture(np.ascontiguousarray(value[..., :3]), alpha, 16, False, f"{mode};16")


# ------------------------------------------------------------------ writing


def to_samples(values: np.ndarray, depth: int) -> np.ndarray:
    """0..255 floats as uint8 or uint16 samples (clipped, rounded half to even)."""
    clipped = np.clip(values, 0.0, 255.0)
    if depth == 16:
        return np.rint(clipped * np.float32(257.0)).astype(np.uint16)
    return np.rint(clipped).astype(np.uint8)


@dataclass
class Samples:
    """An upscaled picture as the file will hold it: ``colour`` (C, H, W) with C = 3 (RGB)
    or 1 (grey), ``alpha`` (H, W) or None, both uint8 or uint16 (``depth`` 8 or 16)."""

    colour: np.ndarray
    alpha: np.ndarray | None
    depth: int
    icc_profile: bytes | None = None

    def rgb(self) -> np.ndarray:
        """The colour as float32 HxWx3 on 0..255 (for crops and comparisons)."""
        values = self.colour.astype(np.float32)
        if self.depth == 16:
            values /= 257.0
        if values.shape[0] == 1:
            values = np.repeat(values, 3, axis=0)
        return values.transpose(1, 2, 0)


def sample_converter(depth: int, grey: bool = False
                     ) -> Callable[[np.ndarray], np.ndarray]:
    """Model output (C, h, w) float on 0..255 -> samples of ``depth`` bits; ``grey``: the
    channels' mean, one channel. The tiler stores each tile this way, so the full-size
    result is never held as float32 (4 bytes a sample)."""

    def convert(values: np.ndarray) -> np.ndarray:
        if grey:
            values = values.mean(axis=0, keepdims=True)
        return to_samples(values, depth)

    return convert


def as_samples(picture: Picture, depth: int | None = None) -> Samples:
    """A :class:`Picture` (floats) as :class:`Samples` at ``depth`` (default: its own)."""
    depth = depth or picture.depth
    colour = sample_converter(depth, picture.grey)(picture.rgb.transpose(2, 0, 1))
    alpha = None if picture.alpha is None else to_samples(picture.alpha, depth)
    return Samples(colour, alpha, depth, picture.icc_profile)


def encode_picture(picture: Picture, fmt: str) -> bytes:
    """:func:`encode_samples` of a :class:`Picture`."""
    return encode_samples(as_samples(picture), fmt)


def encode_samples(samples: Samples, fmt: str) -> bytes:
    """The file bytes of ``samples`` in ``fmt`` (png, jpg, webp). JPEG has no alpha (the
    picture is composited on white) and, like WebP, no 16 bits (written as 8 bits)."""
    fmt = fmt.lower()
    colour, alpha, depth = samples.colour, samples.alpha, samples.depth
    if fmt != "png" and depth == 16:
        colour = np.rint(colour / 257.0).astype(np.uint8)
        alpha = None if alpha is None else np.rint(alpha / 257.0).astype(np.uint8)
        depth = 8
    if fmt == "jpg" and alpha is not None:
        a = alpha.astype(np.float32)[None] / 255.0
        colour = np.rint(colour * a + 255.0 * (1.0 - a)).astype(np.uint8)
        alpha = None
    planes = [colour] + ([alpha[None]] if alpha is not None else [])
    stacked = np.concatenate(planes, axis=0) if len(planes) > 1 else colour
    pixels = np.ascontiguousarray(stacked.transpose(1, 2, 0))
    if pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if depth == 16 and pixels.ndim == 3:  # RGB, RGBA, LA at 16 bits: Pillow cannot
        return png16_bytes(pixels)
    im = Image.fromarray(pixels)  # uint16 HxW: I;16 (a 16-bit grey PNG)
    buffer = io.BytesIO()
    options: dict = {}
    if samples.icc_profile:
        options["icc_profile"] = samples.icc_profile
    if fmt == "png":
        im.save(buffer, format="PNG", compress_level=PNG_LEVEL, **options)
    elif fmt == "jpg":
        im.save(buffer, format="JPEG", quality=95, **options)
    else:
        im.save(buffer, format="WEBP", lossless=True, **options)
    return buffer.getvalue()


PNG_LEVEL = 3  # zlib level: an x4 photo is tens of megapixels; 6 takes about twice as long


def png16_bytes(samples: np.ndarray) -> bytes:
    """A 16-bit PNG of ``samples`` (uint16 HxWxC, C = 2, 3 or 4: LA, RGB, RGBA)."""
    h, w, c = samples.shape
    colour_type = {2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(samples, dtype=">u2").view(np.uint8).reshape(h, w * c * 2)
    up = rows.copy()
    up[1:] -= rows[:-1]  # filter 2 ("up"), uint8 arithmetic wraps as PNG wants
    data = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(data.tobytes(), PNG_LEVEL)) + chunk(b"IEND", b""))
