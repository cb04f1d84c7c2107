"""ncnn models (``x.param`` + ``x.bin``) as an ``SRModel``: the architecture found, weights mapped.

An ncnn file is a deployed graph, not a state dict, so the architecture is recognised from it:

* **Candidates.** SPAN, Real-ESRGAN's Compact and ESRGAN (RRDBNet) from spandrel with their
  hyperparameters deduced from the file (features, blocks, scale from the upsampler's output
  channels or the number of upsampling ``Interp`` layers; SPAN's input mean and range from
  its leading ``MemoryData``/``Sub``/``Mul``), then every registered srprune architecture at
  its published configuration. Each candidate is built on the meta device and run once there
  to record its convolutions and PReLUs in execution order (with stride, padding, groups and
  the activation that first reads each output).
* **Mapping.** Where the file's layer names are module paths (``/block_1/c1_r/eval_conv/Conv``
  is ``block_1.c1_r.eval_conv``) and all of them name modules of the candidate, layers map
  by name; otherwise by execution order. Every pair must agree in shape, stride, padding,
  groups and bias, and an activation ncnn fused into a convolution (``9=2`` LeakyReLU with
  its slope) must be what the architecture applies to that output. The first candidate
  that fits wins; with ``arch`` given only that architecture is tried.
* **Deploy forms.** SPAN's re-parameterised ``Conv3XC`` blocks rebuild their fused conv from
  training branches at every call in eval mode; the model is built in srprune's fused form
  (:func:`~srprune.models.spandrel_zoo.fuse_reparameterized`) and the file's fused weights
  are loaded into it, so they survive. A trailing ``Interp`` that resizes the output (Real-
  ESRGAN's animevideov3 x2/x3 run the x4 net, then downscale) is kept as
  :class:`~srprune.models.spandrel_zoo.ResizedOutput` (the ``spandrel-resized`` builder
  family, so its artifacts rebuild from data alone).

ncnn files of spandrel architectures take RGB in [0, 1]; srprune's nets take [0, 255], as
for checkpoints. :func:`ncnn_parity` runs ncnn itself (pip ``ncnn``) against the mapped model.
"""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from srprune.errors import SrpruneError
from srprune.io.ncnn import CONV_TYPES, NcnnLayer, NcnnModel, bin_path_for, read_ncnn, read_param
from srprune.models.detect import plain_value
from srprune.models.spandrel_zoo import (
    build_resized_spandrel,
    build_spandrel,
    import_spandrel,
    spandrel_class,
)
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.registry import MODELS

__all__ = ["Fitted", "fit_ncnn_layers", "load_ncnn_model", "ncnn_parity"]

TRACE_SIZE = 32  # LR side of the meta-device pass that records a candidate's layers
SPAN_MEAN = (0.4488, 0.4371, 0.4040)  # spandrel SPAN's default rgb_mean
# calls that only look at a tensor: not a "consumer" of a convolution's output
_PASSIVE = frozenset(("__get__", "size", "dim", "numel", "type_as", "contiguous", "stride",
                      "is_contiguous", "is_floating_point", "element_size", "__len__",
                      "__format__", "__repr__", "data_ptr", "get_device", "to"))
# ncnn fused activation_type -> the torch functions that apply it
_ACTIVATIONS = {1: ("relu", "relu_"), 2: ("leaky_relu", "leaky_relu_"),
                3: ("hardtanh", "clamp", "clip", "relu6"), 4: ("sigmoid", "sigmoid_"),
                5: ("mish",), 6: ("hardswish",)}
_RESIZE_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}


# --------------------------------------------------------------------------- the torch side


@dataclass
class _Op:
    """One weight-bearing call of a candidate net, in execution order."""

    kind: str  # "conv", "deconv" or "prelu"
    weight: str | None  # the parameter's name (None: computed at run time)
    bias: str | None
    shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    output_padding: tuple[int, int] = (0, 0)
    consumer: str = ""  # the first function that read the output
    slope: float | None = None  # its negative slope when a leaky_relu

    @property
    def module(self) -> str:
        return (self.weight or "").rpartition(".")[0]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


