"""ONNX export of an SR model's final image, and a parity check against PyTorch.

The exported graph maps ``lr`` (N, 3, H, W) to ``sr`` (N, 3, sH, sW) with dynamic batch and
spatial axes, in one self-contained file (no external-data side file), written atomically.

Exporter choice: the legacy TorchScript exporter (``dynamo=False``) is tried first. On torch
2.13 it handles dynamic axes for PixelShuffle (``DepthToSpace`` CRD) and the bicubic skip
(``Resize`` cubic, half-pixel), produces plain ``lr``/``sr`` dimension names and exports DRN-S
about 3x faster than the dynamo exporter (5.8 s vs 17 s at 24x24 here), same numerics. It is
deprecated, so when it fails or is gone the dynamo exporter (``torch.export``, opset >= 18)
is tried before giving up.

Parity is judged against the model's own float32 noise, not an absolute limit: the runtime's
output and torch's float32 output are both compared with torch in float64, on a random input
and on a crop of a natural photo, and the runtime may err by at most ``PARITY_MARGINS[runtime]``
times torch float32's own error (never less than the old absolute limit). A trained SPAN scales its
activations by 255 inside: on a random 96x96 input torch float32 itself is 47-370 away from
float64 there, so an absolute limit rejects correct exports of it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from srprune.errors import SrpruneError
from srprune.io.checkpoint import write_atomic
from srprune.measure.cost import Cost, model_cost
from srprune.measure.session import make_session
from srprune.models.srmodel import SRModel

LEGACY_OPSET = 17
DYNAMO_OPSET = 18
PARITY_TOLERANCE = 1e-3  # floor of the parity limit on the 0..255 scale (the old fixed limit)
# The runtime's max error against torch float64 may be this many times torch float32's own.
# Measured (max |x - float64| ratios, x = runtime / torch float32, random 32x32, 96x96, 40x56
# inputs and a 64x64 photo crop; 12 zoo models incl. a trained SPAN and shipped drn-t):
# ONNX Runtime 0.49-1.82, ncnn float32 0.79-9.6 (Winograd convolutions; worst: drn-t x4;
# srnet-t 8.6, EDSR 7.2 over the whole zoo at 32x32). Margins are about 4x (ORT) and 3.3x
# (ncnn) above those. (One 3x3 conv on inputs up to 510 reached 13.5x on ncnn, 1.2e-3 on
# 0..255: there the floor decides.) A conv's weights scaled by 1+1e-3 in the ONNX file gave
# 12x (trained SPAN, random input; 261x on the photo), 1000x (drn-t) and 21x (ESPCN, random
# weights); by 1+1e-2: 72x, 10^4x and 206x. Over all 26 zoo models x scales (small configs,
# 16x16, random input and photo) ORT stayed within 0.5-2.3x, all under their limits.
PARITY_MARGINS = {"onnxruntime": 8.0, "ncnn": 32.0}
PARITY_MARGIN = PARITY_MARGINS["onnxruntime"]
MIN_INPUT = 8
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
EXPORTERS = ("auto", "legacy", "dynamo")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ExportResult:
    """Where the ONNX file went and how it was made."""

    path: Path
    opset: int
    exporter: str
    seconds: float
    size_bytes: int
    dynamic: bool = True  # height and width stay symbolic (False: fixed to the traced size)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


@dataclass
class ParityResult:
    """How far a runtime's output is from torch's, on the 0..255 scale (worst input).

    ``max_abs_diff`` is max |runtime - torch float32|; ``runtime_error`` and ``fp32_error``
    are the runtime's and torch float32's max distance to torch float64 on the input that came
    closest to its limit, ``limit`` the bound ``runtime_error`` had to meet (None where no
    float64 reference could run: then ``max_abs_diff`` met ``limit``). ``photo_psnr`` is the
    PSNR (dB, clipped to 0..255) of the runtime's output against the reference on the photo.
    """

    max_abs_diff: float
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    runtime_error: float | None = None
    fp32_error: float | None = None
    limit: float | None = None
    photo_psnr: float | None = None
    runtime: str = "onnxruntime"

    def as_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "runtime": self.runtime,
                "runtime_error_vs_float64": self.runtime_error,
                "fp32_error_vs_float64": self.fp32_error, "limit": self.limit,
                "margin": PARITY_MARGINS.get(self.runtime, PARITY_MARGIN),
                "photo_psnr": self.photo_psnr}


def model_name(model: SRModel) -> str:
    """The registered name of a model if it has one, else its architecture."""
    return model.name or model.arch


def check_input_size(model: SRModel, input_size: tuple[int, int],
                     name: str | None = None) -> Cost:
    """Cost of ``model`` at ``input_size``; SrpruneError when the size is not usable.

    Usable means at least ``MIN_INPUT`` pixels per side, a forward pass that runs, and a final
    output of exactly ``scale`` times the input size. Checked on the meta device (no arithmetic).
    """
    name = name or model_name(model)
    h, w = (int(v) for v in input_size)
    if h < MIN_INPUT or w < MIN_INPUT:
        raise SrpruneError(f"input size {h}x{w} is too small (minimum {MIN_INPUT}x{MIN_INPUT})")
    try:
        cost = model_cost(model, (h, w))
    except (RuntimeError, ValueError, IndexError, NotImplementedError) as exc:
        raise SrpruneError(f"input size {h}x{w} is not usable by '{name}': "
                           f"{first_line(exc)}") from None
    expected = [1, 3, h * model.scale, w * model.scale]
    if cost.outputs[-1] != expected:
        got = "x".join(map(str, cost.outputs[-1]))
        raise SrpruneError(f"input size {h}x{w} is not usable by '{name}': output {got}, "
                           f"expected {'x'.join(map(str, expected))}")
    return cost


def first_line(exc: BaseException) -> str:
    """First non-empty line of an exception (ANSI colours removed), plus its root cause's."""
    def line(e: BaseException) -> str:
        text = _ANSI.sub("", str(e)).strip()
        return text.splitlines()[0].strip() if text else type(e).__name__

    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    head = f"{type(exc).__name__}: {line(exc)}"
    return head if root is exc else f"{head} (cause: {type(root).__name__}: {line(root)})"


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset a model file was written with."""
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise SrpruneError(f"{path}: no default-domain opset in the ONNX file")


def export_onnx(model: SRModel, path: str | Path, input_size: tuple[int, int] = (32, 32),
                exporter: str = "auto", force: bool = False,
                name: str | None = None) -> ExportResult:
    """Export ``model``'s final image output to ``path`` (atomic; no overwrite unless ``force``).

    ``input_size`` is the example LR size traced; the graph accepts any batch and size
    unless the model forces the exporter to fix them (``ExportResult.dynamic`` says which:
    e.g. SAFMN's adaptive pooling to a size computed from the input).
    ``exporter`` is ``"legacy"``, ``"dynamo"`` or ``"auto"`` (legacy, then dynamo).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    name = name or model_name(model)
    module = model.final_output_module()
    example = torch.rand(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    example = example * model.rgb_range
    order = ("legacy", "dynamo") if exporter == "auto" else (exporter,)
    errors: list[str] = []
    was_training = model.net.training
    model.net.eval()
    try:
        for kind in order:
            start = time.perf_counter()
            try:
                out = write_atomic(
                    path, lambda tmp, k=kind: _export(module, example, tmp, k), force)
            except SrpruneError:
                raise
            except Exception as exc:  # exporters raise many unrelated types
                errors.append(f"{kind} exporter: {first_line(exc)}")
                continue
            seconds = time.perf_counter() - start
            return ExportResult(out, onnx_opset(out), kind, seconds, out.stat().st_size,
                                dynamic=spatial_axes_dynamic(out))
    finally:
        model.net.train(was_training)
    raise SrpruneError(f"ONNX export of '{name}' failed: " + "; ".join(errors))


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, kind: str) -> None:
    """Run one exporter into ``path``; its console chatter is kept off stdout."""
    with quiet_exporters():
        if kind == "legacy":
            torch.onnx.export(
                module, (example,), str(path), dynamo=False, opset_version=LEGACY_OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                              OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}},
            )
        else:
            dim = torch.export.Dim
            shapes = ({0: dim("batch", min=1, max=1024), 2: dim("height", min=MIN_INPUT, max=8192),
                       3: dim("width", min=MIN_INPUT, max=8192)},)
            torch.onnx.export(
                module, (example,), str(path), dynamo=True, opset_version=DYNAMO_OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=shapes,
                external_data=False, verbose=False,
            )
    _check_self_contained(path)


