"""Images, LR generation, evaluation sets and training patches.

Conventions (shared with DRN/EDSR):

* Images are RGB. HR images are ``uint8`` ``HxWx3``; LR images are ``float32`` ``HxWx3``
  holding values in [0, 255].
* HR is mod-cropped (bottom/right) to a multiple of the SR scale before anything else.
* LR is generated with MATLAB-compatible bicubic ``imresize`` (antialiased) and, by
  default, rounded and clipped to integer levels exactly like a saved uint8 PNG.
* An LR *pyramid* for scale ``s`` is ``[LR_s, LR_s/2, ..., LR_2]`` (smallest first), each
  level downsampled from HR directly. For a scale that is not a power of two it is
  the single level ``[LR_s]``.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from srprune.data.imresize import imresize
from srprune.data.imresize import quantize as round_to_levels
from srprune.errors import SrpruneError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
BUILTIN_IMAGES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# --------------------------------------------------------------------------- images


def _check_extension(path: Path) -> None:
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise SrpruneError(
            f"unsupported image type '{path.suffix}' for {path}; "
            f"expected one of {', '.join(IMAGE_EXTENSIONS)}"
        )


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Decoded PIL image -> uint8 HxWx3 (16-bit grey is scaled down, not clipped)."""
    if im.mode in _SIXTEEN_BIT_MODES:
        grey = round_to_levels(np.asarray(im, dtype=np.float64) / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Read a png/jpg/jpeg/bmp file as uint8 ``HxWx3`` RGB.

    Grey, grey+alpha, RGBA, palette and other modes are converted to RGB (alpha is
    dropped) with a warning naming the file and its mode.
    """
    path = Path(path)
    _check_extension(path)
    if not path.is_file():
        raise SrpruneError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = _to_rgb_array(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SrpruneError(f"cannot read image {path}: {exc}") from exc
    if mode != "RGB":
        warnings.warn(f"{path}: converted {mode} image to RGB", stacklevel=2)
    return np.ascontiguousarray(arr)


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` read from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SrpruneError(f"cannot read image {path}: {exc}") from exc
    return height, width


def list_images(folder: str | Path) -> list[Path]:
    """Image files (png/jpg/jpeg/bmp, any case) directly in ``folder``, sorted by name.

    Hidden files (names starting with '.') are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SrpruneError(f"image folder not found: {folder}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise SrpruneError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return files


# ------------------------------------------------------------------ LR generation


def check_scale(scale: int) -> int:
    """Validate an SR scale factor (an integer >= 2) and return it as ``int``."""
    if isinstance(scale, bool) or int(scale) != scale or scale < 2:
        raise SrpruneError(f"scale must be an integer >= 2, got {scale!r}")
    return int(scale)


def pyramid_factors(scale: int) -> list[int]:
    """Downscale factors of the LR pyramid, smallest image first: 8 -> [8, 4, 2]."""
    scale = check_scale(scale)
    if scale & (scale - 1):  # not a power of two: single level
        return [scale]
    factors = []
    while scale >= 2:
        factors.append(scale)
        scale //= 2
    return factors


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so that height and width are multiples of ``scale``."""
    if int(scale) != scale or scale < 1:
        raise SrpruneError(f"mod_crop scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def make_lr(hr: np.ndarray, scale: int, quantize: bool = True) -> np.ndarray:
    """Bicubic-downsample HR (uint8 or float in [0, 255]) by ``scale``, MATLAB-style.

    HR is mod-cropped to ``scale`` first, so the result is exactly ``(H//s, W//s)``.
    With ``quantize`` (default) the values are rounded half away from zero and
    clipped to [0, 255], i.e. identical to an LR image saved as uint8 PNG. Returns float32.
    """
    scale = check_scale(scale)
    hr = mod_crop(np.asarray(hr), scale)
    h, w = hr.shape[:2]
    if h == 0 or w == 0:
        raise SrpruneError(f"image of {hr.shape[0]}x{hr.shape[1]} is smaller than scale {scale}")
    lr = imresize(hr, 1.0 / scale)
    if quantize:
        lr = round_to_levels(lr)
    return lr.astype(np.float32)


def lr_pyramid(hr: np.ndarray, scale: int, quantize: bool = True) -> list[np.ndarray]:
    """``[LR_scale, ..., LR_2]`` of HR mod-cropped to ``scale``; each level made from HR."""
    hr = mod_crop(np.asarray(hr), check_scale(scale))
    return [make_lr(hr, f, quantize) for f in pyramid_factors(scale)]


# ------------------------------------------------------------------- image sets


class ImagePair(NamedTuple):
    """One evaluation/training image: HR (uint8, mod-cropped) and its LR pyramid."""

    name: str
    hr: np.ndarray
    lr: list[np.ndarray]


def _prepare_hr(hr: np.ndarray, scale: int, label: str) -> np.ndarray:
    """Mod-crop an HR image, refusing images smaller than one LR pixel."""
    h, w = hr.shape[:2]
    if h < scale or w < scale:
        raise SrpruneError(f"image {label} is {h}x{w}, smaller than the scale x{scale}")
    return np.ascontiguousarray(mod_crop(hr, scale))


def _as_hr_array(hr: np.ndarray, label: str) -> np.ndarray:
    """Check an in-memory HR image is HxWx3; floats are rounded to uint8 levels."""
    arr = np.asarray(hr)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise SrpruneError(f"image {label} must be an HxWx3 RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = round_to_levels(arr).astype(np.uint8)
    return arr


def _pair_from_hr(name: str, hr: np.ndarray, scale: int) -> ImagePair:
    hr = _prepare_hr(_as_hr_array(hr, name), scale, name)
    return ImagePair(name, hr, lr_pyramid(hr, scale))


class ImageSet(Sequence[ImagePair]):
    """A sequence of :class:`ImagePair`, decoded lazily and cached in memory.

    Build one with :meth:`from_hr_folder`, :meth:`from_benchmark_folder`,
    :meth:`from_arrays`, :func:`builtin_eval_set` or :func:`open_image_set`.
    """

    def __init__(
        self,
        description: str,
        scale: int,
        names: Sequence[str],
        loader: Callable[[str], ImagePair],
        notes: Sequence[str] = (),
    ) -> None:
        #: what was done to the data beyond reading it, e.g. "LR X2 made from HR (no X2 folder)"
        self.notes = list(notes)
        self.description = "; ".join([description, *self.notes])
        self.scale = check_scale(scale)
        self.names = list(names)
        if not self.names:
            raise SrpruneError(f"image set {description} is empty")
        duplicates = sorted(n for n, count in Counter(self.names).items() if count > 1)
        if duplicates:
            raise SrpruneError(f"duplicate image names in {description}: {', '.join(duplicates)}")
        self._loader = loader
        self._cache: dict[str, ImagePair] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> ImagePair:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]  # type: ignore[return-value]
        name = self.names[index]
        if name not in self._cache:
            self._cache[name] = self._loader(name)
        return self._cache[name]

    def __iter__(self) -> Iterator[ImagePair]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"ImageSet({self.description}, x{self.scale}, {len(self)} images)"

    @classmethod
    def from_arrays(
        cls,
        images: Sequence[tuple[str, np.ndarray | Callable[[], np.ndarray]]],
        scale: int,
        description: str = "in-memory images",
    ) -> ImageSet:
        """From ``(name, hr)`` pairs; ``hr`` is a uint8 array or a function returning one."""
        sources = dict(images)

        def load(name: str) -> ImagePair:
            src = sources[name]
            hr = src() if callable(src) else src
            return _pair_from_hr(name, hr, scale)

        return cls(description, scale, [name for name, _ in images], load)

    @classmethod
    def from_hr_folder(cls, folder: str | Path, scale: int) -> ImageSet:
        """HR images in ``folder``; LR pyramids generated with MATLAB-style bicubic."""
        paths = _images_by_stem(Path(folder))

        def load(name: str) -> ImagePair:
            return _pair_from_hr(name, load_image(paths[name]), scale)

        return cls(f"HR folder {folder} (bicubic LR generated)", scale, list(paths), load)

    @classmethod
    def from_benchmark_folder(cls, folder: str | Path, scale: int) -> ImageSet:
        """EDSR benchmark layout: ``HR/*.png`` and ``LR_bicubic/X{f}/{name}x{f}.png``.

        See :meth:`from_lr_folder` (with ``HR`` and ``LR_bicubic`` inside ``folder``).
        """
        folder = Path(folder)
        return cls.from_lr_folder(folder / "HR", folder / "LR_bicubic", scale,
                                  description=f"benchmark folder {folder}")

    @classmethod
    def from_lr_folder(cls, hr_folder: str | Path, lr_folder: str | Path, scale: int,
                       description: str | None = None) -> ImageSet:
        """HR images in ``hr_folder`` with LR files ``lr_folder/X{f}/{name}x{f}.<ext>``.

        The folder ``X{scale}`` must exist; another pyramid level whose ``X{f}`` folder is
        missing is made from HR with MATLAB-style bicubic (listed in :attr:`notes`). Every HR
        image needs its LR file in each ``X{f}`` folder present, and every LR file its HR
        image. An LR file must be ``(H//f, W//f)`` for its ``HxW`` HR image (else "scale
        mismatch"); it is then cropped to match HR mod-cropped to ``scale``.
        """
        hr_folder, lr_folder = Path(hr_folder), Path(lr_folder)
        scale = check_scale(scale)
        if not lr_folder.is_dir():
            raise SrpruneError(f"LR folder not found: {lr_folder}")
        hr_paths = _images_by_stem(hr_folder)
        factors = pyramid_factors(scale)
        lr_paths: dict[int, dict[str, Path]] = {}
        notes = []
        for f in factors:
            sub = lr_folder / f"X{f}"
            if sub.is_dir():
                lr_paths[f] = _match_lr_files(sub, f, hr_paths, hr_folder)
            elif f == scale:
                hint = (f"; give the folder that holds X{scale}/, not {lr_folder.name}/ itself"
                        if lr_folder.name.upper().startswith("X") else "")
                raise SrpruneError(f"missing LR folder {sub} (needed for x{scale}: "
                                   f"X{scale}/<name>x{scale}.png){hint}")
            else:
                notes.append(f"LR X{f} made from HR (no X{f} folder)")
        for name, hr_path in hr_paths.items():
            hr_shape = _image_size(hr_path)
            for f, paths in lr_paths.items():
                _check_lr_shape(hr_shape, _image_size(paths[name]), f, hr_path, paths[name])

        def load(name: str) -> ImagePair:
            hr_full = load_image(hr_paths[name])
            hr = _prepare_hr(hr_full, scale, str(hr_paths[name]))
            levels = []
            for f in factors:
                if f not in lr_paths:
                    levels.append(make_lr(hr, f))
                    continue
                lr_path = lr_paths[f][name]
                lr = load_image(lr_path)
                _check_lr_shape(hr_full.shape[:2], lr.shape[:2], f, hr_paths[name], lr_path)
                levels.append(lr[: hr.shape[0] // f, : hr.shape[1] // f].astype(np.float32))
            return ImagePair(name, hr, levels)

        description = description or f"HR folder {hr_folder} with LR folder {lr_folder}"
        return cls(description, scale, list(hr_paths), load, notes)


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """``{name: path}`` for the images in ``folder``; two files with one name is an error."""
    files = list_images(folder)
    dup = sorted(stem for stem, n in Counter(p.stem for p in files).items() if n > 1)
    if dup:
        raise SrpruneError(f"several files share the name(s) {', '.join(dup)} in {folder}")
    return {p.stem: p for p in files}


def _match_lr_files(lr_dir: Path, factor: int, hr_paths: dict[str, Path],
                    hr_folder: Path) -> dict[str, Path]:
    """Map each HR name to its ``X{f}/{name}x{f}.<ext>`` file in ``lr_dir``, both ways strict."""
    suffix = f"x{factor}"
    found: dict[str, Path] = {}
    for path in _images_by_stem(lr_dir).values():
        if not path.stem.endswith(suffix) or path.stem[: -len(suffix)] not in hr_paths:
            raise SrpruneError(
                f"LR file {path} has no matching HR image in {hr_folder} "
                f"(expected <name>.png there for X{factor}/<name>{suffix}.png)"
            )
        found[path.stem[: -len(suffix)]] = path
    for name, hr_path in hr_paths.items():
        if name not in found:
            raise SrpruneError(f"missing LR file {lr_dir / (name + suffix + '.png')} "
                               f"for HR image {hr_path}")
    return found


def _check_lr_shape(
    hr_shape: tuple[int, ...],
    lr_shape: tuple[int, ...],
    factor: int,
    hr_path: Path,
    lr_path: Path,
) -> None:
    expected = (hr_shape[0] // factor, hr_shape[1] // factor)
    if tuple(lr_shape[:2]) != expected:
        raise SrpruneError(
            f"scale mismatch: LR file {lr_path} is {lr_shape[0]}x{lr_shape[1]}, expected "
            f"{expected[0]}x{expected[1]} for HR {hr_path} ({hr_shape[0]}x{hr_shape[1]}) at "
            f"x{factor}"
        )


def _builtin_loader(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        if name == "motorcycle_left":
            return skimage.data.stereo_motorcycle()[0]
        return getattr(skimage.data, name)()

    return load


def builtin_eval_set(scale: int) -> ImageSet:
    """Six natural photos bundled with scikit-image (no download), LR generated.

    astronaut, chelsea, coffee, rocket, motorcycle_left, hubble_deep_field.
    """
    images = [(name, _builtin_loader(name)) for name in BUILTIN_IMAGES]
    return ImageSet.from_arrays(images, scale, description="scikit-image photos")


BUILTIN_CALIBRATION = ("immunohistochemistry", "retina", "camera", "brick", "grass", "gravel",
                       "coins", "moon")


def builtin_calibration_set(scale: int) -> ImageSet:
    """Photos bundled with scikit-image that are *not* in the evaluation set (no download).

    For calibration and short fine-tuning when no folder is given (``--data builtin``); the
    grey ones are replicated to three channels.
    """

    def loader(name: str) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            img = _builtin_loader(name)()
            return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img

        return load

    images = [(name, loader(name)) for name in BUILTIN_CALIBRATION]
    return ImageSet.from_arrays(images, scale, description="scikit-image calibration photos")


def _sibling_lr_folder(folder: Path) -> Path | None:
    """DIV2K naming: ``X_HR`` -> ``X_LR_bicubic`` beside it, when that folder exists."""
    if not folder.name.upper().endswith("_HR"):
        return None
    sibling = folder.with_name(folder.name[:-3] + "_LR_bicubic")
    return sibling if sibling.is_dir() else None


def open_image_set(path: str | Path | None, scale: int,
                   lr_dir: str | Path | None = None) -> ImageSet:
    """Pick the image source for ``path`` ("builtin": the calibration photos).

    ``None`` -> :func:`builtin_eval_set`; with ``lr_dir`` -> HR images in ``path`` (or in
    ``path/HR``) and LR files ``lr_dir/X{f}/{name}x{f}.png`` (:meth:`ImageSet.from_lr_folder`);
    a folder with ``HR/`` and ``LR_bicubic/`` -> benchmark layout; a folder named ``*_HR`` with
    a sibling ``*_LR_bicubic`` (DIV2K) -> that pair; a folder with only ``HR/`` -> those HR
    images with generated LR; any other folder -> its images as HR with generated LR.
    """
    if lr_dir is not None:
        if path is None or str(path) == "builtin":
            raise SrpruneError(f"an LR folder ({lr_dir}) needs an HR folder as the data, "
                               f"not {'the built-in photos' if path else 'none'}")
        if not Path(lr_dir).is_dir():
            raise SrpruneError(f"LR folder not found: {lr_dir}")
    if path is None:
        return builtin_eval_set(scale)
    if str(path) == "builtin":
        return builtin_calibration_set(scale)
    folder = Path(path)
    if not folder.is_dir():
        raise SrpruneError(f"image folder not found: {folder}")
    if lr_dir is not None:
        hr_folder = folder / "HR" if (folder / "HR").is_dir() else folder
        return ImageSet.from_lr_folder(hr_folder, lr_dir, scale)
    if (folder / "HR").is_dir() and (folder / "LR_bicubic").is_dir():
        return ImageSet.from_benchmark_folder(folder, scale)
    if (folder / "HR").is_dir():
        return ImageSet.from_hr_folder(folder / "HR", scale)
    sibling = _sibling_lr_folder(folder)
    if sibling is not None:
        return ImageSet.from_lr_folder(folder, sibling, scale)
    return ImageSet.from_hr_folder(folder, scale)


# ----------------------------------------------------------------- patch sampler


class PatchSampler:
    """Random aligned training patches ``(lr_list, hr)`` as float32 NCHW tensors in [0, 255].

    ``lr_list`` is ``[LR_s, ..., LR_2]``, smallest first; level ``LR_f`` is ``N x 3 x (p*s/f)^2``;
    ``hr`` is ``N x 3 x (p*s) x (p*s)`` where ``p = lr_patch``. The crop corner lies on a
    multiple of ``scale`` in HR coordinates so every level covers the same region. Each
    sample is flipped horizontally, vertically and transposed (p = 0.5 each), jointly for
    all levels. All randomness comes from one ``numpy.random.Generator`` seeded with
    ``seed``; :meth:`state_dict`/:meth:`load_state_dict` resume the exact batch sequence.

    ``batch`` is the global batch. With ``ranks`` > 1 (data-parallel training) every rank
    draws the random numbers of all ``batch`` samples, so the generators stay in step, and
    crops only samples ``rank * batch / ranks`` up to the next rank's first: the ranks' shares
    are distinct, and together they are exactly the batch one process draws with ``seed``.
    """

    def __init__(
        self,
        images: ImageSet | Sequence[np.ndarray],
        scale: int,
        lr_patch: int,
        batch: int,
        seed: int = 0,
        rank: int = 0,
        ranks: int = 1,
    ) -> None:
        self.scale = check_scale(scale)
        if int(lr_patch) != lr_patch or lr_patch < 1:
            raise SrpruneError(f"lr_patch must be a positive integer, got {lr_patch!r}")
        if int(batch) != batch or batch < 1:
            raise SrpruneError(f"batch must be a positive integer, got {batch!r}")
        if ranks < 1 or not 0 <= rank < ranks or batch % ranks:
            raise SrpruneError(f"batch {batch} cannot be split into {ranks} equal shares "
                               f"(rank {rank})")
        self.lr_patch, self.batch, self.seed = int(lr_patch), int(batch), seed
        share = self.batch // ranks
        self.local = range(rank * share, (rank + 1) * share)  # this rank's samples
        self.factors = pyramid_factors(self.scale)
        self._hr, self._levels = self._precompute(images)
        self._rng = np.random.default_rng(seed)
        self.batches_drawn = 0

    def _precompute(
        self, images: ImageSet | Sequence[np.ndarray]
    ) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
        """HR (uint8) and the LR pyramid (float32) of every image, decoded once by the image
        set and shared with it."""
        if isinstance(images, ImageSet):
            if images.scale != self.scale:
                raise SrpruneError(
                    f"image set {images.description} is for x{images.scale}, "
                    f"sampler is x{self.scale}"
                )
            pairs = list(images)
        else:
            pairs = [
                _pair_from_hr(f"#{i}", np.asarray(hr), self.scale) for i, hr in enumerate(images)
            ]
        if not pairs:
            raise SrpruneError("PatchSampler needs at least one image")
        _check_patch(pairs, self.lr_patch, self.scale)
        # the image set's decoded arrays themselves (no copies): HR stays uint8 and only the
        # crops become float32, when a batch is stacked
        hrs = [pair.hr for pair in pairs]
        levels = [[np.asarray(lr, dtype=np.float32) for lr in pair.lr] for pair in pairs]
        return hrs, levels

    def __len__(self) -> int:
        """Number of source images (the sampler itself is endless)."""
        return len(self._hr)

    def _draw(self) -> tuple[int, int, int, np.ndarray]:
        """The random choices of one sample: image, corner (in ``scale`` HR px), flips."""
        rng = self._rng
        i = int(rng.integers(len(self._hr)))
        hr = self._hr[i]
        p, s = self.lr_patch, self.scale
        y = int(rng.integers(hr.shape[0] // s - p + 1))
        x = int(rng.integers(hr.shape[1] // s - p + 1))
        return i, y, x, rng.random(3) < 0.5

    def _sample(self, i: int, y: int, x: int,
                flips: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """One aligned, augmented sample: (LR patches smallest first, HR patch), HWC."""
        hr = self._hr[i]
        p, s = self.lr_patch, self.scale
        crops = [
            lr[y * s // f : (y + p) * s // f, x * s // f : (x + p) * s // f]
            for f, lr in zip(self.factors, self._levels[i], strict=True)
        ]
        crops.append(hr[y * s : (y + p) * s, x * s : (x + p) * s])
        crops = [_augment(c, *flips) for c in crops]
        return crops[:-1], crops[-1]

    def next_batch(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Draw the next batch ``(lr_list, hr)`` (this rank's share of it)."""
        draws = [self._draw() for _ in range(self.batch)]
        samples = [self._sample(*draws[k]) for k in self.local]
        self.batches_drawn += 1
        lr_list = [_to_nchw([lrs[k] for lrs, _ in samples]) for k in range(len(self.factors))]
        return lr_list, _to_nchw([hr for _, hr in samples])

    def __iter__(self) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        while True:
            yield self.next_batch()

    def __next__(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.next_batch()

    def _config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "lr_patch": self.lr_patch,
            "batch": self.batch,
            "num_images": len(self._hr),
        }

    def state_dict(self) -> dict[str, Any]:
        """Generator state plus the configuration it is valid for (a deep copy)."""
        return {
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "batches_drawn": self.batches_drawn,
            **self._config(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the configuration must match."""
        expected = self._config()
        given = {k: state.get(k) for k in expected}
        if given != expected:
            raise SrpruneError(f"sampler state is for {given}, but this sampler is {expected}")
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.batches_drawn = int(state["batches_drawn"])


def _augment(img: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    if transpose:
        img = img.transpose(1, 0, 2)
    return img


def _to_nchw(images: list[np.ndarray]) -> torch.Tensor:
    """HWC crops (any strides, any dtype) -> one float32 NCHW tensor, one copy per crop."""
    h, w, c = images[0].shape
    batch = np.empty((len(images), c, h, w), dtype=np.float32)
    for n, image in enumerate(images):
        batch[n] = image.transpose(2, 0, 1)
    return torch.from_numpy(batch)


def _check_patch(pairs: Sequence[ImagePair], lr_patch: int, scale: int) -> None:
    hr_patch = lr_patch * scale
    for pair in pairs:
        h, w = pair.hr.shape[:2]
        if h < hr_patch or w < hr_patch:
            raise SrpruneError(
                f"image {pair.name} is {h}x{w} (after mod-crop to x{scale}), smaller "
                f"than the HR patch {hr_patch}x{hr_patch} (lr_patch {lr_patch} x{scale})"
            )


def check_patch_fits(images: ImageSet, lr_patch: int) -> None:
    """One-line error when an image of ``images`` is smaller than an HR training patch."""
    _check_patch(list(images), lr_patch, images.scale)
