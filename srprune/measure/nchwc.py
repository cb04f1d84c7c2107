"""ONNX Runtime's blocked (NCHWc) convolution layout on this CPU: its block and the widths
it accepts.

With graph optimizations on, ORT's CPU provider rewrites convolutions to its blocked NCHWc
kernels (channel blocks of 8 on AVX2, 16 on AVX-512; output channels padded up to the block)
and keeps the tensors between them blocked. A conv whose *input* width the blocked kernels do
not accept runs on the slower NCHW path instead (im2col + SGEMM, ``FusedConv`` in a profile),
between layout reorders, and so does every conv after it that reads such a tensor. Which
widths are accepted is a property of the ORT build and the CPU (ORT 1.32 on an AVX-512 CPU:
every width up to 16, then multiples of 4); profiles and measurements:
``benchmarks/ort_profile.py`` and RESULTS.md, "Why narrow and trunk-pruned convolutions lose
efficiency".

Two probes ask ORT itself, on two-conv graphs built directly as ONNX (no torch export: the
whole probe takes well under a second) and optimized in a session:

* :func:`nchwc_alignment`: the smallest multiple whose widths the second conv is rewritten at
  (what the ``latency`` strategy keeps widths on);
* :func:`nchwc_block`: the channel block itself, read from the padded weights of a blocked
  conv (a width that is a multiple of it wastes no padded channel: what pruned widths default
  to, :func:`default_round_to`).

Both answers are cached per process and on disk (``$SRPRUNE_CACHE_DIR`` or
``~/.cache/srprune``, ``nchwc.json``, keyed by CPU model and ORT version), so only the first
run on a machine probes.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

NCHWC_DOMAIN = "com.microsoft.nchwc"
BLOCKS = (4, 8, 16, 32)  # block sizes MLAS could report (8: AVX2, 16: AVX-512)


def _two_convs(channels: int) -> onnx.ModelProto:
    """``conv(3->c) -> conv(c->c)``, 3x3, padding 1, on a 1x3x16x16 input, as ONNX."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.random((channels, c_in, 3, 3), dtype=np.float32),
                                       name) for name, c_in in (("w1", 3), ("w2", channels))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["h", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "nchwc-probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 16, 16])],
        weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _optimized_convs(channels: int, folder: Path) -> list[tuple[str, list[int]]]:
    """(domain, weight shape) of each conv of the probe graph once ORT has optimized it."""
    optimized = folder / f"probe{channels}-opt.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(optimized)
    so.log_severity_level = 3
    ort.InferenceSession(_two_convs(channels).SerializeToString(), so,
                         providers=["CPUExecutionProvider"])
    model = onnx.load(str(optimized))
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    return [(n.domain, shapes.get(n.input[1], [])) for n in model.graph.node
            if n.op_type == "Conv"]


def _second_conv_is_blocked(channels: int, folder: Path) -> bool:
    """Does ORT rewrite the second conv of ``conv(3->c) -> conv(c->c)`` to NCHWc?"""
    convs = _optimized_convs(channels, folder)
    return len(convs) == 2 and convs[1][0] == NCHWC_DOMAIN


PROBES = {1: (17, 19), 2: (18, 22), 4: (20, 28), 8: (24, 40), 16: (48,)}  # > 16, off 2a


def _probe_alignment(folder: Path) -> int:
    for multiple, widths in PROBES.items():
        if all(_second_conv_is_blocked(w, folder) for w in widths):
            return multiple
    return 1


def _probe_block(folder: Path) -> int:
    """The channel block: a blocked conv with 33 outputs has its weights padded to the next
    multiple of it (36, 40, 48 or 64 for 4, 8, 16 or 32)."""
    for domain, shape in _optimized_convs(33, folder):
        if domain == NCHWC_DOMAIN and shape:
            return next((b for b in BLOCKS if -(-33 // b) * b == shape[0]), 1)
    return 1


def _cache_file() -> Path:
    from srprune.measure.latency_table import cache_dir

    return cache_dir() / "nchwc.json"


def _machine() -> str:
    from srprune.measure.latency_table import cpu_model

    return f"{cpu_model()} | onnxruntime {ort.__version__}"


@functools.lru_cache(maxsize=1)
def _probed() -> dict[str, int]:
    """``{"alignment": a, "block": b}`` for this machine: from the disk cache, else probed
    (and written there; an unwritable cache is no error)."""
    path, key = _cache_file(), _machine()
    try:
        cached = json.loads(path.read_text()).get(key)
        if isinstance(cached, dict) and {"alignment", "block"} <= set(cached):
            return {"alignment": int(cached["alignment"]), "block": int(cached["block"])}
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    with tempfile.TemporaryDirectory(prefix="srprune-nchwc-") as tmp:
        found = {"alignment": _probe_alignment(Path(tmp)), "block": _probe_block(Path(tmp))}
    try:
        try:
            table = json.loads(path.read_text())
            table = table if isinstance(table, dict) else {}
        except (OSError, ValueError):
            table = {}
        table[key] = found
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(f".tmp{id(found)}")
        tmp_path.write_text(json.dumps(table, indent=1))
        tmp_path.replace(path)
    except OSError:
        pass
    return found


def nchwc_alignment() -> int:
    """The smallest ``a`` in 1, 2, 4, 8, 16 whose multiples ORT's NCHWc convs accept as
    input widths here (1 also where ORT has no blocked layout: then no width is better).

    For each ``a``, widths above 16 that are multiples of ``a`` but not of ``2 a`` are
    probed; the first ``a`` whose probes are all rewritten is the answer.
    """
    return _probed()["alignment"]


def nchwc_block() -> int:
    """ORT's NCHWc channel block here (16 on AVX-512, 8 on AVX2; 1 without a blocked
    layout): blocked convs pad their channels up to a multiple of it."""
    return _probed()["block"]


def default_round_to() -> int:
    """What pruned widths default to (``round_to`` "auto"): multiples of the NCHWc block,
    the widths the blocked kernels run without padding or falling back to NCHW (1 where ORT
    has no blocked layout here: any width is as fast)."""
    return max(nchwc_block(), nchwc_alignment()) if nchwc_block() > 1 else 1


def aligned(width: int, multiple: int) -> bool:
    """Is ``width`` a multiple of ``multiple`` (every width is, for 1)?"""
    return multiple <= 1 or width % multiple == 0