def spatial_axes_dynamic(path: str | Path) -> bool:
    """True when the ONNX input's height and width are symbolic, not fixed numbers."""
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 4 and all(not d.HasField("dim_value") for d in dims[2:])


def _check_self_contained(path: Path) -> None:
    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise RuntimeError("the exporter wrote external data (model over 2 GB?)")
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise RuntimeError(f"expected 1 input and 1 output, got {len(model.graph.input)} "
                           f"and {len(model.graph.output)}")


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence Python warnings and the onnx loggers; send C++ writes to fd 1 to a scratch file.

    The legacy exporter dumps its whole TorchScript graph to stdout (fd 1) when it fails,
    which would corrupt ``--json`` output; the caller reports one line instead.
    """
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export")]
    levels = [lg.level for lg in loggers]
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)



def check_parity(model: SRModel, path: str | Path, input_size: tuple[int, int], batch: int = 1,
                 seed: int = 0, tolerance: float = PARITY_TOLERANCE, threads: int = 1,
                 name: str | None = None, photo: bool = True) -> ParityResult:
    """ONNX Runtime against torch on ``path`` (see :func:`judge_parity`); SrpruneError when
    the file is further from torch float64 than torch float32's own noise allows."""
    session = make_session(path, threads)
    feed = session.get_inputs()[0].name
    return judge_parity(model, lambda x: session.run(None, {feed: x})[0], input_size,
                        batch=batch, seed=seed, tolerance=tolerance, name=name, photo=photo)