class _Recorder(TorchFunctionMode):
    """Records convolutions and PReLUs with their arguments and first consumer."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names = names
        self.ops: list[_Op] = []
        self.pending: dict[int, int] = {}  # id(output) -> op index until first read
        self.keep: list[torch.Tensor] = []  # holds outputs so their ids stay unique

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name not in _PASSIVE and self.pending:
            for tensor in _tensors(args, kwargs):
                index = self.pending.pop(id(tensor), None)
                if index is not None:
                    op = self.ops[index]
                    op.consumer = name
                    if name.startswith("leaky_relu"):
                        op.slope = float(_arg(args, kwargs, 1, "negative_slope", 0.01))
        out = func(*args, **kwargs)
        if name in ("conv2d", "conv_transpose2d", "prelu") and isinstance(out, torch.Tensor):
            self.ops.append(self._op(name, args, kwargs))
            self.pending[id(out)] = len(self.ops) - 1
            self.keep.append(out)
        return out

    def _op(self, name: str, args: tuple, kwargs: dict) -> _Op:
        weight = _arg(args, kwargs, 1, "weight", None)
        wname = self.names.get(id(weight))
        if name == "prelu":
            return _Op("prelu", wname, None, tuple(weight.shape))
        bias = _arg(args, kwargs, 2, "bias", None)
        bname = self.names.get(id(bias)) if bias is not None else None
        stride = _pair(_arg(args, kwargs, 3, "stride", 1))
        if name == "conv2d":
            padding = _arg(args, kwargs, 4, "padding", 0)
            dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            if isinstance(padding, str):  # "same" / "valid"
                k = weight.shape[-2:]
                padding = (0, 0) if padding == "valid" else tuple(
                    (k[i] - 1) * dilation[i] // 2 for i in range(2))
            return _Op("conv", wname, bname, tuple(weight.shape), stride, _pair(padding),
                       dilation, groups)
        padding = _pair(_arg(args, kwargs, 4, "padding", 0))
        output_padding = _pair(_arg(args, kwargs, 5, "output_padding", 0))
        groups = int(_arg(args, kwargs, 6, "groups", 1))
        dilation = _pair(_arg(args, kwargs, 7, "dilation", 1))
        return _Op("deconv", wname, bname, tuple(weight.shape), stride, padding, dilation,
                   groups, output_padding)


def _arg(args: tuple, kwargs: dict, index: int, key: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(key, default)


def _tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def _trace(net: nn.Module) -> tuple[list[_Op], tuple[int, ...]]:
    """The weight-bearing calls of ``net`` in execution order and its output shape, from one
    pass on a meta-device input (no memory, no arithmetic)."""
    names = {id(t): n for n, t in net.named_parameters(remove_duplicate=False)}
    names.update({id(t): n for n, t in net.named_buffers(remove_duplicate=False)})
    recorder = _Recorder(names)
    x = torch.zeros(1, 3, TRACE_SIZE, TRACE_SIZE, device="meta")
    with torch.no_grad(), recorder:
        out = net.eval()(x)
    out = out[-1] if isinstance(out, (list, tuple)) else out
    return recorder.ops, tuple(out.shape)


# ---------------------------------------------------------------------------- the file side


def _module_path(layer_name: str) -> str | None:
    """The module path an ONNX-scoped layer name spells, or None for anonymous names:
    ``/upsampler/upsampler.0/Conv`` -> ``upsampler.0``, ``/block_1/c1_r/eval_conv/Conv``
    -> ``block_1.c1_r.eval_conv`` (the last part names the operation)."""
    parts = [p for p in layer_name.split("/") if p]
    if "/" not in layer_name or len(parts) < 2:
        return None
    path = ""
    for part in parts[:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path


def _resolve(path: str, modules: set[str]) -> str | None:
    """A module of the candidate that ``path`` names; a re-parameterised block's
    ``eval_conv`` is the block itself in the fused form (or its conv when it has a ReLU)."""
    base = path.removesuffix(".eval_conv")
    for option in (path, base, base + ".0"):
        if option in modules:
            return option
    return None


def _torch_shape(layer: NcnnLayer) -> tuple[int, ...]:
    """The torch parameter shape a weight layer fills."""
    if layer.type == "PReLU":
        return tuple(layer.weights["slope"].shape)
    out, in_per_group, kh, kw = layer.weights["weight"].shape
    if layer.type.startswith("Deconvolution"):
        group = layer.int_param(7, 1) if layer.type.endswith("DepthWise") else 1
        return (in_per_group * group, out // group, kh, kw)
    return (out, in_per_group, kh, kw)


def _describe(layer: NcnnLayer) -> str:
    if layer.type == "PReLU":
        return f"PReLU({layer.weights['slope'].numel()})"
    out, in_g, kh, kw = layer.weights["weight"].shape
    return f"{kh}x{kw} {layer.type} {in_g}->{out}"


def _describe_op(op: _Op) -> str:
    if op.kind == "prelu":
        return f"PReLU({math.prod(op.shape)})"
    if op.kind == "deconv":
        return f"{op.shape[2]}x{op.shape[3]} deconvolution {op.shape[0]}->{op.shape[1]}"
    return f"{op.shape[2]}x{op.shape[3]} convolution {op.shape[1]}->{op.shape[0]}"


def _mismatch(layer: NcnnLayer, op: _Op) -> str | None:
    """Why ``layer`` cannot hold ``op``'s weights (None when it can)."""
    if op.weight is None:
        return f"{op.kind} at the place of {layer.name} computes its weights at run time"
    want = {"conv": ("Convolution", "ConvolutionDepthWise"),
            "deconv": ("Deconvolution", "DeconvolutionDepthWise"), "prelu": ("PReLU",)}
    if layer.type not in want[op.kind]:
        return f"{layer.name} is a {_describe(layer)} where {op.module} is a {_describe_op(op)}"
    if op.kind == "prelu":
        if layer.weights["slope"].numel() != math.prod(op.shape):
            return f"{layer.name} is a {_describe(layer)} where {op.module} is a " \
                   f"{_describe_op(op)}"
        return None
    if _torch_shape(layer) != op.shape:
        return f"{layer.name} is a {_describe(layer)} where {op.module} is a {_describe_op(op)}"
    group = layer.int_param(7, 1) if layer.type.endswith("DepthWise") else 1
    left = layer.int_param(4, 0)
    top = layer.int_param(14, left)
    pads = (top, left, layer.int_param(16, top), layer.int_param(15, left))  # t, l, b, r
    stride = (layer.int_param(13, layer.int_param(3, 1)), layer.int_param(3, 1))
    dilation = (layer.int_param(12, layer.int_param(2, 1)), layer.int_param(2, 1))
    checks = [("groups", group, op.groups), ("stride", stride, op.stride),
              ("dilation", dilation, op.dilation),
              ("bias", bool(layer.int_param(5, 0)), op.bias is not None)]
    if left not in (-233, -234):  # ncnn's automatic SAME padding is not checked
        checks.append(("padding", (pads[0], pads[1]), op.padding))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            return f"{layer.name} pads asymmetrically {pads}"
    if op.kind == "deconv":
        checks.append(("output padding", (layer.int_param(19, layer.int_param(18, 0)),
                                          layer.int_param(18, 0)), op.output_padding))
    for what, theirs, ours in checks:
        if theirs != ours:
            return f"{layer.name} has {what} {theirs} where {op.module} has {ours}"
    act = layer.int_param(9, 0)
    if act:
        names = _ACTIVATIONS.get(act)
        if names is None:
            return f"{layer.name} fuses ncnn activation type {act}, which srprune does not check"
        if op.consumer not in names:
            return (f"{layer.name} applies a fused {names[0]} that {op.module}'s output does "
                    f"not get (its next operation is {op.consumer or 'none'})")
        if act == 2:
            params = layer.params.get(10, [0.0])
            slope = float(params[0]) if isinstance(params, list) and params else 0.0
            if op.slope is None or abs(slope - op.slope) > 1e-6:
                return f"{layer.name} uses LeakyReLU slope {slope:g} where {op.module} uses " \
                       f"{op.slope}"
    return None


