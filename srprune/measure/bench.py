"""``srprune bench``'s pipeline: cost, export + parity, then interleaved latency.

Runtimes: ONNX Runtime (``ort``, the default) and ncnn (``ncnn``: pnnx export, parity on ncnn,
timed by :mod:`srprune.measure.ncnn_runtime`). With both, ncnn's calls join ORT's rounds
(A B ... then ncnn A B ..., every round), so drift hits both alike; ORT's numbers stay the
record's main ones and ncnn's sit beside them (``ncnn_*``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from srprune.errors import SrpruneError
from srprune.measure.cost import Cost
from srprune.measure.export import check_input_size, check_parity, export_onnx, onnx_opset
from srprune.measure.latency import LatencyResult, LatencyStats, ort_latency, torch_latency
from srprune.measure.onnx_file import OnnxModel
from srprune.measure.roofline import (
    INTERLEAVED_N,
    Roofline,
    achieved_gflops,
    sgemm_model,
    sgemm_rate,
    sgemm_runner,
)
from srprune.measure.session import random_input
from srprune.models.srmodel import SRModel

RUNTIMES = ("ort", "ncnn")
RUNTIME_LABELS = {"ort": "onnxruntime", "ncnn": "ncnn"}
_ALIASES = {"ort": "ort", "onnxruntime": "ort", "onnx": "ort", "ncnn": "ncnn"}


def parse_runtimes(text: str) -> tuple[str, ...]:
    """``"ort,ncnn"`` -> ``("ort", "ncnn")``: known names, no repeats, ORT first when given."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in _ALIASES]
    if unknown or not names:
        raise SrpruneError(f"--runtime takes a comma-separated list of {', '.join(RUNTIMES)}; "
                           f"got {text!r}")
    chosen = {_ALIASES[n] for n in names}
    return tuple(r for r in RUNTIMES if r in chosen)


def latency_stage(runtimes: Sequence[str]) -> str:
    """The name ``benchmark`` gives its timed calls in ``on_step`` (one a call)."""
    return "+".join(RUNTIME_LABELS[r] for r in runtimes)


@dataclass
class BenchRecord:
    """Everything ``srprune bench`` reports for one model."""

    model: str
    scale: int
    params: int
    macs: int | None  # None: an ONNX file whose graph shapes could not be inferred
    paper_macs: int | None  # None for ONNX files (no bias convention in the graph count)
    input_size: tuple[int, int]
    threads: int
    runs: int
    warmup: int
    opset: int | None  # None when no ONNX file was made (``runtime`` "ncnn" alone)
    exporter: str  # "onnx file" for a model given as an .onnx file (not exported here)
    parity_max_abs_diff: float | None  # None for an .onnx file (no torch model to compare)
    latency: LatencyStats
    speedup: float
    gflops: float | None
    cpu_time: LatencyStats | None = None
    torch_latency: LatencyStats | None = None
    torch_speedup: float | None = None
    roofline: dict | None = None
    onnx_file: str | None = None
    runtime: str = "onnxruntime"  # what ``latency`` (and ``parity``) measured
    parity: dict | None = None  # ParityResult.as_dict() of ``runtime``
    ncnn_latency: LatencyStats | None = None  # ncnn beside ORT (``runtime`` onnxruntime)
    ncnn_speedup: float | None = None
    ncnn_cpu_time: LatencyStats | None = None
    ncnn_parity: dict | None = None
    ncnn_file: str | None = None  # the .param kept (--onnx-out), ncnn as main or beside
    ncnn_fp16: bool | None = None  # ncnn timed with its float16/bfloat16 defaults

    def as_dict(self) -> dict:
        data = {
            "model": self.model, "scale": self.scale, "params": self.params, "macs": self.macs,
            "paper_macs": self.paper_macs, "input_size": list(self.input_size),
            "threads": self.threads, "runs": self.runs, "warmup": self.warmup,
            "opset": self.opset, "exporter": self.exporter,
            "parity_max_abs_diff": self.parity_max_abs_diff,
            "latency_ms": self.latency.as_dict(), "speedup": self.speedup, "gflops": self.gflops,
            "cpu_per_wall": self.latency.cpu_per_wall,
            "cpu_time_ms": self.cpu_time.as_dict() if self.cpu_time is not None else None,
            "onnxruntime": ort.__version__, "runtime": self.runtime,
        }
        if self.parity is not None:
            data["parity"] = self.parity
        if self.ncnn_latency is not None:
            data.update(ncnn_latency_ms=self.ncnn_latency.as_dict(),
                        ncnn_speedup=self.ncnn_speedup,
                        ncnn_cpu_per_wall=self.ncnn_latency.cpu_per_wall,
                        ncnn_cpu_time_ms=(None if self.ncnn_cpu_time is None
                                          else self.ncnn_cpu_time.as_dict()),
                        ncnn_parity_max_abs_diff=(None if self.ncnn_parity is None
                                                  else self.ncnn_parity["max_abs_diff"]),
                        ncnn_parity=self.ncnn_parity)
        if self.ncnn_fp16 is not None:
            from srprune.measure.ncnn_runtime import ncnn_version

            data.update(ncnn=ncnn_version(), ncnn_fp16=self.ncnn_fp16)
        if self.ncnn_file is not None:
            data["ncnn_file"] = self.ncnn_file
        if self.torch_latency is not None:
            data["torch_latency_ms"] = self.torch_latency.as_dict()
            data["torch_speedup"] = self.torch_speedup
        if self.roofline is not None:
            data["roofline"] = self.roofline
        if self.onnx_file is not None:
            data["onnx_file"] = self.onnx_file
        return data