def judge_parity(model: SRModel, run: Callable[[np.ndarray], np.ndarray],
                 input_size: tuple[int, int], *, runtime: str = "onnxruntime",
                 what: str = "ONNX model", batch: int = 1, seed: int = 0,
                 tolerance: float = PARITY_TOLERANCE, name: str | None = None,
                 photo: bool = True) -> ParityResult:
    """Compare ``run`` (float32 NCHW in, out) with ``model`` on a random input and a photo.

    Per input: ``err_rt`` = max |run - torch float64|, ``err_fp32`` = max |torch float32 -
    torch float64| (0..255 scale); the input passes when ``err_rt <= max(margin * err_fp32,
    floor)``, ``margin`` = ``PARITY_MARGINS[runtime]``, ``floor`` = ``tolerance`` times
    max(1, max|output| / range) (float32 error grows with magnitude). Without a float64
    reference (a module that cannot run in double) the old rule applies: max |run - torch
    float32| <= floor. One-line SrpruneError naming ``what`` of ``name`` otherwise.
    """
    name = name or model_name(model)
    gen = torch.Generator().manual_seed(seed)
    inputs = [("a random input", torch.rand(batch, 3, *input_size, generator=gen)
               * model.rgb_range)]
    if photo:
        inputs.append(("a photo crop", torch.from_numpy(photo_crop(input_size, model.rgb_range))))
    module = model.final_output_module()
    was_training = model.net.training
    model.net.eval()
    try:
        double = _float64_copy(module)
        margin = PARITY_MARGINS.get(runtime, PARITY_MARGIN)
        checks = [_compare(model, module, double, run, x, label, runtime, what, name, tolerance,
                           margin) for label, x in inputs]
    finally:
        model.net.train(was_training)
    worst = max(checks, key=lambda c: c.score)
    psnr = checks[1].psnr if photo else None
    res = worst.result
    res.max_abs_diff = max(c.result.max_abs_diff for c in checks)
    res.photo_psnr = psnr
    return res