def _pairs(layers: list[NcnnLayer], ops: list[_Op]) -> tuple[list[tuple[NcnnLayer, _Op]], str]:
    """Layers paired with ops (by names when every name names a module, else by order) and
    how; raises ``ValueError`` with the reason when they do not fit."""
    modules = {op.module for op in ops}
    by_module: dict[str, list[_Op]] = {}
    for op in ops:
        by_module.setdefault(op.module, []).append(op)
    paths = [_module_path(layer.name) for layer in layers]
    resolved = [_resolve(p, modules) if p else None for p in paths]
    if layers and all(resolved) and len(layers) == len(ops):
        queue = {m: list(v) for m, v in by_module.items()}
        pairs = [(layer, queue[m].pop(0)) for layer, m in zip(layers, resolved)
                 if m is not None and queue[m]]
        if len(pairs) == len(layers) and all(not q for q in queue.values()):
            _check_pairs(pairs)
            return pairs, "layer names"
    if len(layers) != len(ops):
        kinds = Counter("prelu" if layer.type == "PReLU" else "conv" for layer in layers)
        theirs = Counter("prelu" if op.kind == "prelu" else "conv" for op in ops)
        raise ValueError(f"the file has {kinds['conv']} convolutions and {kinds['prelu']} "
                         f"PReLUs, the architecture has {theirs['conv']} and {theirs['prelu']}")
    pairs = list(zip(layers, ops))
    _check_pairs(pairs)
    return pairs, "execution order"


def _check_pairs(pairs: list[tuple[NcnnLayer, _Op]]) -> None:
    for number, (layer, op) in enumerate(pairs, 1):
        reason = _mismatch(layer, op)
        if reason is not None:
            raise ValueError(f"weight layer {number}: {reason}")


def _covered(net: nn.Module, ops: list[_Op]) -> str | None:
    """A parameter no recorded call uses (the file cannot hold it), or None."""
    used = {n for op in ops for n in (op.weight, op.bias) if n}
    for name, _ in net.named_parameters():
        if name not in used:
            return name
    return None


def _load_pairs(net: nn.Module, pairs: list[tuple[NcnnLayer, _Op]], where: str) -> None:
    """Copy each layer's tensors into the net (deconvolutions transposed to torch's layout);
    a parameter shared by several calls must get the same values from each layer."""
    tensors = dict(net.named_parameters(remove_duplicate=False))
    tensors.update(dict(net.named_buffers(remove_duplicate=False)))
    done: set[str] = set()
    with torch.no_grad():
        for layer, op in pairs:
            items = [(op.weight, _weight_for(layer, op))]
            if op.bias is not None:
                items.append((op.bias, layer.weights["bias"]))
            for name, value in items:
                target = tensors[str(name)]
                value = value.reshape(target.shape).to(target.dtype)
                if name in done:
                    if not torch.allclose(target, value, atol=1e-3, rtol=1e-3):
                        raise SrpruneError(f"{where}: layer {layer.name} holds other values "
                                           f"for {name}, which the architecture shares")
                    continue
                target.copy_(value)
                done.add(str(name))


