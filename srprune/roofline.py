"""This machine's measured SGEMM throughput, and how close a model's latency comes to it.

The "peak" is not a datasheet number: it is the best float32 matrix-multiply throughput
``torch.matmul`` reaches here (square sizes 1024 and 2048, best of a few repeats) with a
given number of threads. A convolution network's achieved rate is ``2 * MACs / latency``
(MACs = conv/linear multiply-accumulates, see ``srprune.cost``); efficiency is achieved/peak.
threadpoolctl is not a dependency, so numpy's BLAS threads cannot be set; torch's can.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

DEFAULT_SIZES = (1024, 2048)


def available_cpus() -> int:
    """CPUs this process may run on (respects ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def measure_sgemm(threads: int, sizes: Sequence[int] = DEFAULT_SIZES,
                  repeats: int = 3) -> tuple[float, float]:
    """(best float32 ``matmul`` GFLOP/s, CPU/wall time of that call) with ``threads`` threads.

    CPU/wall near ``threads`` means the call had the CPUs to itself; far below, the machine
    was busy and the peak is underestimated.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best, best_ratio = 0.0, 0.0
        gen = torch.Generator().manual_seed(0)
        for n in sizes:
            a = torch.rand(n, n, generator=gen)
            b = torch.rand(n, n, generator=gen)
            torch.matmul(a, b)  # warm-up: thread pool start, packing buffers
            for _ in range(repeats):
                cpu_start = time.process_time()
                start = time.perf_counter()
                torch.matmul(a, b)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu_start
                if 2.0 * n**3 / elapsed / 1e9 > best:
                    best, best_ratio = 2.0 * n**3 / elapsed / 1e9, cpu / elapsed
        return best, best_ratio
    finally:
        torch.set_num_threads(previous)


def sgemm_gflops(threads: int, sizes: Sequence[int] = DEFAULT_SIZES, repeats: int = 3) -> float:
    """Best float32 ``matmul`` GFLOP/s over ``sizes`` x ``repeats`` with ``threads`` threads."""
    return measure_sgemm(threads, sizes, repeats)[0]


@dataclass
class Roofline:
    """Measured SGEMM GFLOP/s per thread count."""

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
                "sizes": list(self.sizes), "method": "torch.matmul float32, best of 3"}


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
