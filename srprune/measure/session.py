"""ONNX Runtime CPU sessions with the latency protocol's settings, and the benchmark input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from srprune.errors import SrpruneError


def make_session(path: str | Path, threads: int = 1,
                 profile_prefix: str | Path | None = None) -> ort.InferenceSession:
    """A CPU session with the protocol's settings (``threads`` intra-op threads, >= 1);
    ORT's profiler on, writing next to ``profile_prefix``, when one is given."""
    if threads < 1:
        raise SrpruneError(f"thread count must be at least 1, got {threads}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception classes
        text = str(exc).strip().splitlines()
        raise SrpruneError(f"ONNX Runtime cannot load {path}: "
                           f"{text[0] if text else type(exc).__name__}") from None


def random_input(input_size: tuple[int, int], batch: int = 1, rgb_range: float = 255.0,
                 seed: int = 0) -> np.ndarray:
    """The benchmark input: (batch, 3, H, W) float32 in 0..rgb_range, fixed by ``seed``, and
    image-like: a smooth random field (noise at 1/8 of the size, bilinearly enlarged) plus
    fine noise of 1/8 of the range.

    Not uniform noise: no SR net meets it, and on real weights it drives activations to
    extremes (SPAN x4's outputs reached +-2.6e5). ncnn, which does not flush subnormal floats,
    then timed a ``cp``-pruned SPAN x4 at 0.95x the unpruned one where photo crops give
    1.46x (ORT: 1.52x against 1.55x); benchmarks/RESULTS.md.
    """
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    h, w = input_size
    coarse = torch.from_numpy(rng.random((batch, 3, h // 8 + 2, w // 8 + 2)))
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True).numpy()
    fine = rng.random((batch, 3, h, w))
    x = (0.875 * smooth + 0.125 * fine) * rgb_range
    return np.ascontiguousarray(x.astype(np.float32))
