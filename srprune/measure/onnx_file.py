"""An exported ONNX file used as a model: checked on load, its scale, cost and an upscaler.

``srprune bench`` and ``srprune eval`` take ``.onnx`` files (FP32 exports or INT8 QDQ
models) through :func:`open_onnx`. Counts come from the graph itself:

* ``params``: elements of the constant weights and biases of ``Conv``, ``ConvTranspose``,
  ``Gemm`` and ``MatMul`` nodes, read through a ``DequantizeLinear`` for INT8 weights (so an
  INT8 model counts as many parameters as its FP32 export).
* ``macs``: the same convention as :mod:`srprune.measure.cost` (kernel area x input channels
  per group x output elements of every conv, ``Gemm``/``MatMul`` multiply-accumulates), from
  ONNX shape inference at one input size; ``None`` when shapes cannot be inferred.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from srprune.errors import SrpruneError
from srprune.measure.session import make_session

WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
PROBE = 16  # LR side used to find the scale of a graph with symbolic height and width


def is_onnx_path(spec: str) -> bool:
    """True when a model argument names an ONNX file (by its suffix)."""
    return str(spec).lower().endswith(".onnx")


@dataclass
class OnnxModel:
    """A checked ONNX SR model: ``lr`` (N, 3, H, W) in 0..255 -> ``sr`` (N, 3, sH, sW)."""

    path: Path
    scale: int
    input_name: str
    fixed_size: tuple[int, int] | None  # (H, W) when the graph only takes one size
    params: int
    rgb_range: float = 255.0

    def upscaler(self, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
        """An ``LR HxWx3 float32 -> SR HxWx3`` function on one ORT session (clipped to 0..255)."""
        session = make_session(self.path, threads)

        def run(lr: np.ndarray) -> np.ndarray:
            x = np.ascontiguousarray(np.asarray(lr, dtype=np.float32).transpose(2, 0, 1)[None])
            sr = session.run(None, {self.input_name: x})[0][0]
            return np.clip(sr, 0.0, self.rgb_range).transpose(1, 2, 0)

        return run

    def macs(self, input_size: tuple[int, int]) -> int | None:
        """Conv/Gemm/MatMul multiply-accumulates at ``input_size`` (batch 1), or ``None``."""
        return graph_macs(self.path, input_size)


def load_graph(path: str | Path) -> onnx.ModelProto:
    """The ONNX model in ``path``, checked; one-line SrpruneError when it is not one."""
    path = Path(path)
    if path.is_dir():
        raise SrpruneError(f"{path} is a folder, not an ONNX file")
    if not path.is_file():
        raise SrpruneError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError ...
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        raise SrpruneError(f"{path} is not a readable ONNX model ({reason[:120]})") from None
    return model


def open_onnx(path: str | Path, threads: int = 1) -> OnnxModel:
    """Check an ONNX SR model file and find its scale by one run of ONNX Runtime."""
    path = Path(path)
    model = load_graph(path)
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise SrpruneError(f"{path}: expected one input and one output (an SR model), got "
                           f"{len(graph.input)} and {len(graph.output)}")
    dims = graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise SrpruneError(f"{path}: the input is not an image batch (N, 3, H, W)")
    fixed = tuple(d.dim_value for d in dims[2:]) if all(d.HasField("dim_value")
                                                         for d in dims[2:]) else None
    size = fixed or (PROBE, PROBE)
    session = make_session(path, threads)
    x = np.zeros((1, 3, *size), dtype=np.float32)
    try:
        out = session.run(None, {session.get_inputs()[0].name: x})[0]
    except Exception as exc:  # ORT's own exception classes
        text = str(exc).strip().splitlines()
        raise SrpruneError(f"ONNX Runtime cannot run {path}: "
                           f"{text[0] if text else type(exc).__name__}") from None
    scale = out.shape[2] // size[0] if out.ndim == 4 else 0
    if out.ndim != 4 or out.shape[1] != 3 or scale < 1 or out.shape[2:] != (
            size[0] * scale, size[1] * scale):
        raise SrpruneError(f"{path}: input {'x'.join(map(str, x.shape))} gives output "
                           f"{'x'.join(map(str, out.shape))}, not an SR image batch")
    return OnnxModel(path, scale, graph.input[0].name, fixed, graph_params(model))


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def graph_params(model: onnx.ModelProto) -> int:
    """Elements of the constant weights/biases of the weight ops (through DequantizeLinear)."""
    inits = _initializers(model)
    dequant = {n.output[0]: n.input[0] for n in model.graph.node
               if n.op_type == "DequantizeLinear"}
    seen: set[str] = set()
    total = 0
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        for name in node.input[1:]:
            source = dequant.get(name, name)
            if source in inits and source not in seen:
                seen.add(source)
                total += math.prod(inits[source].dims)
    return total


def graph_macs(path: str | Path, input_size: tuple[int, int]) -> int | None:
    """Multiply-accumulates of the weight ops at ``input_size``, from ONNX shape inference."""
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, *input_size), strict=True):
        dim.Clear()
        dim.dim_value = value
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # shape inference gives up on some graphs: then there is no count
        return None
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None
                       for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = 0
    for node in inferred.graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        out, weight = shapes.get(node.output[0]), shapes.get(node.input[1])
        if not out or not weight or None in out or None in weight:
            return None
        if node.op_type in ("Conv", "ConvTranspose"):
            if node.op_type == "Conv":  # weight (Cout, Cin/g, kh, kw): per output element
                total += math.prod(out) * math.prod(weight[1:])
            else:  # ConvTranspose weight (Cin, Cout/g, kh, kw): per input element
                inp = shapes.get(node.input[0])
                if not inp or None in inp:
                    return None
                total += math.prod(inp) * math.prod(weight[1:])
        else:  # Gemm / MatMul: output elements x the reduced dimension
            reduced = weight[0] if len(weight) >= 2 else weight[-1]
            total += math.prod(out) * reduced
    return total

