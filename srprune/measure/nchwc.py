"""ONNX Runtime's blocked (NCHWc) convolution layout on this CPU: which widths it accepts.

With graph optimizations on, ORT's CPU provider rewrites convolutions to its blocked NCHWc
kernels (channel blocks of 8 or 16, output channels padded up to the block) and keeps the
tensors between them blocked. A conv whose *input* width the blocked kernels do not accept
runs on the slower NCHW path instead (im2col + SGEMM, ``FusedConv`` in a profile), between
layout reorders, and so does every conv after it that reads such a tensor. Which widths are
accepted is a property of the ORT build and the CPU (ORT 1.32 on an AVX-512 CPU: every
width up to 16, then multiples of 4); profiles and measurements: ``benchmarks/ort_profile.py``
and RESULTS.md, "Why narrow and trunk-pruned convolutions lose efficiency".

:func:`nchwc_alignment` asks ORT itself: it optimizes two-conv graphs and checks which
widths the second conv is rewritten at.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from torch import nn

NCHWC_DOMAIN = "com.microsoft.nchwc"


def _second_conv_is_blocked(channels: int, folder: Path) -> bool:
    """Does ORT rewrite the second conv of ``conv(3->c) -> conv(c->c)`` to NCHWc?"""
    net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1),
                        nn.Conv2d(channels, channels, 3, padding=1)).eval()
    source, optimized = folder / f"probe{channels}.onnx", folder / f"probe{channels}-opt.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(source), dynamo=False,
                          opset_version=17, input_names=["x"])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(optimized)
    so.log_severity_level = 3
    ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
    convs = [n for n in onnx.load(str(optimized)).graph.node if n.op_type == "Conv"]
    return len(convs) == 2 and convs[1].domain == NCHWC_DOMAIN


PROBES = {1: (17, 19), 2: (18, 22), 4: (20, 28), 8: (24, 40), 16: (48,)}  # > 16, off 2a


@functools.lru_cache(maxsize=1)
def nchwc_alignment() -> int:
    """The smallest ``a`` in 1, 2, 4, 8, 16 whose multiples ORT's NCHWc convs accept as
    input widths here (1 also where ORT has no blocked layout: then no width is better).

    For each ``a``, widths above 16 that are multiples of ``a`` but not of ``2 a`` are
    probed; the first ``a`` whose probes are all rewritten is the answer.
    """
    with tempfile.TemporaryDirectory(prefix="srprune-nchwc-") as tmp:
        for multiple, widths in PROBES.items():
            if all(_second_conv_is_blocked(w, Path(tmp)) for w in widths):
                return multiple
    return 1


def aligned(width: int, multiple: int) -> bool:
    """Is ``width`` a multiple of ``multiple`` (every width is, for 1)?"""
    return multiple <= 1 or width % multiple == 0