def bench_steps(n_models: int, runs: int, warmup: int, with_torch: bool = False,
                roofline: bool = False, runtimes: Sequence[str] = ("ort",)) -> int:
    """How many times :func:`benchmark` calls ``on_step`` (for progress bars)."""
    n_rt = len(runtimes)
    timed = (n_models * n_rt + roofline) + (n_models if with_torch else 0)
    return 2 * n_models * n_rt + timed * (runs + warmup)


def onnx_file_names(labels: Sequence[str], scales: Sequence[int]) -> list[str]:
    """Distinct, filesystem-safe ONNX file names: ``<stem>-x<scale>.onnx``."""
    names: list[str] = []
    for i, (label, scale) in enumerate(zip(labels, scales, strict=True)):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(label).stem) or "model"
        name = f"{stem}-x{scale}.onnx"
        names.append(f"{stem}-x{scale}-{i}.onnx" if name in names else name)
    return names


def benchmark(models: Sequence[tuple[str, SRModel | OnnxModel]], input_size: tuple[int, int],
              threads: int = 1, runs: int = 20, warmup: int = 3,
              onnx_dir: str | Path | None = None, force: bool = False,
              with_torch: bool = False, roofline: bool = False,
              on_step: Callable[[str], None] | None = None,
              runtimes: Sequence[str] = ("ort",), ncnn_fp16: bool = False) -> list[BenchRecord]:
    """Cost, export + parity, then interleaved latency of ``(label, model)`` pairs.

    Exported files go to ``onnx_dir`` (kept; existing files are refused unless ``force``) or
    to a temporary folder that is removed afterwards. Speed-ups are relative to the first
    model (per runtime). ``roofline`` times an n=1024 SGEMM graph in the same rounds and rates
    each model against it. An :class:`OnnxModel` (a ``.onnx`` file given as is) is timed as it
    is on ORT: no export, no parity, params and MACs counted on its graph. ``runtimes``:
    ``"ort"`` and/or ``"ncnn"`` (ncnn: pnnx export, parity on ncnn in float32, timing with
    ncnn's float16 defaults when ``ncnn_fp16``).
    """
    if not models:
        raise SrpruneError("no models to benchmark")
    runtimes = parse_runtimes(",".join(runtimes))
    use_ort, use_ncnn = "ort" in runtimes, "ncnn" in runtimes
    step = on_step or (lambda _desc: None)
    labels = [label for label, _ in models]
    if use_ncnn:
        _check_ncnn_ready(models)
    costs = [_onnx_cost(m, input_size, label) if isinstance(m, OnnxModel)
             else check_input_size(m, input_size, label) for label, m in models]
    with contextlib.ExitStack() as stack:
        if onnx_dir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="srprune-")))
        else:
            folder = Path(onnx_dir)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SrpruneError(f"cannot create ONNX folder {folder}: {exc}") from None
        names = onnx_file_names(labels, [m.scale for _, m in models])
        paths = [m.path if isinstance(m, OnnxModel) else folder / name
                 for (_, m), name in zip(models, names, strict=True)]
        params = [folder / Path(name).with_suffix(".param").name for name in names]
        _refuse_existing(models, paths if use_ort else [], params if use_ncnn else [], force)
        exports: list[Any] = [None] * len(models)
        parities: list[Any] = [None] * len(models)
        ncnn_exports: list[Any] = [None] * len(models)
        for i, ((label, model), path) in enumerate(zip(models, paths, strict=True)):
            if use_ort and isinstance(model, OnnxModel):
                step(f"export {label} (given)")
                step(f"parity {label} (n/a)")
            elif use_ort:
                exports[i] = export_onnx(model, path, input_size, force=force, name=label)
                step(f"export {label}")
                parities[i] = check_parity(model, path, input_size, threads=threads,
                                           name=label)
                step(f"parity {label}")
            if use_ncnn:
                ncnn_exports[i] = _export_ncnn(model, params[i], input_size, force, label,
                                               threads)
                step(f"export ncnn {label}")
                step(f"parity ncnn {label}")
        extra = []
        if roofline:
            n = INTERLEAVED_N
            sgemm_path = sgemm_model(Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="srprune-sgemm-"))) / "sgemm.onnx", n)
            extra = [("sgemm", sgemm_runner(sgemm_path, n, threads))]
        stage = latency_stage(runtimes)
        timed, ncnn_timed = _time(paths, params, runtimes, input_size, labels, threads, runs,
                                  warmup, ncnn_fp16, extra, lambda: step(stage))
    eager = None
    if with_torch:
        eager = torch_latency([m.final_output_module() for _, m in models], input_size, labels,
                              threads, runs, warmup, on_step=lambda: step("torch"))
    records = []
    keep = onnx_dir is not None
    for i, (label, model) in enumerate(models):
        cost, res, export, parity = costs[i], timed[i], exports[i], parities[i]
        given = isinstance(model, OnnxModel)
        nx = ncnn_exports[i]
        if use_ort:
            opset = onnx_opset(paths[i]) if given else export.opset
            exporter = "onnx file" if given else export.exporter
            main_parity = parity
        else:
            opset, exporter = None, f"pnnx ({nx.route})"
            main_parity = nx.parity[0]
        rec = BenchRecord(
            label, model.scale, cost.params, cost.macs, cost.paper_macs, tuple(input_size),
            threads, runs, warmup, opset, exporter,
            None if main_parity is None else main_parity.max_abs_diff, res.stats, res.speedup,
            None if cost.macs is None else achieved_gflops(cost.macs, res.stats.median),
            res.cpu_stats,
            onnx_file=str(paths[i]) if use_ort and (keep or given) else None,
            runtime="onnxruntime" if use_ort else "ncnn",
            parity=None if main_parity is None else main_parity.as_dict(),
        )
        if use_ncnn:
            rec.ncnn_fp16 = ncnn_fp16
            rec.ncnn_file = str(params[i]) if keep else None
        if use_ort and use_ncnn:
            nres = ncnn_timed[i]
            rec.ncnn_latency, rec.ncnn_speedup = nres.stats, nres.speedup
            rec.ncnn_cpu_time, rec.ncnn_parity = nres.cpu_stats, nx.parity[0].as_dict()
        if eager is not None:
            rec.torch_latency, rec.torch_speedup = eager[i].stats, eager[i].speedup
        if roofline:
            peak = sgemm_rate(INTERLEAVED_N, timed[-1].stats.median)
            efficiency = None if rec.gflops is None else rec.gflops / peak
            rec.roofline = {"peak_gflops": peak, "efficiency": efficiency,
                            "peak_source": f"interleaved onnxruntime MatMul n={INTERLEAVED_N}"}
        records.append(rec)
    return records


