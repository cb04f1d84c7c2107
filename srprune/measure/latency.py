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

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.session import make_session, random_input

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
