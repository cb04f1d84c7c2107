"""ONNX export of an SR model's final image, and a parity check against PyTorch.

The exported graph maps ``lr`` (N, 3, H, W) to ``sr`` (N, 3, sH, sW) with dynamic batch and
spatial axes, in one self-contained file (no external-data side file), written atomically.

Exporter choice: the legacy TorchScript exporter (``dynamo=False``) is tried first. On torch
2.13 it handles dynamic axes for PixelShuffle (``DepthToSpace`` CRD) and the bicubic skip
(``Resize`` cubic, half-pixel), produces plain ``lr``/``sr`` dimension names and exports DRN-S
about 3x faster than the dynamo exporter (5.8 s vs 17 s at 24x24 here), same numerics. It is
deprecated, so when it fails or is gone the dynamo exporter (``torch.export``, opset >= 18)
is tried before giving up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
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
PARITY_TOLERANCE = 1e-3  # max |torch - ORT| on the 0..255 scale
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
    """Largest |torch - ONNX Runtime| difference on the 0..255 scale for one random input."""

    max_abs_diff: float
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape)}


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
    with _quiet():
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
def _quiet() -> Iterator[None]:
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
                 name: str | None = None) -> ParityResult:
    """Run torch and ONNX Runtime on one random input; SrpruneError above ``tolerance`` (on
    the 0..255 scale; times max|output|/255 when outputs reach beyond the image range)."""
    name = name or model_name(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, *input_size, generator=gen) * model.rgb_range
    module = model.final_output_module()
    was_training = model.net.training
    model.net.eval()
    try:
        with torch.inference_mode():
            ref = module(x).numpy()
    finally:
        model.net.train(was_training)
    session = make_session(path, threads)
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if out.shape != ref.shape:
        raise SrpruneError(f"ONNX model of '{name}' gives shape {tuple(out.shape)}, torch "
                           f"{tuple(ref.shape)} for input {tuple(x.shape)}")
    diff = float(np.abs(out.astype(np.float64) - ref).max()) * 255.0 / model.rgb_range
    # float32 error grows with magnitude: outputs far outside the image range (untrained
    # weights) get a limit scaled by how far they reach
    reach = max(1.0, float(np.abs(ref).max()) / model.rgb_range) if ref.size else 1.0
    limit = tolerance * reach
    if not np.isfinite(diff) or diff > limit:
        raise SrpruneError(f"ONNX model of '{name}' differs from torch by {diff:.3g} "
                           f"(0..255 scale, limit {limit:.3g})")
    return ParityResult(diff, tuple(x.shape), tuple(out.shape))