@dataclass
class _Check:
    """One input's parity numbers; ``score`` is its error over its limit (1 = at the limit)."""

    result: ParityResult
    score: float
    psnr: float | None


def _compare(model: SRModel, module: torch.nn.Module, double: torch.nn.Module | None,
             run: Callable[[np.ndarray], np.ndarray], x: torch.Tensor, label: str,
             runtime: str, what: str, name: str, tolerance: float, margin: float) -> _Check:
    with torch.inference_mode():
        ref = module(x).numpy().astype(np.float64)
        ref64 = _run_float64(double, x)
    out = np.asarray(run(np.ascontiguousarray(x.numpy())))
    if out.shape != ref.shape:
        raise SrpruneError(f"{what} of '{name}' gives shape {tuple(out.shape)}, torch "
                           f"{tuple(ref.shape)} for input {tuple(x.shape)}")
    to255 = 255.0 / model.rgb_range
    out = out.astype(np.float64)
    diff = float(np.abs(out - ref).max()) * to255 if ref.size else 0.0
    reach = max(1.0, float(np.abs(ref).max()) / model.rgb_range) if ref.size else 1.0
    floor = tolerance * reach
    if ref64 is None:
        err, fp32_err, limit = diff, None, floor
    else:
        err = float(np.abs(out - ref64).max()) * to255 if ref.size else 0.0
        fp32_err = float(np.abs(ref - ref64).max()) * to255 if ref.size else 0.0
        limit = max(margin * fp32_err, floor)
    if not np.isfinite(err) or not np.isfinite(diff) or err > limit:
        own = ("no float64 reference" if fp32_err is None else
               f"vs torch float64 {err:.3g}, torch float32's own error {fp32_err:.3g}")
        raise SrpruneError(f"{what} of '{name}' differs from torch by {diff:.3g} on {label} "
                           f"(0..255 scale; {own}; limit {limit:.3g} = max({margin:g} "
                           f"x float32 error, {floor:.3g}))")
    best = ref if ref64 is None else ref64
    mse = float(np.mean((np.clip(out, 0, model.rgb_range) - np.clip(best, 0, model.rgb_range))
                        ** 2)) * to255 ** 2 if ref.size else 0.0
    psnr = float("inf") if mse == 0 else 10.0 * float(np.log10(255.0 ** 2 / mse))
    result = ParityResult(diff, tuple(x.shape), tuple(out.shape), err if ref64 is not None
                          else None, fp32_err, limit if ref64 is not None else floor,
                          runtime=runtime)
    return _Check(result, err / limit if limit > 0 else 0.0, psnr)


def _float64_copy(module: torch.nn.Module) -> torch.nn.Module | None:
    """A float64 copy of ``module`` (None when it cannot be made: the old rule applies)."""
    try:
        return copy.deepcopy(module).double().eval()
    except Exception:  # deepcopy/double of arbitrary user modules can fail in many ways
        return None


def _run_float64(double: torch.nn.Module | None, x: torch.Tensor) -> np.ndarray | None:
    """The float64 reference output, or None when the module does not run in double."""
    if double is None:
        return None
    try:
        return double(x.double()).numpy()
    except Exception:  # float32-only ops or constants inside: fall back to the old rule
        return None


@functools.lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    """The first of srprune's built-in photos (scikit-image's astronaut, 512x512 RGB)."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


def photo_crop(input_size: tuple[int, int], rgb_range: float = 255.0) -> np.ndarray:
    """A centre crop (1, 3, H, W) float32 of the photo in 0..``rgb_range``, mirrored at its
    edges when H or W exceeds 512: natural images keep a trained model's output in range,
    where float32 noise is small, so a wrong layer stands out far more than on noise."""
    img = _photo()
    h, w = (int(v) for v in input_size)
    ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                     mode="symmetric")
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    crop = img[top:top + h, left:left + w].astype(np.float32) * np.float32(rgb_range / 255.0)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None])
