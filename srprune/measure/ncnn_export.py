"""Export an SR model to ncnn (``x.param`` + ``x.bin``) through pnnx, parity checked on ncnn.

ncnn is the format SR apps ship (Real-ESRGAN, SPAN and waifu2x front ends read
``.param``/``.bin``); pnnx (pip ``pnnx``, a self-contained converter binary) turns a
TorchScript trace or an ONNX file into it without network access.

Routes: ``torchscript``: ``torch.jit.trace`` of the model's final image output, then pnnx;
``onnx``: srprune's own ONNX export, then pnnx on that file. ``route="auto"`` takes the
TorchScript route and falls back to ONNX only when tracing itself fails (a Python
``autograd.Function`` inside). Measured on the 26 registered models (published configs,
random weights, 32x32): TorchScript converts 21 with parity passing, and ESRGAN (23 RRDB
blocks) only with enough memory: pnnx's ncnn pass took 171 s once and was killed once at
21 GB RSS on a 23 GB machine (under a 10 GB cap it aborts). It fails for OmniSR (its
``autograd.Function`` cannot be traced; on its ONNX file pnnx aborts), PLKSR
(``torch.repeat_interleave``), SAFMN (``F.adaptive_max_pool2d``) and SwinIR-light (masking
and reshapes left as torch ops). Where pnnx left such operations the ONNX route did no better
(PLKSR: ``torch.tile``; SwinIR-light: pnnx still running after 900 s), so it is not tried
then.

pnnx runs in a temporary folder (it writes its own ``.pnnx.*`` files, an ONNX copy and two
Python scripts beside the output); only the ``.param``/``.bin`` pair leaves it, each file
written atomically, after ncnn itself has loaded the pair and matched torch
(:func:`check_ncnn_parity`, float32, 1 thread by default). A pnnx output that still holds
operations ncnn has no layer for (pnnx names them after torch: ``pnnx.Expression``,
``F.adaptive_max_pool2d``) is refused with one line naming them.

pnnx is given two input shapes (``input_size`` and one 8/16 pixels larger) so that sizes
computed from the input stay symbolic; parity is then checked at both. A file whose shapes
were fixed at trace time fails there (measured: RFDN's attention branch pools and resizes to
sizes taken from the input; traced at one size only, ncnn ran it 3000x worse than float32 at
96x96). Weights are stored as float32 (pnnx ``fp16=0``); ncnn may still compute in float16
on CPUs that have it unless its ``use_fp16_*`` options are off (srprune turns them off for
parity).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from srprune.errors import SrpruneError
from srprune.io.checkpoint import check_writable, write_atomic
from srprune.measure.export import (
    ParityResult,
    check_input_size,
    export_onnx,
    first_line,
    judge_parity,
    model_name,
    quiet_exporters,
)
from srprune.measure.ncnn_runtime import (
    NcnnRunner,
    bin_path_for,
    layer_types,
    require_ncnn,
    unsupported_layers,
)
from srprune.models.srmodel import SRModel

PNNX_INSTALL = "pip install --no-deps pnnx"  # its only dependency is torch, already here
# ESRGAN (23 RRDB blocks) took 171 s in pnnx on a busy 2-core VM; SwinIR-light's ONNX file
# still ran after 900 s: past this, pnnx is stopped and the route counts as failed
PNNX_TIMEOUT_S = 900
ROUTES = ("auto", "torchscript", "onnx")
SECOND_SIZE_STEP = (8, 16)  # the second shape given to pnnx: input_size + this


@dataclass
class NcnnExportResult:
    """Where the ncnn pair went, how it was made, and how it matched torch."""

    param_path: Path
    bin_path: Path
    route: str  # "torchscript" or "onnx": what pnnx converted
    seconds: float
    size_bytes: int  # .param + .bin
    layers: int
    dynamic: bool  # pnnx saw two input sizes (False: shapes may be fixed to input_size)
    parity: list[ParityResult] = field(default_factory=list)  # one per size checked
    tried: list[str] = field(default_factory=list)  # why earlier routes failed

    def as_dict(self) -> dict:
        data = asdict(self)
        data["param_path"], data["bin_path"] = str(self.param_path), str(self.bin_path)
        data["parity"] = [p.as_dict() for p in self.parity]
        data["parity_max_abs_diff"] = self.parity_max_abs_diff
        return data

    @property
    def parity_max_abs_diff(self) -> float | None:
        """Largest max |ncnn - torch float32| over the sizes checked (0..255 scale)."""
        return max((p.max_abs_diff for p in self.parity), default=None)


def pnnx_executable() -> Path:
    """The pnnx binary shipped in the ``pnnx`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or spec.origin is None:
        raise SrpruneError(f"pnnx is not installed; `{PNNX_INSTALL}` adds the converter "
                           "ncnn export needs")
    exe = Path(spec.origin).parent / ("pnnx.exe" if os.name == "nt" else "pnnx")
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise SrpruneError(f"the pnnx package has no runnable converter at {exe}; reinstall it "
                           f"(`{PNNX_INSTALL}`)")
    return exe


def ncnn_output_paths(param_path: str | Path) -> tuple[Path, Path]:
    """``x.param`` and the ``x.bin`` beside it; anything not ending in ``.param`` is refused."""
    param = Path(param_path)
    if param.suffix != ".param":
        raise SrpruneError(f"{param}: an ncnn model is a .param file (its weights go to "
                           "the .bin beside it); give a path ending in .param")
    return param, bin_path_for(param)


def check_ncnn_writable(param_path: str | Path, force: bool) -> tuple[Path, Path]:
    """Both files of the pair may be written (checked before any work)."""
    param, weights = ncnn_output_paths(param_path)
    check_writable(param, force)
    check_writable(weights, force)
    return param, weights


def second_size(model: SRModel, input_size: tuple[int, int]) -> tuple[int, int] | None:
    """The other size pnnx traces and parity checks (None when the model cannot take it)."""
    size = (input_size[0] + SECOND_SIZE_STEP[0], input_size[1] + SECOND_SIZE_STEP[1])
    try:
        check_input_size(model, size)
    except SrpruneError:
        return None
    return size


def export_ncnn(model: SRModel, param_path: str | Path, input_size: tuple[int, int] = (32, 32),
                force: bool = False, name: str | None = None, route: str = "auto",
                check: bool = True, threads: int = 1, second: bool = True) -> NcnnExportResult:
    """Convert ``model``'s final image output to ``param_path`` and the ``.bin`` beside it.

    Nothing is written unless conversion succeeds and (``check``) ncnn matches torch at
    ``input_size`` and, with ``second``, at a second size (:func:`check_ncnn_parity`);
    existing files are refused unless ``force``. Any failure is one SrpruneError line.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    name = name or model_name(model)
    param, weights = check_ncnn_writable(param_path, force)
    require_ncnn()
    exe = pnnx_executable()
    check_input_size(model, input_size, name)
    sizes = [(int(input_size[0]), int(input_size[1]))]
    other = second_size(model, input_size) if second else None
    order = ("torchscript", "onnx") if route == "auto" else (route,)
    errors: list[str] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="srprune-pnnx-") as tmp:
        made: Path | None = None
        for kind in order:
            work = Path(tmp) / kind
            work.mkdir()
            try:
                made, shapes = _convert(model, kind, work, input_size, other, exe, name)
                break
            except _TraceError as exc:  # the next route may take it
                errors.append(f"{kind}: {exc}")
            except SrpruneError as exc:  # pnnx's verdict: the ONNX route lowers the same ops
                errors.append(f"{kind}: {exc}")
                break
        if made is None:
            raise SrpruneError(f"ncnn export of '{name}' failed: " + "; ".join(errors))
        parity = []
        if check:
            checked = sizes + ([shapes] if shapes is not None else [])
            parity = check_ncnn_parity(model, made, checked, threads=threads, name=name)
        seconds = time.perf_counter() - start
        _move_pair(made, param, weights, force)
    size = param.stat().st_size + weights.stat().st_size
    return NcnnExportResult(param, weights, kind, seconds, size, len(layer_types(param)),
                            shapes is not None, parity, errors)


def check_ncnn_parity(model: SRModel, param_path: str | Path,
                      sizes: list[tuple[int, int]], threads: int = 1, seed: int = 0,
                      name: str | None = None, photo: bool = True) -> list[ParityResult]:
    """ncnn (float32 options, ``threads``) against torch at each size; the rule is
    :func:`srprune.measure.export.judge_parity`'s (float64 reference, float32 noise margin)."""
    runner = NcnnRunner(param_path, threads, fp16=False)
    return [judge_parity(model, runner, size, runtime="ncnn", what="ncnn model", seed=seed,
                         name=name, photo=photo) for size in sizes]


def _convert(model: SRModel, kind: str, work: Path, input_size: tuple[int, int],
             other: tuple[int, int] | None, exe: Path, name: str
             ) -> tuple[Path, tuple[int, int] | None]:
    """One route into ``work``: the ncnn ``.param`` pnnx wrote (its ``.bin`` beside it) and
    the second size pnnx saw (None: its shapes may be fixed to ``input_size``)."""
    if kind == "torchscript":
        source = work / "model.pt"
        _trace(model, input_size, source)
    else:
        source = work / "model.onnx"
        result = export_onnx(model, source, input_size, name=name)
        if not result.dynamic:
            other = None  # a fixed-size ONNX graph takes no second shape
    param = work / "model.ncnn.param"
    shape = f"[1,3,{input_size[0]},{input_size[1]}]"
    args = [str(exe), source.name, f"inputshape={shape}", "fp16=0",
            f"ncnnparam={param.name}", f"ncnnbin={bin_path_for(param).name}"]
    if other is not None:
        args.append(f"inputshape2=[1,3,{other[0]},{other[1]}]")
    try:
        proc = subprocess.run(args, cwd=work, capture_output=True, text=True,
                              timeout=PNNX_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SrpruneError(f"pnnx ran past {PNNX_TIMEOUT_S} s") from None
    except OSError as exc:
        raise SrpruneError(f"cannot run pnnx ({exc.strerror or exc})") from None
    if proc.returncode < 0:  # a signal: SIGKILL is what the kernel's OOM killer sends
        oom = " (out of memory?)" if proc.returncode == -signal.SIGKILL else ""
        raise SrpruneError(f"pnnx was killed by signal {-proc.returncode}{oom} after: "
                           f"{_last_line(proc.stderr + proc.stdout)}")
    if proc.returncode != 0 or not param.is_file() or not bin_path_for(param).is_file():
        raise SrpruneError(f"pnnx failed (exit {proc.returncode}): "
                           f"{_last_line(proc.stderr + proc.stdout)}")
    bad = unsupported_layers(param)
    if bad:
        raise SrpruneError("pnnx left operations ncnn has no layer for: "
                           + ", ".join(f"{k} ({n})" for k, n in sorted(bad.items())))
    return param, other


class _TraceError(SrpruneError):
    """TorchScript could not trace the model (the ONNX route may still take it)."""


def _trace(model: SRModel, input_size: tuple[int, int], path: Path) -> None:
    """TorchScript trace of the final image output at ``input_size``, saved to ``path``."""
    module = model.final_output_module()
    example = torch.rand(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    example = example * model.rgb_range
    was_training = model.net.training
    model.net.eval()
    try:
        with quiet_exporters(), torch.no_grad():
            traced = torch.jit.trace(module, example, check_trace=False)
            traced.save(str(path))
    except Exception as exc:  # tracing raises many unrelated types
        raise _TraceError(f"TorchScript trace failed: {first_line(exc)}") from None
    finally:
        model.net.train(was_training)


def _last_line(text: str) -> str:
    """The last non-empty line of pnnx's output (where it says what went wrong)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def _move_pair(made: Path, param: Path, weights: Path, force: bool) -> None:
    """Write the ``.bin`` then the ``.param`` atomically; a new ``.bin`` is removed again when
    the ``.param`` cannot be written (a ``.param`` never points at a missing ``.bin``)."""
    existed = weights.exists()
    write_atomic(weights, lambda tmp: shutil.copyfile(bin_path_for(made), tmp), force)
    try:
        write_atomic(param, lambda tmp: shutil.copyfile(made, tmp), force)
    except BaseException:
        if not existed:
            weights.unlink(missing_ok=True)
        raise
