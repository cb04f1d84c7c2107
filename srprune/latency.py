"""CPU latency protocol: ONNX Runtime (and optionally torch eager), interleaved, robust stats.

Protocol (see the README section on ``srprune bench``):

* one ORT session per model, CPU provider, explicit ``intra_op_num_threads`` (default 1),
  ``inter_op_num_threads = 1``, sequential execution, ``ORT_ENABLE_ALL`` graph optimisation,
  worker threads that sleep instead of spinning when idle (``session.intra_op.allow_spinning
  = 0``): with several multi-threaded sessions interleaved, an idle session's spinning workers
  hold a core while the next model runs (two threads on 2 cores: an n=1024 MatMul rotated over
  three sessions ran at 150 GFLOP/s with spinning, 361 without);
* the same float32 input (fixed seed, values in 0..rgb_range) for every model, created once;
* warm-up rounds, then ``runs`` timed rounds; every round calls each model once in order
  (A B C A B C ...) so slow machine drift hits all models alike; ``time.perf_counter``;
  the garbage collector is paused while timing;
* median, p10 and p90 per model; speed-up = median of the first model / median of each;
* beside wall time, the process CPU time of every call: CPU/wall far below the thread count
  flags a busy machine (the wall times are then inflated). At one thread the CPU-time median
  is far less sensitive to other processes (on a 2-core VM shared 2-3 ways it grew 5-10 %
  while wall time tripled), but it is no substitute for a quiet machine.
"""

from __future__ import annotations

import contextlib
import gc
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.models.srmodel import SRModel
from srprune.roofline import (
    INTERLEAVED_N,
    Roofline,
    achieved_gflops,
    sgemm_model,
    sgemm_rate,
    sgemm_runner,
)

Step = Callable[[], None]


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one model's timed runs, in milliseconds.

    ``cpu_per_wall`` is the process CPU time over the wall time of those runs: about the
    thread count on a quiet machine (1.0 at one thread); well below it means the process was
    waiting for a CPU, i.e. the machine was busy and the latencies are inflated.
    """

    median: float
    p10: float
    p90: float
    mean: float
    min: float
    max: float
    runs: int
    cpu_per_wall: float | None = None

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float],
                     cpu_ms: Sequence[float] | None = None) -> LatencyStats:
        if not samples_ms:
            raise ValueError("no samples")
        a = np.asarray(samples_ms, dtype=np.float64)
        p10, med, p90 = np.percentile(a, [10, 50, 90])
        ratio = float(np.sum(cpu_ms) / a.sum()) if cpu_ms is not None and a.sum() > 0 else None
        return cls(float(med), float(p10), float(p90), float(a.mean()), float(a.min()),
                   float(a.max()), len(a), ratio)

    def as_dict(self) -> dict:
        return {"median": self.median, "p10": self.p10, "p90": self.p90}


@dataclass
class Timings:
    """Per-model wall-clock and process-CPU times of the timed calls, in ms."""

    wall_ms: list[list[float]]
    cpu_ms: list[list[float]]


@dataclass
class LatencyResult:
    """One model's latency in one comparison; ``speedup`` is relative to the first model."""

    name: str
    backend: str
    threads: int
    input_shape: tuple[int, ...]
    stats: LatencyStats
    speedup: float
    samples_ms: list[float] = field(default_factory=list, repr=False)
    cpu_stats: LatencyStats | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "backend": self.backend, "threads": self.threads,
                "input_shape": list(self.input_shape), "latency_ms": self.stats.as_dict(),
                "mean_ms": self.stats.mean, "runs": self.stats.runs, "speedup": self.speedup,
                "cpu_per_wall": self.stats.cpu_per_wall,
                "cpu_time_ms": self.cpu_stats.as_dict() if self.cpu_stats else None}


