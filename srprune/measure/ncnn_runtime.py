"""ncnn CPU inference and timing, under the same protocol as ONNX Runtime's.

ncnn is what Android/desktop SR apps run (``.param`` + ``.bin``); its pip wheel (``ncnn``)
runs those files on the CPU here. Settings (see :mod:`srprune.measure.latency` for ORT's):

* Vulkan off, ``num_threads`` = ``--threads``, ``openmp_blocktime = 0``: idle OpenMP workers
  sleep at once instead of spinning for ncnn's default 20 ms, which would hold a core while
  the next model (or ORT, interleaved) runs, like ORT's ``allow_spinning = 0``;
* float32 by default (``use_fp16_*``/``use_bf16_*`` off): the precision whose parity is
  checked and the one ORT's FP32 numbers use. ``fp16=True`` keeps ncnn's own defaults
  (its float16 options on, bfloat16 off), as apps usually run; on x86 CPUs, AVX512-FP16
  included, ncnn 1.0.20261020 computed bit-identical outputs with them (measured on SPAN x4);
* the timing input is :func:`~srprune.measure.session.random_input`'s image-like field:
  ncnn does not flush subnormal floats, and uniform noise made them 15 % of a pruned SPAN's
  sigmoid outputs (0.95x speed-up instead of 1.45x);
* one call = a float32 NCHW array in, a float32 NCHW array out (the input is copied into an
  ncnn Mat, one extractor per image, the output copied back), as ORT's ``session.run`` is.

The input Mat is always a copy: an ncnn Mat that wraps a numpy buffer crashed ncnn 1.0.20261020
(segmentation fault) as soon as the first layer ran in place on it (a scalar BinaryOp).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from srprune.errors import SrpruneError
from srprune.measure.latency import LatencyResult, LatencyStats, Timings, time_interleaved
from srprune.measure.session import random_input

NCNN_INSTALL = "pip install ncnn"
PRECISION_OPTIONS = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic",
                     "use_bf16_packed", "use_bf16_storage")


def require_ncnn() -> ModuleType:
    """The ``ncnn`` module, or a one-line SrpruneError saying how to install it."""
    try:
        import ncnn
    except ImportError:
        raise SrpruneError(f"ncnn is not installed; `{NCNN_INSTALL}` adds its CPU "
                           "runtime") from None
    return ncnn


def ncnn_version() -> str | None:
    """The installed ncnn version (None when ncnn is missing)."""
    try:
        import ncnn
    except ImportError:
        return None
    return str(getattr(ncnn, "__version__", "unknown"))


def bin_path_for(param_path: str | Path) -> Path:
    """The weights file beside an ncnn ``.param`` (``x.param`` -> ``x.bin``)."""
    return Path(param_path).with_suffix(".bin")


def layer_types(param_path: str | Path) -> list[str]:
    """The layer type of every layer line in an ncnn ``.param`` file, in order."""
    try:
        lines = Path(param_path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SrpruneError(f"cannot read {param_path}: {exc}") from None
    return [line.split()[0] for line in lines[2:] if line.strip()]


def unsupported_layers(param_path: str | Path) -> dict[str, int]:
    """Layer types in ``param_path`` that this ncnn cannot create, with their counts (pnnx
    leaves operations it could not lower under their torch names, e.g. ``pnnx.Expression``)."""
    ncnn = require_ncnn()
    counts: dict[str, int] = {}
    for kind in layer_types(param_path):
        if ncnn.layer_to_index(kind) < 0:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def make_net(param_path: str | Path, threads: int = 1, fp16: bool = False) -> Any:
    """An ``ncnn.Net`` with the protocol's settings, ``param_path`` and its ``.bin`` loaded."""
    ncnn = require_ncnn()
    if threads < 1:
        raise SrpruneError(f"thread count must be at least 1, got {threads}")
    param, weights = Path(param_path), bin_path_for(param_path)
    for path in (param, weights):
        if not path.is_file():
            raise SrpruneError(f"ncnn file not found: {path}")
    bad = unsupported_layers(param)
    if bad:
        raise SrpruneError(f"ncnn cannot run {param}: unknown layer type(s) "
                           + ", ".join(f"{k} ({n})" for k, n in sorted(bad.items())))
    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    opt.num_threads = threads
    opt.openmp_blocktime = 0
    opt.lightmode = True
    if not fp16:
        for option in PRECISION_OPTIONS:
            if hasattr(opt, option):
                setattr(opt, option, False)
    if net.load_param(str(param)) != 0:
        raise SrpruneError(f"ncnn cannot load {param} (not an ncnn .param file, or one this "
                           f"ncnn {ncnn_version()} does not read)")
    if net.load_model(str(weights)) != 0:
        raise SrpruneError(f"ncnn cannot load {weights} (truncated, or from another model)")
    if len(net.input_names()) != 1 or len(net.output_names()) != 1:
        raise SrpruneError(f"{param} has {len(net.input_names())} inputs and "
                           f"{len(net.output_names())} outputs; an SR model has one of each")
    return net