def _check_ncnn_ready(models: Sequence[tuple[str, SRModel | OnnxModel]]) -> None:
    """ncnn and pnnx installed, and no ``.onnx`` file among the models (before any work)."""
    from srprune.measure.ncnn_export import pnnx_executable
    from srprune.measure.ncnn_runtime import require_ncnn

    given = [label for label, m in models if isinstance(m, OnnxModel)]
    if given:
        raise SrpruneError(f"{given[0]} is an ONNX file: --runtime ncnn times models srprune "
                           "exports itself (give the model, e.g. its checkpoint or name)")
    require_ncnn()
    pnnx_executable()


def _refuse_existing(models: Sequence[tuple[str, SRModel | OnnxModel]], paths: list[Path],
                     params: list[Path], force: bool) -> None:
    """Files this run would write that exist already: refused unless ``force``."""
    if force:
        return
    from srprune.measure.ncnn_runtime import bin_path_for

    mine = [p for p, (_, m) in zip(paths, models, strict=False) if not isinstance(m, OnnxModel)]
    taken = [p for p in [*mine, *params, *(bin_path_for(p) for p in params)] if p.exists()]
    if taken:
        raise SrpruneError(f"{taken[0]} already exists; pass --force to overwrite it")


def _export_ncnn(model: SRModel | OnnxModel, param: Path, input_size: tuple[int, int],
                 force: bool, label: str, threads: int) -> Any:
    """The ncnn pair for one model, parity checked at ``input_size`` (the size timed)."""
    from srprune.measure.ncnn_export import export_ncnn

    assert isinstance(model, SRModel)  # _check_ncnn_ready refused .onnx files
    return export_ncnn(model, param, input_size, force=force, name=label, threads=threads,
                       second=False)


