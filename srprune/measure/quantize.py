"""INT8 with ONNX Runtime's own tools: pre-processing, static QDQ quantization, graph checks.

:class:`Int8Quantizer` runs ``quant_pre_process`` once, calibrates once (MinMax over the
calibration inputs, cached by ``quantize_static``'s ``calibration_cache_path``), then writes
QDQ models with per-channel int8 weights and uint8 or int8 activations, any set of nodes left
in FP32 (``nodes_to_exclude``). Re-quantizing with other exclusions reuses the cached ranges:
about a second for a small net instead of a new calibration.

In the QDQ format a tensor is quantized when any node next to it is: a node kept in FP32
computes with float weights and writes a float output, but reads a quantized input when the
node producing that input is quantized.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from srprune.errors import SrpruneError
from srprune.io.checkpoint import write_atomic

ACTIVATION_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class ArrayReader(CalibrationDataReader):
    """Feeds calibration inputs, one (1, 3, H, W) float32 array per call, under ``input_name``."""

    def __init__(self, input_name: str, inputs: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.inputs = [np.ascontiguousarray(a[None] if a.ndim == 3 else a, dtype=np.float32)
                       for a in inputs]
        self._next = iter(self.inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._next, None)
        return None if item is None else {self.input_name: item}

    def rewind(self) -> None:
        self._next = iter(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class Int8Settings:
    """How to quantize: QDQ, per-channel int8 weights, ``activations`` uint8 or int8."""

    activations: str = "uint8"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights, for CPUs without VNNI when saturation bites

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATION_TYPES:
            raise SrpruneError(f"activations must be one of {sorted(ACTIVATION_TYPES)}, "
                               f"got {self.activations!r}")

    def as_dict(self) -> dict:
        return {"format": "QDQ", "weights": "int8", "activations": self.activations,
                "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "calibration": "minmax"}


class Int8Quantizer:
    """One FP32 ONNX model, pre-processed and calibrated once, quantized as often as asked."""

    def __init__(self, fp32_path: str | Path, calibration: Sequence[np.ndarray],
                 workdir: str | Path, settings: Int8Settings | None = None) -> None:
        if not calibration:
            raise SrpruneError("INT8 calibration needs at least one input")
        self.settings = settings or Int8Settings()
        self.workdir = Path(workdir)
        self.pre_path = self.workdir / "preprocessed.onnx"
        self.cache_path = self.workdir / f"calibration-{self.settings.activations}.json"
        with _quiet():
            try:
                quant_pre_process(str(fp32_path), str(self.pre_path), skip_symbolic_shape=True)
            except Exception as exc:  # ORT's tools raise many types
                raise SrpruneError(f"ONNX Runtime's quant_pre_process failed on {fp32_path}: "
                                   f"{_first_line(exc)}") from None
        graph = onnx.load(str(self.pre_path)).graph
        self.input_name = graph.input[0].name
        self.nodes = [(n.name, n.op_type) for n in graph.node]
        self._producer = {out: n.name for n in graph.node for out in n.output}
        self._consumers: dict[str, list[str]] = {}
        for n in graph.node:
            for name in n.input:
                self._consumers.setdefault(name, []).append(n.name)
        self._first_input = {n.name: n.input[0] for n in graph.node if n.input}
        self.reader = ArrayReader(self.input_name, calibration)

    def weight_nodes(self) -> list[str]:
        """Names of the conv/linear nodes, in graph order: the candidates to keep in FP32."""
        return [name for name, op in self.nodes if op in WEIGHT_OPS]

    def float_group(self, node: str) -> list[str]:
        """``node`` with every node next to its input tensor (the producer and the other
        consumers): excluded together, the layer computes in FP32 on an unquantized input.
        """
        tensor = self._first_input[node]
        group = [node]
        producer = self._producer.get(tensor)
        for name in ([producer] if producer else []) + self._consumers.get(tensor, []):
            if name not in group:
                group.append(name)
        return group

    def quantize(self, out_path: str | Path, exclude: Sequence[str] = (),
                 force: bool = True) -> Path:
        """Write the QDQ model with ``exclude`` left in FP32 (atomic; first call calibrates)."""
        unknown = sorted(set(exclude) - {name for name, _ in self.nodes})
        if unknown:
            raise SrpruneError(f"no node named {unknown[0]!r} in the model")
        s = self.settings

        def write(tmp: Path) -> None:
            self.reader.rewind()
            with _quiet():
                quantize_static(
                    str(self.pre_path), str(tmp), self.reader, quant_format=QuantFormat.QDQ,
                    per_channel=s.per_channel, reduce_range=s.reduce_range,
                    activation_type=ACTIVATION_TYPES[s.activations],
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                    calibrate_method=CalibrationMethod.MinMax,
                    calibration_cache_path=str(self.cache_path),
                )

        try:
            return write_atomic(out_path, write, force)
        except SrpruneError:
            raise
        except Exception as exc:
            raise SrpruneError(f"ONNX Runtime's quantize_static failed: "
                               f"{_first_line(exc)}") from None


@dataclass
class QdqSummary:
    """What a quantized graph holds: Q/DQ node counts and the weight ops left in float."""

    quantize_linear: int
    dequantize_linear: int
    weight_ops: int
    float_weight_ops: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"QuantizeLinear": self.quantize_linear,
                "DequantizeLinear": self.dequantize_linear, "weight_ops": self.weight_ops,
                "float_weight_ops": list(self.float_weight_ops)}


def qdq_summary(path: str | Path) -> QdqSummary:
    """Count Q/DQ nodes and list the weight ops whose weight is not a DequantizeLinear output."""
    graph = onnx.load(str(path)).graph
    counts = Counter(n.op_type for n in graph.node)
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    weight_ops = [n for n in graph.node if n.op_type in WEIGHT_OPS]
    floats = [n.name for n in weight_ops if len(n.input) > 1 and n.input[1] not in dequantized]
    return QdqSummary(counts["QuantizeLinear"], counts["DequantizeLinear"], len(weight_ops),
                      floats)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantization tools log at INFO/WARNING through the root logger: hold them back."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