def _weight_for(layer: NcnnLayer, op: _Op) -> torch.Tensor:
    if layer.type == "PReLU":
        return layer.weights["slope"]
    weight = layer.weights["weight"]
    if op.kind != "deconv":
        return weight
    out, in_g, kh, kw = weight.shape  # ncnn: (out, in/g, k, k); torch: (in, out/g, k, k)
    g = op.groups
    return weight.reshape(g, out // g, in_g, kh, kw).transpose(1, 2).reshape(
        in_g * g, out // g, kh, kw)


# --------------------------------------------------------------- structure of known families


@dataclass
class _Tail:
    """A trailing ``Interp`` resizing the net's output (applied after the architecture)."""

    layer: NcnnLayer
    factor: float
    mode: str


def _tail_resize(model: NcnnModel) -> _Tail | None:
    last = model.layers[-1] if model.layers else None
    if last is None or last.type != "Interp" or last.int_param(3, 0) or last.int_param(4, 0):
        return None
    mode = _RESIZE_MODES.get(last.int_param(0, 0))
    h, w = last.float_param(1, 1.0), last.float_param(2, 1.0)
    producer = model.producer(last.inputs[0]) if last.inputs else None
    if mode is None or h != w or producer is None or producer.type == "Input" or h >= 1:
        return None
    return _Tail(last, h, mode)


def _convs(model: NcnnModel) -> list[NcnnLayer]:
    return [layer for layer in model.layers if layer.type in CONV_TYPES]


def _span_input(model: NcnnModel, first: NcnnLayer) -> tuple[dict[str, Any], set[str]] | None:
    """SPAN's normalisation as the file does it before the first conv: ``(x - mean) *
    img_range``, or ``x - mean`` (img_range 1), or nothing (``norm=False``)."""
    hyper: dict[str, Any] = {}
    blob = first.inputs[0]
    layer = model.producer(blob)
    while layer is not None and layer.type == "Split":
        layer = model.producer(layer.inputs[0])
    scale = 1.0
    if layer is not None and layer.type == "BinaryOp" and layer.int_param(0, 0) == 2 \
            and layer.int_param(1, 0) == 1:
        scale = layer.float_param(2, 1.0)
        layer = model.producer(layer.inputs[0])
        if layer is None or layer.type != "BinaryOp" or layer.int_param(0, 0) != 1:
            return None
    if layer is not None and layer.type == "Input":
        return {"norm": False}, set()
    if layer is None or layer.type != "BinaryOp" or layer.int_param(0, 0) != 1 \
            or layer.int_param(1, 0) or len(layer.inputs) != 2:
        return None
    source, mean_layer = (model.producer(b) for b in layer.inputs)
    while source is not None and source.type == "Split":
        source = model.producer(source.inputs[0])
    if source is None or source.type != "Input" or mean_layer is None \
            or mean_layer.type != "MemoryData" or mean_layer.weights["data"].numel() != 3:
        return None
    # 7 significant digits give back the same float32 values, and read well in a config
    mean = tuple(float(f"{float(v):.7g}") for v in mean_layer.weights["data"].flatten())
    if any(abs(a - b) > 1e-6 for a, b in zip(mean, SPAN_MEAN)):
        hyper["rgb_mean"] = mean
    if scale != 255.0:
        hyper["img_range"] = scale
    return hyper, {mean_layer.name}


def _span_hyper(model: NcnnModel) -> tuple[dict[str, Any], set[str]] | None:
    """spandrel SPAN: 22 convolutions (6 blocks of 3 + head, tail, concat 1x1, upsampler)."""
    convs = _convs(model)
    if len(convs) != 22 or model.weight_layers() != convs:
        return None
    features, in_ch = convs[0].weights["weight"].shape[:2]
    cat = convs[20].weights["weight"].shape
    if tuple(cat) != (features, 4 * features, 1, 1):
        return None
    scale = _pixel_shuffle_scale(convs[-1], in_ch)
    found = _span_input(model, convs[0])
    if scale is None or found is None:
        return None
    extra, consumed = found
    return {"num_in_ch": in_ch, "num_out_ch": in_ch, "feature_channels": features,
            "upscale": scale, **extra}, consumed


def _pixel_shuffle_scale(last: NcnnLayer, channels: int) -> int | None:
    out = last.weights["weight"].shape[0]
    scale = math.isqrt(out // channels) if out % channels == 0 else 0
    return scale if scale >= 1 and scale * scale * channels == out else None


def _compact_hyper(model: NcnnModel) -> tuple[dict[str, Any], set[str]] | None:
    """Real-ESRGAN's SRVGGNetCompact: conv (+ act) x (num_conv + 1), last conv, PixelShuffle."""
    convs = _convs(model)
    prelus = [layer for layer in model.layers if layer.type == "PReLU"]
    if len(convs) < 3:
        return None
    features, in_ch = convs[0].weights["weight"].shape[:2]
    scale = _pixel_shuffle_scale(convs[-1], in_ch)
    if scale is None:
        return None
    if len(prelus) == len(convs) - 1:
        act = "prelu"
    elif convs[0].int_param(9, 0) == 1:
        act = "relu"
    elif convs[0].int_param(9, 0) == 2:
        act = "leakyrelu"
    else:
        return None
    return {"num_in_ch": in_ch, "num_out_ch": in_ch, "num_feat": features,
            "num_conv": len(convs) - 2, "upscale": scale, "act_type": act}, set()


def _esrgan_hyper(model: NcnnModel) -> tuple[dict[str, Any], set[str]] | None:
    """spandrel ESRGAN (RRDBNet, growth 32): 15 convs per block, one conv per upsampling
    ``Interp`` (nearest x2, or one x3), head, trunk end and two HR convs."""
    convs = _convs(model)
    tail = _tail_resize(model)
    ups = [layer for layer in model.layers if layer.type == "Interp"
           and (tail is None or layer is not tail.layer)]
    if len(convs) < 19 or any(layer.int_param(0, 0) != 1 for layer in ups):
        return None
    factors = [layer.float_param(1, 1.0) for layer in ups]
    if any(f not in (2.0, 3.0) for f in factors) or (3.0 in factors and len(factors) > 1):
        return None
    scale = int(math.prod(factors)) if factors else 1
    blocks, rest = divmod(len(convs) - 4 - len(ups), 15)
    if rest or blocks < 1 or scale < 2 or convs[1].weights["weight"].shape[0] != 32:
        return None
    first, last = convs[0].weights["weight"].shape, convs[-1].weights["weight"].shape
    return {"in_nc": int(first[1]), "out_nc": int(last[0]), "num_filters": int(first[0]),
            "num_blocks": blocks, "scale": scale}, set()


# spandrel architecture id -> hyperparameters deduced from the file
HANDLERS: dict[str, Callable[[NcnnModel], tuple[dict[str, Any], set[str]] | None]] = {
    "SPAN": _span_hyper, "Compact": _compact_hyper, "ESRGAN": _esrgan_hyper}


# ------------------------------------------------------------------------------- candidates


@dataclass
class _Candidate:
    """One architecture to try: how to build it (meta or real) and what it explains."""

    label: str  # as in "detected": "SPAN x2 (spandrel)"
    build: Callable[[], SRModel]
    consumed: set[str] = field(default_factory=set)  # MemoryData the build accounts for
    spandrel: tuple[str, str, str, dict[str, Any]] | None = None  # package, class, name, hyper
    input_range: float = 255.0  # what the file's input spans (spandrel nets: 1)
    group: str = ""  # the architecture (candidates of one group differ in scale)


def _arch_support(arch_id: str) -> Any:
    spandrel = import_spandrel()
    wanted = arch_id.lower().replace(" ", "")
    for support in spandrel.MAIN_REGISTRY.architectures():
        architecture = support.architecture
        if wanted in (str(architecture.id).lower(), architecture.name.lower().replace(" ", "")):
            return architecture
    return None


def _spandrel_candidate(package: str, hyper: dict[str, Any], consumed: set[str],
                        class_name: str | None = None) -> _Candidate:
    import_spandrel()
    module = importlib.import_module(f"spandrel.architectures.{package}")
    cls_name = class_name or _main_class(module, package)
    architecture = _arch_support(package)
    arch_name = architecture.name if architecture is not None else package
    scale = _scale_of(hyper)

    def build() -> SRModel:
        return build_spandrel(package, cls_name, scale or 1, hyper)

    return _Candidate(f"{arch_name} (spandrel)", build, consumed,
                      (package, cls_name, arch_name, hyper), input_range=1.0, group=package)


def _main_class(module: Any, package: str) -> str:
    """The architecture class ``spandrel.architectures.<package>`` exports."""
    value = getattr(module, package, None)
    if isinstance(value, type) and issubclass(value, nn.Module):
        return package
    for name in getattr(module, "__all__", []):
        value = getattr(module, name, None)
        if isinstance(value, type) and issubclass(value, nn.Module):
            return name
    raise SrpruneError(f"spandrel has no architecture class in {package}")


def _scale_of(hyper: dict[str, Any]) -> int | None:
    for key in ("scale", "upscale", "up_scale", "upscaling_factor", "upsampling_factor"):
        if isinstance(hyper.get(key), int):
            return int(hyper[key])
    return None


def _registered_candidates(model: NcnnModel, scales: list[int] | None = None,
                           only: ModelSpec | None = None,
                           options: dict[str, Any] | None = None
                           ) -> Iterator[list[_Candidate]]:
    """srprune's registered architectures (not spandrel's: they come with deduction), one
    group per architecture with a candidate per registered scale, filtered by weight shapes
    (unless named); lazily, since building every candidate costs seconds."""
    want = Counter(_torch_shape(layer) for layer in model.weight_layers())
    specs = [only] if only is not None else [
        MODELS.get(n) for n in MODELS.names()]
    for spec in specs:
        if not isinstance(spec, ModelSpec) or (only is None and spec.family == "spandrel"):
            continue
        group = []
        for scale in spec.scales if scales is None else scales:
            if scale not in spec.scales:
                continue
            config = {**spec.config_for(scale), **(options or {})}

            def build(spec: ModelSpec = spec, config: dict[str, Any] = config) -> SRModel:
                return spec.build(dict(config))

            if only is None and _registered_shapes(spec, scale, build) != want:
                continue
            group.append(_Candidate(f"{spec.name} x{scale} (srprune)", build, group=spec.name))
        if group:
            yield group


_SHAPES: dict[tuple[str, int], Counter | None] = {}  # registered model -> weight shapes


def _registered_shapes(spec: ModelSpec, scale: int, build: Callable[[], SRModel]
                       ) -> Counter | None:
    """:func:`_module_shapes` of a registered model at its published configuration,
    built on the meta device once per process (building them all takes seconds)."""
    key = (spec.name, scale)
    if key not in _SHAPES:
        try:
            with torch.device("meta"):
                _SHAPES[key] = _module_shapes(build().net)
        except Exception:  # a builder that cannot run on meta: never a candidate
            _SHAPES[key] = None
    return _SHAPES[key]


def _module_shapes(net: nn.Module) -> Counter | None:
    """Weight shapes of its convolutions and PReLUs; None when other modules hold
    parameters (a file of convolutions cannot fill them)."""
    shapes: Counter = Counter()
    for module in net.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.PReLU)):
            shapes[tuple(module.weight.shape)] += 1
        elif own:
            return None
    return shapes