def make_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with the protocol's settings (``threads`` intra-op threads, >= 1)."""
    if threads < 1:
        raise SrpruneError(f"thread count must be at least 1, got {threads}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception classes
        text = str(exc).strip().splitlines()
        raise SrpruneError(f"ONNX Runtime cannot load {path}: "
                           f"{text[0] if text else type(exc).__name__}") from None


def random_input(input_size: tuple[int, int], batch: int = 1, rgb_range: float = 255.0,
                 seed: int = 0) -> np.ndarray:
    """The benchmark input: (batch, 3, H, W) float32 uniform in 0..rgb_range."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 3, *input_size), dtype=np.float32) * np.float32(rgb_range)
    return np.ascontiguousarray(x)


def time_interleaved(fns: Sequence[Callable[[], object]], runs: int, warmup: int,
                     on_step: Step | None = None) -> Timings:
    """Call each function once per round, in order; return per-function times in ms.

    ``warmup`` untimed rounds come first. ``on_step`` is called after every single call.
    """
    if runs < 1 or warmup < 0:
        raise SrpruneError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    out = Timings([[] for _ in fns], [[] for _ in fns])
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(warmup + runs):
            for i, fn in enumerate(fns):
                cpu_start = time.process_time()
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu_start
                if round_ >= warmup:
                    out.wall_ms[i].append(elapsed * 1e3)
                    out.cpu_ms[i].append(cpu * 1e3)
                if on_step is not None:
                    on_step()
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def _results(names: Sequence[str], backend: str, threads: int, shape: tuple[int, ...],
             timings: Timings) -> list[LatencyResult]:
    pairs = list(zip(timings.wall_ms, timings.cpu_ms, strict=True))
    stats = [LatencyStats.from_samples(w, c) for w, c in pairs]
    base = stats[0].median
    return [LatencyResult(n, backend, threads, shape, st, base / st.median, w,
                          LatencyStats.from_samples(c))
            for n, st, (w, c) in zip(names, stats, pairs, strict=True)]


def _names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"model{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} names for {n} models")
    return list(names)


def ort_latency(paths: Sequence[str | Path], input_size: tuple[int, int],
                names: Sequence[str] | None = None, threads: int = 1, runs: int = 20,
                warmup: int = 3, batch: int = 1, rgb_range: float = 255.0, seed: int = 0,
                on_step: Step | None = None,
                extra: Sequence[tuple[str, Callable[[], object]]] = ()) -> list[LatencyResult]:
    """Interleaved ORT CPU latency of several ONNX files on one input.

    ``extra`` (name, function) pairs are timed in the same rounds, after the models, and
    their results follow the models' (used for the interleaved SGEMM reference).
    """
    if not paths:
        raise ValueError("no models to time")
    names = [*_names(names, len(paths)), *(name for name, _ in extra)]
    x = random_input(input_size, batch, rgb_range, seed)
    sessions = [make_session(p, threads) for p in paths]
    feeds = [{s.get_inputs()[0].name: x} for s in sessions]
    fns = [lambda s=s, f=f: s.run(None, f) for s, f in zip(sessions, feeds, strict=True)]
    timings = time_interleaved([*fns, *(fn for _, fn in extra)], runs, warmup, on_step)
    return _results(names, "onnxruntime", threads, x.shape, timings)


def torch_latency(modules: Sequence[nn.Module], input_size: tuple[int, int],
                  names: Sequence[str] | None = None, threads: int = 1, runs: int = 20,
                  warmup: int = 3, batch: int = 1, rgb_range: float = 255.0, seed: int = 0,
                  on_step: Step | None = None) -> list[LatencyResult]:
    """Interleaved torch eager latency (``inference_mode``, ``threads`` intra-op threads)."""
    if not modules:
        raise ValueError("no models to time")
    names = _names(names, len(modules))
    x = torch.from_numpy(random_input(input_size, batch, rgb_range, seed))
    modes = [m.training for m in modules]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for m in modules:
            m.eval()
        with torch.inference_mode():
            fns = [lambda m=m: m(x) for m in modules]
            timings = time_interleaved(fns, runs, warmup, on_step)
    finally:
        torch.set_num_threads(previous)
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)
    return _results(names, "torch", threads, tuple(x.shape), timings)


@dataclass
class BenchRecord:
    """Everything ``srprune bench`` reports for one model."""

    model: str
    scale: int
    params: int
    macs: int
    paper_macs: int
    input_size: tuple[int, int]
    threads: int
    runs: int
    warmup: int
    opset: int
    exporter: str
    parity_max_abs_diff: float
    latency: LatencyStats
    speedup: float
    gflops: float
    cpu_time: LatencyStats | None = None
    torch_latency: LatencyStats | None = None
    torch_speedup: float | None = None
    roofline: dict | None = None
    onnx_file: str | None = None

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
            "onnxruntime": ort.__version__,
        }
        if self.torch_latency is not None:
            data["torch_latency_ms"] = self.torch_latency.as_dict()
            data["torch_speedup"] = self.torch_speedup
        if self.roofline is not None:
            data["roofline"] = self.roofline
        if self.onnx_file is not None:
            data["onnx_file"] = self.onnx_file
        return data


def bench_steps(n_models: int, runs: int, warmup: int, with_torch: bool = False,
                roofline: bool = False) -> int:
    """How many times :func:`benchmark` calls ``on_step`` (for progress bars)."""
    timed = (n_models + roofline) + (n_models if with_torch else 0)
    return 2 * n_models + timed * (runs + warmup)


def onnx_file_names(labels: Sequence[str], scales: Sequence[int]) -> list[str]:
    """Distinct, filesystem-safe ONNX file names: ``<stem>-x<scale>.onnx``."""
    names: list[str] = []
    for i, (label, scale) in enumerate(zip(labels, scales, strict=True)):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(label).stem) or "model"
        name = f"{stem}-x{scale}.onnx"
        names.append(f"{stem}-x{scale}-{i}.onnx" if name in names else name)
    return names


def benchmark(models: Sequence[tuple[str, SRModel]], input_size: tuple[int, int],
              threads: int = 1, runs: int = 20, warmup: int = 3,
              onnx_dir: str | Path | None = None, force: bool = False,
              with_torch: bool = False, roofline: bool = False,
              on_step: Callable[[str], None] | None = None) -> list[BenchRecord]:
    """Cost, export + parity, then interleaved latency of ``(label, model)`` pairs.

    ONNX files go to ``onnx_dir`` (kept; existing files are refused unless ``force``) or to a
    temporary folder that is removed afterwards. Speed-ups are relative to the first model.
    ``roofline`` times an n=1024 SGEMM graph in the same rounds and rates each model against it.
    """
    from srprune.export import check_input_size, check_parity, export_onnx

    if not models:
        raise SrpruneError("no models to benchmark")
    step = on_step or (lambda _desc: None)
    labels = [label for label, _ in models]
    costs = [check_input_size(m, input_size, label) for label, m in models]
    with contextlib.ExitStack() as stack:
        if onnx_dir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="srprune-")))
        else:
            folder = Path(onnx_dir)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SrpruneError(f"cannot create ONNX folder {folder}: {exc}") from None
        paths = [folder / n for n in onnx_file_names(labels, [m.scale for _, m in models])]
        taken = [p for p in paths if p.exists()] if not force else []
        if taken:
            raise SrpruneError(f"{taken[0]} already exists; pass --force to overwrite it")
        exports, parities = [], []
        for (label, model), path in zip(models, paths, strict=True):
            exports.append(export_onnx(model, path, input_size, force=force, name=label))
            step(f"export {label}")
            parities.append(check_parity(model, path, input_size, threads=threads, name=label))
            step(f"parity {label}")
        extra = []
        if roofline:
            n = INTERLEAVED_N
            sgemm_path = sgemm_model(Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="srprune-sgemm-"))) / "sgemm.onnx", n)
            extra = [("sgemm", sgemm_runner(sgemm_path, n, threads))]
        timed = ort_latency(paths, input_size, labels, threads, runs, warmup,
                            on_step=lambda: step("onnxruntime"), extra=extra)
    eager = None
    if with_torch:
        eager = torch_latency([m.final_output_module() for _, m in models], input_size, labels,
                              threads, runs, warmup, on_step=lambda: step("torch"))
    records = []
    for i, (label, model) in enumerate(models):
        cost, res = costs[i], timed[i]
        rec = BenchRecord(
            label, model.scale, cost.params, cost.macs, cost.paper_macs, tuple(input_size),
            threads, runs, warmup, exports[i].opset, exports[i].exporter,
            parities[i].max_abs_diff, res.stats, res.speedup,
            achieved_gflops(cost.macs, res.stats.median), res.cpu_stats,
            onnx_file=str(paths[i]) if onnx_dir is not None else None,
        )
        if eager is not None:
            rec.torch_latency, rec.torch_speedup = eager[i].stats, eager[i].speedup
        if roofline:
            peak = sgemm_rate(INTERLEAVED_N, timed[-1].stats.median)
            rec.roofline = {"peak_gflops": peak, "efficiency": rec.gflops / peak,
                            "peak_source": f"interleaved onnxruntime MatMul n={INTERLEAVED_N}"}
        records.append(rec)
    return records


def add_roofline(records: Sequence[BenchRecord], roofline: Roofline) -> None:
    """Add standalone SGEMM peaks to each record's ``roofline``.

    Records timed with ``benchmark(roofline=True)`` keep their interleaved peak and efficiency;
    the others are rated against the standalone peak at their thread count.
    """
    for rec in records:
        data = dict(rec.roofline or {})
        if "peak_gflops" not in data:
            peak = roofline.peak(rec.threads)
            data.update(peak_gflops=peak, efficiency=rec.gflops / peak,
                        peak_source="standalone onnxruntime MatMul")
        rec.roofline = {**data, **roofline.as_dict()}
