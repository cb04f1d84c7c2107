"""A model as an image upscaler (torch or ONNX Runtime), and one picture through it.

:func:`open_upscaler` turns an ``SRModel`` (anything the model front door loads) or an
``OnnxModel`` (an ``.onnx`` file run as it is) into an :class:`Upscaler`: an ``LR 3xHxW
float32 -> SR`` function on 0..255 with its scale and smallest usable input (channels first:
the large SR tensors are never transposed per tile). ONNX Runtime
runs srprune's own export (:func:`srprune.measure.export.export_onnx`, parity checked) in
the session :func:`srprune.measure.session.make_session` builds for ``bench``, so a tile
costs what ``srprune bench`` measures at that size.

:func:`upscale_picture` runs a :class:`~srprune.upscale.image_io.Picture` through it in
tiles: the colour, then the alpha channel separately (as a grey picture, as the upscaling
tools do; a constant alpha is just repeated).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srprune.errors import SrpruneError
from srprune.upscale.image_io import Picture, Samples, sample_converter, to_samples
from srprune.upscale.tiling import plan_tiles, upscale_tiled

MIN_SIDE = 8  # LR pixels: the smallest input any model is run on (as export and bench)
PROBE_SIDES = (8, 12, 16, 24, 32, 48, 64)


@dataclass
class Upscaler:
    """``run(lr)`` maps LR 3xHxW float32 (0..255, channels first) to SR 3x(sH)x(sW)
    float32 (not clipped: the writer clips once)."""

    label: str
    scale: int
    runtime: str  # "torch" or "onnxruntime"
    run: Callable[[np.ndarray], np.ndarray]
    minimum: int = MIN_SIDE
    bytes_per_pixel: float | None = None  # widest feature map, float32 bytes per LR pixel
    onnx_path: Path | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


def open_upscaler(model: Any, label: str, runtime: str, threads: int = 1,
                  device: str = "cpu") -> Upscaler:
    """``model`` (SRModel or OnnxModel) on ``runtime`` ("torch" or "ort")."""
    from srprune.measure.onnx_file import OnnxModel

    if isinstance(model, OnnxModel):
        if model.fixed_size is not None:
            h, w = model.fixed_size
            raise SrpruneError(f"{model.path} takes only {h}x{w} inputs (a fixed-size graph); "
                               "give the model it was exported from, or a dynamic export")
        return Upscaler(label, model.scale, "onnxruntime",
                        _ort_run(model.path, threads, model.scale),
                        onnx_path=Path(model.path))
    minimum = model_minimum(model, label)
    per_pixel = activation_bytes(model)
    if runtime == "torch":
        return Upscaler(label, model.scale, "torch", _torch_run(model, threads, device),
                        minimum, per_pixel)
    return _exported(model, label, threads, minimum, per_pixel)


def _torch_run(model: Any, threads: int, device: str) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    torch.set_num_threads(threads)
    model.to(device).eval()
    top = float(model.rgb_range)

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(lr)[None].to(device)
        with torch.inference_mode():
            sr = model(x)[0].clamp_(0, top)
        return sr.cpu().numpy()

    return run


def _ort_run(path: str | Path, threads: int, scale: int
             ) -> Callable[[np.ndarray], np.ndarray]:
    """Tiles through an ORT session made as ``bench`` makes it: (1, 3, h, w) in, out.

    The output is bound (ORT's I/O binding) to one buffer per tile size, reused: ORT writes
    into it directly, with no fresh allocation and no copy into a new array per tile. The
    array returned is therefore only valid until the next call with the same size (the
    tiler copies each tile's part out at once, and copies a whole-image result).
    """
    from srprune.measure.session import make_session

    session = make_session(path, threads)
    feed = session.get_inputs()[0].name
    fetch = session.get_outputs()[0].name
    binding = session.io_binding()
    buffers: dict[tuple[int, int], np.ndarray] = {}

    def run(lr: np.ndarray) -> np.ndarray:
        h, w = lr.shape[1:]
        out = buffers.get((h, w))
        if out is None:
            out = buffers[(h, w)] = np.empty((1, lr.shape[0], h * scale, w * scale),
                                             dtype=np.float32)
        binding.bind_cpu_input(feed, np.ascontiguousarray(lr[None], dtype=np.float32))
        binding.bind_output(fetch, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        session.run_with_iobinding(binding)
        return out[0]

    run.reuses_output = True  # type: ignore[attr-defined]
    return run


def _exported(model: Any, label: str, threads: int, minimum: int,
              per_pixel: float | None) -> Upscaler:
    """srprune's own ONNX export of ``model`` in a temporary folder, parity checked."""
    from srprune.measure.export import check_parity, export_onnx

    folder = tempfile.TemporaryDirectory(prefix="srprune-upscale-")
    try:
        size = (max(minimum, 16), max(minimum, 16))
        path = Path(folder.name) / "model.onnx"
        result = export_onnx(model, path, input_size=size, name=label)
        if not result.dynamic:
            raise SrpruneError(f"{label} exports to ONNX only at a fixed input size; use "
                               "--runtime torch for it")
        check_parity(model, path, size, threads=threads, name=label, photo=False)
        run = _ort_run(path, threads, model.scale)
    except BaseException:
        folder.cleanup()
        raise
    return Upscaler(label, model.scale, "onnxruntime", run, minimum, per_pixel, path,
                    [folder.cleanup])


def model_minimum(model: Any, label: str) -> int:
    """The smallest square LR side the model runs on (at least :data:`MIN_SIDE`), found on
    the meta device (no arithmetic)."""
    from srprune.measure.export import check_input_size

    last = ""
    for side in PROBE_SIDES:
        try:
            check_input_size(model, (side, side), name=label)
            return side
        except SrpruneError as exc:
            last = str(exc)
    raise SrpruneError(f"{label} runs on no input size from {PROBE_SIDES[0]} to "
                       f"{PROBE_SIDES[-1]} pixels ({last})")


def activation_bytes(model: Any, side: int = 16) -> float | None:
    """float32 bytes per LR pixel of the model's widest conv output (meta device), or None."""
    try:
        from srprune.measure.cost import layer_channels, meta_calls

        net = model.net
        calls, _ = meta_calls(net, (side, side))
        modules = dict(net.named_modules())
        widest = max((layer_channels(modules[name])[0] * c.out_positions / max(1, c.calls)
                      for name, c in calls.items()), default=0)
    except Exception:  # a model the meta device cannot run: no estimate
        return None
    return 4 * widest / (side * side) or None


# ------------------------------------------------------------------ one picture


def tiles_for(up: Upscaler, picture: Picture, tile: int | None, pad: int) -> list:
    h, w = picture.size
    if h < up.minimum or w < up.minimum:
        raise SrpruneError(f"the image is {h}x{w} pixels, smaller than the smallest input "
                           f"{up.label} takes ({up.minimum}x{up.minimum})")
    return plan_tiles((h, w), tile, pad, up.minimum)


def passes(picture: Picture) -> int:
    """Model passes a picture takes: colour, and alpha unless it is constant."""
    return 2 if picture.alpha is not None and not _constant(picture.alpha) else 1


def upscale_picture(up: Upscaler, picture: Picture, tile: int | None, pad: int,
                    on_tile: Callable[[int, int], None] | None = None,
                    depth: int | None = None) -> Samples:
    """``picture`` upscaled by ``up`` in tiles (alpha in its own pass), as the samples of
    ``depth`` bits (default: the picture's own) the file will hold."""
    depth = depth or picture.depth
    tiles = tiles_for(up, picture, tile, pad)
    total = len(tiles) * passes(picture)
    lr = np.ascontiguousarray(picture.rgb.transpose(2, 0, 1), dtype=np.float32)
    colour = upscale_tiled(up.run, lr, up.scale, tiles,
                           None if on_tile is None else lambda i, _n: on_tile(i, total),
                           sample_converter(depth, picture.grey))
    alpha = picture.alpha
    if alpha is not None:
        if _constant(alpha):
            level = to_samples(np.float32(alpha.flat[0]), depth)
            alpha = np.full(colour.shape[1:], level, dtype=level.dtype)
        else:
            grey = np.ascontiguousarray(np.broadcast_to(alpha, (3, *alpha.shape)),
                                        dtype=np.float32)
            done = len(tiles)
            alpha = upscale_tiled(
                up.run, grey, up.scale, tiles,
                None if on_tile is None else lambda i, _n: on_tile(done + i, total),
                sample_converter(depth, grey=True))[0]
    return Samples(colour, alpha, depth, picture.icc_profile)


def _constant(values: np.ndarray) -> bool:
    return values.size == 0 or float(values.min()) == float(values.max())


@contextlib.contextmanager
def opened(models: list[tuple[str, Any]], runtime: str, threads: int, device: str):
    """Upscalers for ``models`` ((label, model) pairs), closed on the way out."""
    ups: list[Upscaler] = []
    try:
        for label, model in models:
            ups.append(open_upscaler(model, label, runtime, threads, device))
        yield ups
    finally:
        for up in ups:
            up.close()