def _auto_candidates(model: NcnnModel) -> Iterator[list[_Candidate]]:
    """spandrel families whose hyperparameters the file gives, then srprune's models."""
    for package, handler in HANDLERS.items():
        deduced = handler(model)
        if deduced is not None:
            hyper, consumed = deduced
            yield [_spandrel_candidate(package, hyper, consumed)]
    yield from _registered_candidates(model)


def _named_candidates(model: NcnnModel, arch: str, scale: int | None,
                      options: dict[str, Any], path: Path) -> Iterator[list[_Candidate]]:
    """The architecture the user named: a registered srprune name, or a spandrel one."""
    spec = MODELS.get(arch) if arch in MODELS.names() else None
    if isinstance(spec, ModelSpec) and spec.family != "spandrel":
        if scale is not None and scale not in spec.scales:
            raise SrpruneError(f"{path}: {arch} has no x{scale} configuration; its scales: "
                               + ", ".join(f"x{s}" for s in spec.scales))
        return _registered_candidates(model, None if scale is None else [scale], spec, options)
    if isinstance(spec, ModelSpec):
        config = spec.config_for(scale if scale in spec.configs else None)
        package, class_name = config["package"], config["class_name"]
        base = dict(config["hyperparameters"])
    else:
        support = _arch_support(arch)
        if support is None:
            raise SrpruneError(
                f"unknown architecture {arch!r} for {path}; use a registered name "
                f"({', '.join(n for n in MODELS.names() if not n[-1].isdigit())}) or a "
                "spandrel architecture (SPAN, Compact, ESRGAN, RealCUGAN, ...)")
        package, class_name, base = str(support.id), None, {}
    deduced = HANDLERS[package](model) if package in HANDLERS else None
    hyper, consumed = ({**base, **deduced[0]}, deduced[1]) if deduced else (base, set())
    cls = spandrel_class(package, class_name or _main_class(
        importlib.import_module(f"spandrel.architectures.{package}"), package))
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in options:
        if key not in known:
            raise SrpruneError(f"spandrel {package} has no option {key!r} (--arch-opt); its "
                               f"options: {', '.join(known)}")
    return iter([[_spandrel_candidate(package, {**hyper, **options}, consumed, class_name)]])


