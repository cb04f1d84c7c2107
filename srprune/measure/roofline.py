"""This machine's measured SGEMM throughput, and how close a model's latency comes to it.

The "peak" is not a datasheet number: it is the float32 matrix-multiply rate that ONNX
Runtime's own kernels (MLAS, the library under its convolutions) reach here, timed with
the same session settings and thread count as the models: a one-node ``MatMul`` ONNX graph,
n x n by n x n, median of several products. A convolution network's achieved rate is
``2 * MACs / latency`` (MACs = conv/linear multiply-accumulates, see ``srprune.measure.cost``);
efficiency = achieved / peak.

``srprune bench --roofline`` times the SGEMM graph interleaved with the models (same
moments, so host frequency swings hit both) and also reports standalone peaks at one thread
and at all CPUs. ORT's threads are set per session, so numpy's BLAS (and threadpoolctl)
play no part.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from srprune.measure.session import make_session

DEFAULT_SIZES = (1024, 2048)
INTERLEAVED_N = 1024
REPEATS = 8


def available_cpus() -> int:
    """CPUs this process may run on (respects ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sgemm_model(path: str | Path, n: int) -> Path:
    """Write a one-node ONNX graph ``c = a @ b`` (a: input, b: constant), both n x n float32."""
    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.random((n, n), dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])], [b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return Path(path)


def sgemm_runner(path: str | Path, n: int, threads: int) -> Callable[[], object]:
    """One SGEMM product per call, through an ORT session with the protocol's settings."""
    session = make_session(path, threads)
    feed = {"a": np.random.default_rng(1).random((n, n), dtype=np.float32)}
    return lambda: session.run(None, feed)


def sgemm_rate(n: int, median_ms: float) -> float:
    """GFLOP/s of one n x n x n product taking ``median_ms``."""
    return 2.0 * n**3 / (median_ms * 1e-3) / 1e9


def measure_sgemm(threads: int, sizes: Sequence[int] = DEFAULT_SIZES,
                  repeats: int = REPEATS) -> tuple[float, float]:
    """(GFLOP/s, CPU/wall time) of ORT float32 ``MatMul`` with ``threads`` threads.

    Per size, the median of ``repeats`` products after one warm-up (medians, like the model
    latencies: a best-of catches short turbo bursts); the fastest size wins. CPU/wall well
    below ``threads`` means the machine was busy and the peak is underestimated.
    """
    best, best_ratio = 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="srprune-sgemm-") as folder:
        for n in sizes:
            run = sgemm_runner(sgemm_model(Path(folder) / f"sgemm{n}.onnx", n), n, threads)
            run()
            walls, cpus = [], []
            for _ in range(repeats):
                cpu_start = time.process_time()
                start = time.perf_counter()
                run()
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu_start)
            rate = sgemm_rate(n, statistics.median(walls) * 1e3)
            if rate > best:
                best, best_ratio = rate, sum(cpus) / sum(walls)
    return best, best_ratio


@dataclass
class Roofline:
    """Standalone SGEMM GFLOP/s (and the CPU/wall time of that measurement) per thread count."""

    sgemm_gflops: dict[int, float]
    sizes: tuple[int, ...] = DEFAULT_SIZES
    cpu_per_wall: dict[int, float] = field(default_factory=dict)

    def peak(self, threads: int) -> float:
        """Peak for ``threads`` threads (measured on demand if missing)."""
        if threads not in self.sgemm_gflops:
            self.sgemm_gflops[threads], self.cpu_per_wall[threads] = measure_sgemm(
                threads, self.sizes)
        return self.sgemm_gflops[threads]

    def as_dict(self) -> dict:
        return {"sgemm_gflops": {str(t): g for t, g in sorted(self.sgemm_gflops.items())},
                "sgemm_cpu_per_wall": {str(t): r for t, r in sorted(self.cpu_per_wall.items())},
                "sizes": list(self.sizes),
                "method": f"onnxruntime MatMul float32, median of {REPEATS}, fastest size"}


def measure_roofline(threads: Sequence[int] | None = None,
                     sizes: Sequence[int] = DEFAULT_SIZES) -> Roofline:
    """SGEMM peak with 1 thread and with all available CPUs (or the given counts)."""
    counts = sorted(set(threads if threads is not None else (1, available_cpus())))
    roof = Roofline({}, tuple(sizes))
    for t in counts:
        roof.peak(t)
    return roof


def achieved_gflops(macs: int, latency_ms: float) -> float:
    """Conv/linear arithmetic rate of one inference: 2 * MACs per latency, in GFLOP/s."""
    return 2.0 * macs / (latency_ms * 1e-3) / 1e9


def efficiency(macs: int, latency_ms: float, peak_gflops: float) -> float:
    """Fraction of the measured SGEMM peak that a model's latency achieves."""
    return achieved_gflops(macs, latency_ms) / peak_gflops
