"""The ncnn model format (``x.param`` text + ``x.bin`` weights): read and write, nothing more.

Mapping the layers onto an architecture lives in :mod:`srprune.models.ncnn_source`; this
module only knows the file layout, so that a bad file is refused here with one line naming
it before anything is built:

* ``.param``: ``7767517``, then ``layer_count blob_count``, then one layer per line:
  ``Type name n_in n_out inputs... outputs... k=v ...``; ``-233xx=n,v1,...`` is the array
  value of key ``xx``.
* ``.bin``: the weights of each layer in layer order, with nothing between them. A
  convolution's weights start with a 4-byte storage tag (``0x01306B47``: float16, padded to
  4 bytes; ``0``: float32; anything else is a quantized form, refused); its biases, PReLU
  slopes and MemoryData follow as raw float32 without a tag. The sizes must add up to the
  file length exactly: that is what catches a truncated file or one from another model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from srprune.errors import SrpruneError

MAGIC = 7767517
FP16_TAG = 0x01306B47
INT8_TAG = 0x000D4B38
ARRAY_BASE = -23300  # key k holds an array when written as -23300 - k

ParamValue = int | float | list[int | float]

# ncnn layer types srprune reads the weights of
CONV_TYPES = ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise")
WEIGHT_TYPES = (*CONV_TYPES, "PReLU", "MemoryData")
# types that hold no weights in the .bin (all common SR graph operations)
WEIGHTLESS = frozenset((
    "Input", "Split", "Concat", "Slice", "Crop", "Padding", "Reshape", "Flatten", "Permute",
    "BinaryOp", "Eltwise", "UnaryOp", "ReLU", "Sigmoid", "Swish", "TanH", "Clip", "ELU",
    "GELU", "Mish", "HardSigmoid", "HardSwish", "Softmax", "Noop", "Dropout", "Pooling",
    "PixelShuffle", "Reorg", "Interp", "ShuffleChannel", "Squeeze", "ExpandDims", "Reduction",
    "Tile", "Cast", "Gemm", "MatMul", "CopyTo", "Erf", "Log", "Exp", "Power", "Threshold",
    "AbsVal", "Bnll", "Packing", "Flip", "Fold", "Unfold", "GridSample", "Einsum", "Shrink",
    "SELU", "CELU", "Softplus", "DeformableConv2D", "Spp", "Requantize"))
# types that certainly carry weights srprune does not read: refused by name
UNREAD = frozenset((
    "BatchNorm", "Scale", "Bias", "InnerProduct", "Embed", "LayerNorm", "GroupNorm",
    "InstanceNorm", "Normalize", "RMSNorm", "MultiHeadAttention", "LSTM", "GRU", "RNN",
    "Convolution1D", "ConvolutionDepthWise1D", "Convolution3D", "ConvolutionDepthWise3D",
    "Deconvolution1D", "Deconvolution3D", "DeconvolutionDepthWise1D",
    "DeconvolutionDepthWise3D", "Dequantize", "Quantize", "SDPA", "RotaryEmbed"))
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class NcnnLayer:
    """One layer: its type, name, blobs, numbered parameters and weight tensors.

    ``weights`` holds float32 tensors: ``weight`` (convolutions, in ncnn's layout
    ``(num_output, in / group, kh, kw)`` for every convolution type, deconvolutions
    included), ``bias``, ``slope`` (PReLU) or ``data`` (MemoryData, shaped ``(c, h, w)``
    as far as given). ``storage`` is how a tagged weight was stored (``float16`` or
    ``float32``), empty for layers without one.
    """

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, ParamValue] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    storage: str = ""

    def param(self, key: int, default: ParamValue = 0) -> ParamValue:
        return self.params.get(key, default)

    def int_param(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        return int(value) if not isinstance(value, list) else default

    def float_param(self, key: int, default: float = 0.0) -> float:
        value = self.params.get(key, default)
        return float(value) if not isinstance(value, list) else default

    @property
    def kernel(self) -> tuple[int, int]:
        """(kh, kw) of a convolution (key 11 defaults to key 1)."""
        kw = self.int_param(1, 0)
        return self.int_param(11, kw), kw


@dataclass
class NcnnModel:
    """A parsed ``.param``/``.bin`` pair: layers in file (execution) order."""

    param_path: Path
    bin_path: Path | None
    layers: list[NcnnLayer]
    blob_count: int

    @property
    def input_blob(self) -> str:
        """The output blob of the first ``Input`` layer (what to feed)."""
        for layer in self.layers:
            if layer.type == "Input" and layer.outputs:
                return layer.outputs[0]
        raise SrpruneError(f"{self.param_path}: no Input layer")

    @property
    def output_blob(self) -> str:
        """The first output blob of the last layer (what to extract)."""
        if not self.layers or not self.layers[-1].outputs:
            raise SrpruneError(f"{self.param_path}: its last layer has no output blob")
        return self.layers[-1].outputs[0]

    def weight_layers(self) -> list[NcnnLayer]:
        """Convolutions and PReLU layers in file order (what maps onto a net's parameters)."""
        return [layer for layer in self.layers if layer.type in CONV_TYPES
                or layer.type == "PReLU"]

    def producer(self, blob: str) -> NcnnLayer | None:
        """The layer writing ``blob``."""
        return next((layer for layer in self.layers if blob in layer.outputs), None)

    def consumers(self, blob: str) -> list[NcnnLayer]:
        """The layers reading ``blob``."""
        return [layer for layer in self.layers if blob in layer.inputs]

    @property
    def storage(self) -> str:
        """``float16``, ``float32`` or ``mixed``: how the tagged weights are stored."""
        kinds = {layer.storage for layer in self.layers if layer.storage}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")


def bin_path_for(param_path: str | Path) -> Path:
    """``x.bin`` beside ``x.param``."""
    return Path(param_path).with_suffix(".bin")


def read_param(param_path: str | Path) -> NcnnModel:
    """Parse a text ``.param`` (no weights read); one ``SrpruneError`` line for a bad file."""
    path = Path(param_path)
    if not path.is_file():
        raise SrpruneError(f"ncnn .param not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SrpruneError(f"{path}: not a readable ncnn text .param "
                           f"({type(exc).__name__})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != str(MAGIC):
        raise SrpruneError(f"{path}: not an ncnn text .param (first line should be {MAGIC})")
    counts = lines[1].split() if len(lines) > 1 else []
    if len(counts) != 2 or not all(c.isdigit() for c in counts):
        raise SrpruneError(f"{path}: line 2 should be 'layer_count blob_count'")
    layer_count, blob_count = int(counts[0]), int(counts[1])
    if len(lines) - 2 != layer_count:
        raise SrpruneError(f"{path}: declares {layer_count} layers but has "
                           f"{len(lines) - 2} layer lines")
    layers = [_parse_layer(line, number, path) for number, line in enumerate(lines[2:], 3)]
    produced: set[str] = set()
    for layer in layers:
        missing = [b for b in layer.inputs if b not in produced]
        if missing:
            raise SrpruneError(f"{path}: layer {layer.name} reads blob {missing[0]!r} "
                               "before any layer writes it")
        produced.update(layer.outputs)
    if len(produced) > blob_count:
        raise SrpruneError(f"{path}: declares {blob_count} blobs but uses {len(produced)}")
    return NcnnModel(path, None, layers, blob_count)


def _parse_layer(line: str, number: int, path: Path) -> NcnnLayer:
    tokens = line.split()
    where = f"{path}: line {number}"
    if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
        raise SrpruneError(f"{where}: expected 'Type name n_in n_out ...', got {line[:60]!r}")
    kind, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
    if len(tokens) < 4 + n_in + n_out:
        raise SrpruneError(f"{where}: layer {name} names fewer blobs than {n_in} + {n_out}")
    inputs = tokens[4:4 + n_in]
    outputs = tokens[4 + n_in:4 + n_in + n_out]
    params: dict[int, ParamValue] = {}
    for token in tokens[4 + n_in + n_out:]:
        key_text, eq, value = token.partition("=")
        try:
            key = int(key_text)
        except ValueError:
            key = None
        if not eq or key is None:
            raise SrpruneError(f"{where}: layer {name}: bad parameter {token!r} (want k=v)")
        if key <= ARRAY_BASE:
            items = value.split(",")
            values = [_number(v, where, name) for v in items[1:]]
            if not items[0].lstrip("-").isdigit() or int(items[0]) != len(values):
                raise SrpruneError(f"{where}: layer {name}: array parameter {token[:40]!r} "
                                   "has the wrong length")
            params[ARRAY_BASE - key] = values
        else:
            params[key] = _number(value, where, name)
    return NcnnLayer(kind, name, inputs, outputs, params)


def _number(text: str, where: str, name: str) -> int | float:
    if not _NUMBER.match(text):
        raise SrpruneError(f"{where}: layer {name}: parameter value {text!r} is not a number")
    return float(text) if any(c in text for c in ".eE") else int(text)


def read_ncnn(param_path: str | Path, bin_path: str | Path | None = None) -> NcnnModel:
    """Parse ``x.param`` and read ``x.bin`` (beside it unless given) into layer weights.

    Every problem is one ``SrpruneError`` line naming the file: a missing half of the pair,
    quantized weights, a layer type that carries weights srprune cannot read, or sizes that
    do not add up to the ``.bin`` length (truncated, or the ``.bin`` of another model).
    """
    model = read_param(param_path)
    path = Path(bin_path) if bin_path is not None else bin_path_for(param_path)
    if not path.is_file():
        raise SrpruneError(f"{model.param_path}: its weights {path.name} are missing (an ncnn "
                           "model is x.param with x.bin beside it)")
    data = path.read_bytes()
    reader = _Reader(data, path)
    unknown: list[NcnnLayer] = []
    for layer in model.layers:
        if layer.type in UNREAD:
            raise SrpruneError(f"{path}: layer {layer.name} is a {layer.type}, whose weights "
                               f"srprune does not read (it reads {', '.join(WEIGHT_TYPES)})")
        if layer.type in CONV_TYPES:
            _read_conv(layer, reader)
        elif layer.type == "PReLU":
            n = layer.int_param(0, 0)
            layer.weights["slope"] = reader.raw(max(n, 1), layer)
        elif layer.type == "MemoryData":
            _read_memory(layer, reader)
        elif layer.type not in WEIGHTLESS:
            unknown.append(layer)
    if reader.offset != len(data):
        if unknown:
            kinds = sorted({layer.type for layer in unknown})
            raise SrpruneError(f"{path}: layer {unknown[0].name} has type {kinds[0]}, unknown "
                               f"to srprune, and the file holds {len(data) - reader.offset} "
                               "bytes more than the known layers: it carries weights srprune "
                               "cannot read")
        raise SrpruneError(f"{path} does not belong to {model.param_path.name}: its layers "
                           f"take {reader.offset} bytes, the file has {len(data)}")
    model.bin_path = path
    return model


class _Reader:
    """Sequential reads from the ``.bin`` with one-line errors past its end."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def take(self, n_bytes: int, layer: NcnnLayer) -> bytes:
        end = self.offset + n_bytes
        if end > len(self.data):
            raise SrpruneError(f"{self.path} is truncated or belongs to another model: layer "
                               f"{layer.name} needs {n_bytes} bytes at offset {self.offset}, "
                               f"the file has {len(self.data)}")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def raw(self, count: int, layer: NcnnLayer) -> torch.Tensor:
        """``count`` raw float32 values (biases, slopes, MemoryData)."""
        values = np.frombuffer(self.take(4 * count, layer), dtype="<f4").astype(np.float32)
        return torch.from_numpy(values.copy())

    def tagged(self, count: int, layer: NcnnLayer) -> tuple[torch.Tensor, str]:
        """``count`` values after a storage tag: float16 or float32; the rest refused."""
        tag = int.from_bytes(self.take(4, layer), "little")
        if tag == FP16_TAG:
            size = 2 * count + (-2 * count) % 4
            values = np.frombuffer(self.take(size, layer)[:2 * count], dtype="<f2")
            return torch.from_numpy(values.astype(np.float32)), "float16"
        if tag == 0:
            return self.raw(count, layer), "float32"
        if tag == INT8_TAG:
            raise SrpruneError(f"{self.path}: layer {layer.name} holds int8-quantized weights; "
                               "srprune reads float32 and float16 ncnn models only")
        raise SrpruneError(f"{self.path}: layer {layer.name}: weight storage tag "
                           f"0x{tag:08x} is neither float32 nor float16 (a quantized model, "
                           "or a .bin from another model)")


def _read_conv(layer: NcnnLayer, reader: _Reader) -> None:
    where = f"{reader.path}: layer {layer.name}"
    deconv = layer.type.startswith("Deconvolution")
    if layer.int_param(8, 0) and not deconv:
        raise SrpruneError(f"{where} is int8-quantized (int8_scale_term); srprune reads "
                           "float32 and float16 ncnn models only")
    if layer.int_param(28 if deconv else 19, 0):
        raise SrpruneError(f"{where} takes its weights from a blob (dynamic_weight); srprune "
                           "reads weights stored in the .bin only")
    n_out, size = layer.int_param(0, 0), layer.int_param(6, 0)
    kh, kw = layer.kernel
    group = layer.int_param(7, 1) if layer.type.endswith("DepthWise") else 1
    per = n_out * kh * kw
    if n_out <= 0 or kh <= 0 or kw <= 0 or size <= 0 or size % per or group <= 0:
        raise SrpruneError(f"{where}: inconsistent sizes (num_output {n_out}, kernel {kh}x{kw}, "
                           f"weight_data_size {size})")
    weight, layer.storage = reader.tagged(size, layer)
    layer.weights["weight"] = weight.reshape(n_out, size // per, kh, kw)
    if layer.int_param(5, 0):
        layer.weights["bias"] = reader.raw(n_out, layer)


def _read_memory(layer: NcnnLayer, reader: _Reader) -> None:
    w, h, d, c = (layer.int_param(k, 0) for k in (0, 1, 11, 2))
    dims = [n for n in (c, d, h) if n] + [max(w, 1)]
    count = int(np.prod(dims))
    if layer.int_param(21, 1) == 0:  # load_type 0: tagged like convolution weights
        values, layer.storage = reader.tagged(count, layer)
    else:
        values = reader.raw(count, layer)
    layer.weights["data"] = values.reshape(dims)


def write_ncnn(model: NcnnModel, param_path: str | Path, float16: bool = False) -> Path:
    """Write ``model`` as ``x.param`` + ``x.bin`` (the inverse of :func:`read_ncnn`).

    Convolution weights are stored as float16 when ``float16`` (else float32); biases, PReLU
    slopes and MemoryData always as raw float32. For tests and tools that need small ncnn
    files; returns the ``.param`` path.
    """
    param_path = Path(param_path)
    blobs = {b for layer in model.layers for b in layer.inputs + layer.outputs}
    lines = [str(MAGIC), f"{len(model.layers)} {max(model.blob_count, len(blobs))}"]
    chunks: list[bytes] = []
    for layer in model.layers:
        params = " ".join(_format_param(k, v) for k, v in layer.params.items())
        lines.append(" ".join([layer.type, layer.name, str(len(layer.inputs)),
                               str(len(layer.outputs)), *layer.inputs, *layer.outputs,
                               params]).rstrip())
        if layer.type in CONV_TYPES:
            chunks.append(_tagged_bytes(layer.weights["weight"], float16))
            if "bias" in layer.weights:
                chunks.append(_raw_bytes(layer.weights["bias"]))
        elif layer.type == "PReLU":
            chunks.append(_raw_bytes(layer.weights["slope"]))
        elif layer.type == "MemoryData":
            chunks.append(_raw_bytes(layer.weights["data"]))
    param_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bin_path_for(param_path).write_bytes(b"".join(chunks))
    return param_path


def _format_param(key: int, value: ParamValue) -> str:
    if isinstance(value, list):
        return f"{ARRAY_BASE - key}={len(value)}," + ",".join(_format_number(v) for v in value)
    return f"{key}={_format_number(value)}"


def _format_number(value: int | float) -> str:
    return f"{value:e}" if isinstance(value, float) else str(value)


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().float().cpu().numpy().astype("<f4").tobytes()


def _tagged_bytes(tensor: torch.Tensor, float16: bool) -> bytes:
    values = tensor.detach().float().cpu().numpy().ravel()
    if not float16:
        return (0).to_bytes(4, "little") + values.astype("<f4").tobytes()
    body = values.astype("<f2").tobytes()
    return FP16_TAG.to_bytes(4, "little") + body + b"\0" * ((-len(body)) % 4)