# ----------------------------------------------------------------------------- the front


def _pair_path(path: str | Path) -> Path:
    """The ``.param`` of a pair named by either half."""
    path = Path(path)
    if path.suffix == ".bin":
        param = path.with_suffix(".param")
        if not param.is_file():
            raise SrpruneError(f"{path}: its layer description {param.name} is missing (an "
                               "ncnn model is x.param with x.bin beside it)")
        return param
    return path


def load_ncnn_model(param_path: str | Path, scale: int | None = None, arch: str | None = None,
                    arch_options: dict[str, Any] | None = None) -> SRModel:
    """An ``SRModel`` with the weights of an ncnn model, its architecture detected (see the
    module doc) or ``arch`` (a registered name or a spandrel architecture, with
    ``arch_options`` as builder arguments or hyperparameters)."""
    path = _pair_path(param_path)
    parsed = read_ncnn(path)
    with warnings.catch_warnings():  # trial builds of candidates warn (torch.meshgrid, ...)
        warnings.simplefilter("ignore")
        fitted = fit_ncnn_layers(parsed, path, scale, arch, arch_options)
    model = fitted.model
    fused = model.meta.get("reparameterized", 0)
    model.meta.update(
        weights=str(path),
        detected=f"{fitted.label}; ncnn {parsed.storage} weights mapped by {fitted.how}" + (
            f"; {fused} re-parameterised blocks fused to the deploy form" if fused else ""),
        ncnn={"param": str(path), "bin": str(parsed.bin_path), "storage": parsed.storage,
              "mapped_by": fitted.how, "input_range": fitted.input_range,
              "input": parsed.input_blob, "output": parsed.output_blob})
    return model