class NcnnRunner:
    """Calls one ncnn model like an ORT session: (N, 3, H, W) float32 in, (N, C, sH, sW) out."""

    def __init__(self, param_path: str | Path, threads: int = 1, fp16: bool = False) -> None:
        self.ncnn = require_ncnn()
        self.path = Path(param_path)
        self.threads, self.fp16 = threads, fp16
        self.net = make_net(param_path, threads, fp16)
        self.input_name = self.net.input_names()[0]
        self.output_name = self.net.output_names()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise SrpruneError(f"ncnn input must be (N, C, H, W), got shape {x.shape}")
        return np.stack([self.run_one(np.ascontiguousarray(img, dtype=np.float32))
                         for img in x])

    def run_one(self, img: np.ndarray) -> np.ndarray:
        """One (C, H, W) image; a copy of the input goes in (see the module docstring)."""
        mat = self.ncnn.Mat(img).clone()
        ex = self.net.create_extractor()
        if ex.input(self.input_name, mat) != 0:
            raise SrpruneError(f"ncnn rejected the input of {self.path}")
        ret, out = ex.extract(self.output_name)
        if ret != 0:
            raise SrpruneError(f"ncnn failed to run {self.path} on a {img.shape} input "
                               f"(error {ret})")
        return np.array(out, dtype=np.float32)


def ncnn_runners(params: Sequence[str | Path], x: np.ndarray, threads: int = 1,
                 fp16: bool = False) -> list[Callable[[], object]]:
    """One no-argument call per model on the fixed input ``x``, for interleaved timing (e.g.
    as ``ort_latency(extra=...)``, so ncnn and ORT share the rounds)."""
    runners = [NcnnRunner(p, threads, fp16) for p in params]
    return [lambda r=r: r(x) for r in runners]


def ncnn_latency(params: Sequence[str | Path], input_size: tuple[int, int],
                 names: Sequence[str] | None = None, threads: int = 1, runs: int = 20,
                 warmup: int = 3, batch: int = 1, rgb_range: float = 255.0, seed: int = 0,
                 fp16: bool = False, on_step: Callable[[], None] | None = None,
                 extra: Sequence[tuple[str, Callable[[], object]]] = ()
                 ) -> list[LatencyResult]:
    """Interleaved ncnn CPU latency of several models on ORT's benchmark input.

    The same protocol as :func:`srprune.measure.latency.ort_latency`: one fixed-seed input,
    warm-up rounds, then rounds that call every model once in order (``extra`` pairs after
    them, e.g. the SGEMM reference), wall and process CPU time, GC paused.
    """
    if not params:
        raise ValueError("no models to time")
    names = list(names) if names is not None else [f"model{i}" for i in range(len(params))]
    if len(names) != len(params):
        raise ValueError(f"{len(names)} names for {len(params)} models")
    x = random_input(input_size, batch, rgb_range, seed)
    fns = ncnn_runners(params, x, threads, fp16)
    timings = time_interleaved([*fns, *(fn for _, fn in extra)], runs, warmup, on_step)
    results = results_from_timings([*names, *(n for n, _ in extra)], "ncnn", threads,
                                   tuple(x.shape), timings)
    return results


def results_from_timings(names: Sequence[str], backend: str, threads: int,
                         shape: tuple[int, ...], timings: Timings) -> list[LatencyResult]:
    """Latency results from interleaved timings; speed-up relative to the first."""
    pairs = list(zip(timings.wall_ms, timings.cpu_ms, strict=True))
    stats = [LatencyStats.from_samples(w, c) for w, c in pairs]
    base = stats[0].median
    return [LatencyResult(n, backend, threads, shape, st, base / st.median, list(w),
                          LatencyStats.from_samples(c))
            for n, st, (w, c) in zip(names, stats, pairs, strict=True)]