def _time(paths: list[Path], params: list[Path], runtimes: tuple[str, ...],
          input_size: tuple[int, int], labels: list[str], threads: int, runs: int,
          warmup: int, ncnn_fp16: bool, extra: list[tuple[str, Callable[[], object]]],
          step: Callable[[], None]) -> tuple[list[LatencyResult], list[LatencyResult]]:
    """Main results (the models' then ``extra``'s) and ncnn's beside ORT (empty otherwise).

    ORT alone or with ncnn: :func:`ort_latency`, ncnn's calls joining its rounds as extras on
    the same input; ncnn alone: :func:`ncnn_latency` under the same protocol.
    """
    from srprune.measure.ncnn_runtime import ncnn_latency, ncnn_runners

    if "ort" not in runtimes:
        return ncnn_latency(params, input_size, labels, threads, runs, warmup, fp16=ncnn_fp16,
                            on_step=step, extra=extra), []
    if "ncnn" not in runtimes:
        return ort_latency(paths, input_size, labels, threads, runs, warmup, on_step=step,
                           extra=extra), []
    x = random_input(input_size)  # ort_latency's input (same size, range and seed)
    fns = ncnn_runners(params, x, threads, ncnn_fp16)
    side = [(f"ncnn {label}", fn) for label, fn in zip(labels, fns, strict=True)]
    timed = ort_latency(paths, input_size, labels, threads, runs, warmup, on_step=step,
                        extra=[*side, *extra])
    n = len(labels)
    ncnn = timed[n:2 * n]
    base = ncnn[0].stats.median
    ncnn = [dataclasses.replace(r, backend="ncnn", speedup=base / r.stats.median) for r in ncnn]
    return [*timed[:n], *timed[2 * n:]], ncnn


def add_roofline(records: Sequence[BenchRecord], roofline: Roofline) -> None:
    """Add standalone SGEMM peaks to each record's ``roofline``.

    Records timed with ``benchmark(roofline=True)`` keep their interleaved peak and efficiency;
    the others are rated against the standalone peak at their thread count.
    """
    for rec in records:
        data = dict(rec.roofline or {})
        if "peak_gflops" not in data:
            peak = roofline.peak(rec.threads)
            efficiency = None if rec.gflops is None else rec.gflops / peak
            data.update(peak_gflops=peak, efficiency=efficiency,
                        peak_source="standalone onnxruntime MatMul")
        rec.roofline = {**data, **roofline.as_dict()}


def _onnx_cost(model: OnnxModel, input_size: tuple[int, int], label: str) -> Cost:
    """Params and MACs of an ONNX file's graph (``paper_macs`` has no graph count)."""
    if model.fixed_size is not None and tuple(input_size) != model.fixed_size:
        h, w = model.fixed_size
        raise SrpruneError(f"{label} only takes {h}x{w} inputs (its graph has a fixed size); "
                           f"pass --input-size {h} {w}")
    return Cost(model.params, model.macs(input_size), None, tuple(input_size))  # type: ignore[arg-type]