@dataclass
class Fitted:
    """An architecture built with a layer list's weights: what it is (``label``, as in
    ``detected``), how the layers were paired, and the input range its layers take."""

    model: SRModel
    label: str
    how: str
    input_range: float


def fit_ncnn_layers(parsed: NcnnModel, path: Path, scale: int | None = None,
                    arch: str | None = None, arch_options: dict[str, Any] | None = None,
                    what: str = "ncnn model") -> Fitted:
    """The first candidate architecture that the weight layers of ``parsed`` fill (by names
    or execution order), built with their weights: ncnn files, and ONNX files converted to
    ncnn's layer form (:mod:`srprune.models.onnx_source`). One ``SrpruneError`` line naming
    ``path`` (a ``what``) when none fits."""
    tail = _tail_resize(parsed)
    layers = parsed.weight_layers()
    if arch is not None:
        groups = _named_candidates(parsed, arch, scale, dict(arch_options or {}), path)
    else:
        if arch_options:
            raise SrpruneError(f"--arch-opt applies with --arch NAME; {path} names no "
                               "architecture")
        groups = _auto_candidates(parsed)
    reasons: list[str] = []
    fits: list[_Fit] = []
    for group in groups:  # the first architecture that fits wins, at each of its scales
        fits = [fit for fit in (_try(c, layers, tail, reasons) for c in group) if fit]
        if fits:
            break
    if not fits:
        _no_fit(path, parsed, arch, reasons, what)
    if scale is not None:
        chosen = [f for f in fits if f.scale == scale]
        if not chosen:
            raise SrpruneError(f"{path} is a x{fits[0].scale} model, but --scale {scale} "
                               "was given")
        fits = chosen
    if len(fits) > 1:
        raise SrpruneError(f"{path}: the weights fit {fits[0].candidate.group} at "
                           f"x{', x'.join(str(f.scale) for f in fits)} alike: pass --scale")
    fit = fits[0]
    unexplained = [layer.name for layer in parsed.layers
                   if layer.type == "MemoryData" and layer.name not in fit.candidate.consumed]
    if unexplained:
        raise SrpruneError(f"{path}: layer {unexplained[0]} holds constant data (MemoryData) "
                           f"that {fit.candidate.label} has no place for")
    model, label = _finish(fit, tail, path)
    return Fitted(model, label, fit.how, fit.candidate.input_range)


@dataclass
class _Fit:
    """A candidate whose layers the file fills: the pairs, how they were found, scales."""

    candidate: _Candidate
    pairs: list[tuple[NcnnLayer, _Op]]
    how: str
    net_scale: int
    scale: int
    meta_net: nn.Module


def _try(candidate: _Candidate, layers: list[NcnnLayer], tail: _Tail | None,
         reasons: list[str]) -> _Fit | None:
    """Build ``candidate`` on the meta device, trace it and pair the file's layers with it;
    None (and a reason appended) when it does not fit."""
    try:
        with torch.device("meta"):
            meta_model = candidate.build()
        ops, out_shape = _trace(meta_model.net)
    except SrpruneError as exc:
        reasons.append(f"{candidate.label}: {exc}")
        return None
    except Exception as exc:  # a candidate that cannot be built or run on meta
        reasons.append(f"{candidate.label}: cannot run on the meta device "
                       f"({type(exc).__name__})")
        return None
    try:
        pairs, how = _pairs(layers, ops)
        missing = _covered(meta_model.net, ops)
        if missing is not None:
            raise ValueError(f"its parameter {missing} is not a convolution or PReLU weight")
    except ValueError as exc:
        reasons.append(f"{candidate.label}: {exc}")
        return None
    net_scale = out_shape[-1] // TRACE_SIZE
    final = round(net_scale * tail.factor) if tail else net_scale
    if tail is not None and (abs(net_scale * tail.factor - final) > 1e-6 or final < 1):
        reasons.append(f"{candidate.label}: x{net_scale} resized by {tail.factor:g} "
                       f"({tail.layer.name}) is not an integer scale")
        return None
    return _Fit(candidate, pairs, how, net_scale, final, meta_model.net)


def _no_fit(path: Path, parsed: NcnnModel, arch: str | None, reasons: list[str],
            what: str = "ncnn model") -> None:
    """One line: why the named architecture does not fit, or that none does."""
    layers = parsed.weight_layers()
    n_prelu = sum(layer.type == "PReLU" for layer in layers)
    if arch is not None:
        raise SrpruneError(f"{path} does not map onto {arch}: "
                           f"{reasons[0] if reasons else 'no candidate'}")
    raise SrpruneError(
        f"{path}: no architecture matches this {what} ({len(layers) - n_prelu} "
        f"convolutions, {n_prelu} PReLUs; tried spandrel's {', '.join(HANDLERS)} and srprune's "
        f"{len(MODELS.names())} registered models); name it with --arch NAME "
        "--arch-opt key=value")


def _finish(fit: _Fit, tail: _Tail | None, path: Path) -> tuple[SRModel, str]:
    """Build the fitting candidate for real and load the layers' tensors, with srprune's
    conventions (as the checkpoint loader sets them: arch, config, name); its label."""
    candidate, scale = fit.candidate, fit.scale
    if candidate.spandrel is not None:
        package, class_name, arch_name, hyper = candidate.spandrel
        full = {k: v for k, v in getattr(fit.meta_net, "hyperparameters", hyper).items()
                if plain_value(v)}
        if tail is not None:
            model = build_resized_spandrel(package, class_name, scale, full,
                                           resize_from=fit.net_scale, resize_mode=tail.mode)
            inner = model.net.net
            model.name = f"spandrel:{arch_name}"
        else:
            model = build_spandrel(package, class_name, scale, full)
            model.config["hyperparameters"] = full
            model.name = f"spandrel:{arch_name}"
            inner = model.net
        label = f"{arch_name} x{fit.net_scale} (spandrel)"
    else:
        if tail is not None:
            raise SrpruneError(f"{path}: its output is resized ({tail.layer.name}); srprune "
                               "keeps such a resize for spandrel architectures only")
        model = candidate.build()
        inner = model.net
        label = candidate.label
    _load_pairs(inner, fit.pairs, str(path))
    model.eval()
    if tail is not None:
        label += f", output resized {tail.mode} x{tail.factor:g} to x{scale}"
    return model, label


# --------------------------------------------------------------------------------- parity


def ncnn_parity(model: SRModel, param_path: str | Path, size: tuple[int, int] = (40, 48),
                seed: int = 0, smooth: bool = True) -> dict[str, Any] | None:
    """ncnn's own CPU inference (float32, one thread) vs the torch model on one random input
    in the model's convention: max and mean absolute difference and PSNR, on outputs scaled
    to [0, 1]. None when the ``ncnn`` package is not installed.

    The input is smooth (uniform noise at a quarter of the size, upsampled bilinearly) unless
    ``smooth`` is false: pixel noise drives SPAN's activations to thousands, where float32
    rounding alone moves its x2 output by up to 0.16 (torch float32 vs float64), so noise
    measures the conditioning of the net, not whether two runtimes compute the same thing.
    """
    try:
        import ncnn
    except ImportError:
        return None
    path = _pair_path(param_path)
    parsed = read_param(path)
    first = next((la for la in parsed.layers if la.type in CONV_TYPES), None)
    if first is not None:
        n_out, n_weights = first.int_param(0, 1), first.int_param(6, 0)
        kh, kw = first.kernel
        channels = n_weights // max(n_out * kh * kw, 1)
        if first.type.endswith("DepthWise"):
            channels *= first.int_param(7, 1)
        if channels != 3:
            raise SrpruneError(f"{path}: its first convolution reads {channels} channels; "
                               "parity compares models that take RGB")
    # spandrel (and import-path) nets take [0, 1] inside srprune's [0, 255] wrapper
    default = 1.0 if model.arch in ("spandrel", "spandrel-resized") else model.rgb_range
    in_range = float(model.meta.get("ncnn", {}).get("input_range", default))
    generator = torch.Generator().manual_seed(seed)
    if smooth:
        coarse = torch.rand(1, 3, size[0] // 4 + 1, size[1] // 4 + 1, generator=generator)
        x = F.interpolate(coarse, size=size, mode="bilinear", align_corners=True)
    else:
        x = torch.rand(1, 3, *size, generator=generator)
    x = x * model.rgb_range
    with torch.no_grad():
        ours = model.eval()(x)[0].float() / model.rgb_range
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for option in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                   "use_bf16_storage", "use_bf16_packed"):
        if hasattr(net.opt, option):
            setattr(net.opt, option, False)
    net.opt.num_threads = 1
    if net.load_param(str(path)) != 0 or net.load_model(str(bin_path_for(path))) != 0:
        raise SrpruneError(f"{path}: ncnn cannot load this model")
    try:
        extractor = net.create_extractor()
        lr = np.ascontiguousarray((x[0] / model.rgb_range * in_range).numpy(), dtype=np.float32)
        extractor.input(parsed.input_blob, ncnn.Mat(lr).clone())  # a copy: see ncnn_runtime
        status, out = extractor.extract(parsed.output_blob)
        theirs = torch.from_numpy(np.array(out, dtype=np.float32).copy()) / in_range
        extractor.clear()
    finally:
        net.clear()
    if status != 0 or tuple(theirs.shape) != tuple(ours.shape):
        raise SrpruneError(f"{path}: ncnn gave output {tuple(theirs.shape)} (status {status}), "
                           f"the torch model {tuple(ours.shape)}")
    diff = (theirs - ours).abs()
    mse = float((diff ** 2).mean())
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
            "size": tuple(size), "output": tuple(ours.shape), "input": "smooth" if smooth
            else "noise"}

