"""ONNX models (``x.onnx``) as an ``SRModel``: the architecture found, the exact weights mapped.

An ONNX file is a deployed graph, not a state dict; the architecture is recognised from it
the way :mod:`srprune.models.ncnn_source` recognises ncnn files, by two routes:

* **Names.** torch and chaiNNer exports keep module paths: initializers named like state-dict
  keys (``net.head.weight``; equal tensors that torch's exporter merged are ``Identity``
  nodes that keep the name), or node names that scope an anonymous initializer
  (``/net/body/body.0/conv1/Conv`` reads ``onnx::Conv_123``: ``body.0.conv1.weight``;
  dynamo exports say it in ``pkg.torch.onnx.name_scopes``). The initializer is turned back
  into the parameter by what reads it: ``Conv`` as is, ``PRelu`` flattened, ``MatMul`` /
  ``Gemm`` transposed (a ``Linear``), ``LayerNormalization`` scale and bias. These keys are
  matched against srprune's registered architectures (candidates built on the meta device;
  depth and width options searched within the numbers the keys and shapes show, from the
  published and the small configuration), then given to spandrel (which reads community
  architectures from shapes), then against the registered spandrel architectures. Widths
  smaller than the architecture's (a pruned model) shrink its layers, as artifacts do.
  Parameters the exporter folded into constants are recovered where the candidate shows how:
  scoped constants read by ``Mul``/``Add`` (a norm's scale and shift), and a table gathered
  by an index buffer (SwinIR's relative position bias). Parameters the graph never uses (a
  multi-scale CARN's other upsamplers, DRN's intermediate outputs) keep their built values.
* **Execution order.** A file without usable names is converted to ncnn's layer form
  (convolutions, PReLUs, the constants before the first convolution) and fitted by
  :mod:`srprune.models.ncnn_source`: SPAN, Compact and ESRGAN with hyperparameters deduced,
  and srprune's registered models at their published configurations.

Every fit is checked against ONNX Runtime on one smooth input before it is accepted: a
candidate whose weights fit but whose output differs (a hyperparameter no weight shows, such
as EDSR's residual scale) is dropped for the next. srprune's own exports take RGB in
[0, 255] (the export wraps the [0, 1] spandrel nets in x / 255 ... * 255); files of spandrel
architectures without that wrapper take [0, 1]. A file that maps onto nothing, a quantized
model and an unreadable file are one ``SrpruneError`` line each.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from srprune.errors import SrpruneError
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.registry import MODELS

__all__ = ["load_onnx_model"]

# operators of quantized graphs: their weights are integers, not the float tensors srprune maps
QUANTIZED_OPS = frozenset((
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DequantizeLinear",
    "QuantizeLinear", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul", "QGemm",
    "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat"))
WRAPPER_RANGE = 255.0  # srprune's export divides by this first and multiplies by it last
PROBE_SIZE = 16  # LR side of the ONNX Runtime run that finds the scale and checks parity
PARITY_RTOL = 1e-3  # max |torch - ONNX Runtime| over max(1, max |output|), 0..1 scale
MAX_POOL = 4096  # option values searched are at most this
SEARCH_ROUNDS = 3
RUNTIME_HINT = ("as a runtime file it still works with srprune bench, eval and "
                "export --int8")
_KEY = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")  # a dotted module path: head.0.weight
_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")  # numeric path components
_SCALE_KEYS = ("scale", "upscale", "up_scale", "upscaling_factor", "upsampling_factor")


# ------------------------------------------------------------------------------ the file


def _read(path: Path) -> Any:
    """The ModelProto, external data loaded; one line for a file that is not a usable
    float ONNX model."""
    import onnx

    if not path.is_file():
        raise SrpruneError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise SrpruneError(f"{path}: not a readable ONNX model ({_first_line(exc)}); the file "
                           "is truncated or not ONNX") from None
    if not proto.graph.node:
        raise SrpruneError(f"{path}: an ONNX file without a graph (no nodes)")
    quantized = sorted({n.op_type for n in proto.graph.node if n.op_type in QUANTIZED_OPS})
    if quantized:
        raise SrpruneError(f"{path} is a quantized ONNX model ({', '.join(quantized[:3])} "
                           "nodes); srprune maps float weights only (prune the float model, "
                           "then srprune export --int8)")
    external = [t for t in proto.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        _check_external(path, external)
    try:  # by path when weights lie beside it (the checker reads them there, any size)
        onnx.checker.check_model(str(path) if external else proto)
    except Exception as exc:  # ValidationError: a graph ONNX itself rejects
        raise SrpruneError(f"{path}: not a valid ONNX graph ({_first_line(exc)[:160]}); the "
                           "file is damaged or truncated") from None
    if external:
        _load_external(proto, path)
    return proto


def _check_external(path: Path, tensors: list[Any]) -> None:
    """Weights kept in side files (models over 2 GB) are read only from files in the
    model's folder: a location outside it, or a missing file, is refused."""
    folder = path.resolve().parent
    for tensor in tensors:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or folder not in target.parents:
            raise SrpruneError(f"{path}: initializer {tensor.name} keeps its data at "
                               f"{location!r}, outside the model's folder; refused")
        if not target.is_file():
            raise SrpruneError(f"{path}: its external weights file {location} is missing (it "
                               "belongs beside the .onnx)")


def _load_external(proto: Any, path: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(proto, str(path.resolve().parent))
    except Exception as exc:  # short or unreadable side file
        raise SrpruneError(f"{path}: cannot read its external weights "
                           f"({_first_line(exc)[:120]})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


class _Graph:
    """Index of one graph: constants by name (through ``Identity`` chains), producers,
    consumers and the module scope of each node."""

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.nodes = list(proto.graph.node)
        self.initializers = {t.name: t for t in proto.graph.initializer}
        self.constant_nodes = {n.output[0]: n for n in self.nodes
                               if n.op_type == "Constant" and n.output}
        self.alias = {n.output[0]: n.input[0] for n in self.nodes
                      if n.op_type == "Identity" and n.input and n.output}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self._cache: dict[str, torch.Tensor | None] = {}
        inits = set(self.initializers)
        self.inputs = [i for i in proto.graph.input if i.name not in inits]
        self.outputs = list(proto.graph.output)

    def source(self, name: str) -> str:
        """The initializer or Constant output an ``Identity`` chain starts from."""
        seen = set()
        while name in self.alias and name not in seen:
            seen.add(name)
            name = self.alias[name]
        return name

    def tensor(self, name: str) -> torch.Tensor | None:
        """The constant value of ``name`` (float32 for float data), None when computed."""
        if not name:
            return None
        root = self.source(name)
        if root not in self._cache:
            self._cache[root] = self._load(root)
        return self._cache[root]

    def _load(self, name: str) -> torch.Tensor | None:
        from onnx import numpy_helper

        proto = self.initializers.get(name)
        if proto is None and name in self.constant_nodes:
            attrs = {a.name: a for a in self.constant_nodes[name].attribute}
            if "value" in attrs:
                proto = attrs["value"].t
            elif "value_float" in attrs:
                return torch.tensor(attrs["value_float"].f)
            elif "value_floats" in attrs:
                return torch.tensor(list(attrs["value_floats"].floats))
            elif "value_int" in attrs:
                return torch.tensor(attrs["value_int"].i)
            elif "value_ints" in attrs:
                return torch.tensor(list(attrs["value_ints"].ints))
        if proto is None:
            return None
        array = numpy_helper.to_array(proto)
        if array.dtype.kind == "f":
            return torch.from_numpy(np.array(array, dtype=np.float32))
        if array.dtype.kind in "iub":
            return torch.from_numpy(np.array(array, dtype=np.int64))
        return None

    def is_constant(self, name: str) -> bool:
        root = self.source(name)
        return root in self.initializers or root in self.constant_nodes

    def scope(self, node: Any) -> str | None:
        """The module path that ran ``node``: dynamo's ``name_scopes`` metadata, or the
        legacy exporter's node name (``/net/body/body.0/conv1/Conv``)."""
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                try:
                    scopes = ast.literal_eval(prop.value)
                except (ValueError, SyntaxError):
                    break
                paths = [s for s in scopes[:-1] if isinstance(s, str) and s]
                return paths[-1] if paths else None
        return scope_path(node.name)

    def value_info_dims(self, value: Any) -> list[int | None]:
        dims = value.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def scope_path(node_name: str) -> str | None:
    """The module path an ONNX-scoped node name spells, None for anonymous names. Each
    part is a module's attribute name, a container's child being ``parent.index``:
    ``/net/body/body.0/body/body.2/Conv`` -> ``net.body.0.body.2`` (the last part names
    the operation)."""
    parts = [p for p in node_name.split("/") if p]
    if not node_name.startswith("/") or len(parts) < 2:
        return None
    segments: list[str] = []
    for part in parts[:-1]:
        if segments and part.startswith(segments[-1] + "."):
            segments[-1] = part
        else:
            segments.append(part)
    return ".".join(segments)


# ---------------------------------------------------------------- parameters from the names


@dataclass
class _Const:
    """A constant a node in some module scope reads (for folded parameters)."""

    scope: str
    op: str
    name: str
    tensor: torch.Tensor


@dataclass
class _Named:
    """What the names of a file give: state-dict-like keys with their tensors, and the
    anonymous constants per scope (both with the file's own prefix, e.g. ``net.``)."""

    state: dict[str, torch.Tensor]
    consts: list[_Const]
    by_node: int = 0  # keys that came from node scopes rather than tensor names


def _is_key(name: str) -> bool:
    return bool(_KEY.match(name))


def _named(g: _Graph) -> _Named:
    """State-dict keys from tensor names, ``Identity`` names and node scopes."""
    state: dict[str, torch.Tensor] = {}
    for name in g.initializers:
        if _is_key(name):
            tensor = g.tensor(name)
            if tensor is not None and tensor.is_floating_point():
                state[name] = tensor
    for out in g.alias:
        if _is_key(out) and out not in state:
            tensor = g.tensor(out)
            if tensor is not None and tensor.is_floating_point():
                state[out] = tensor
    from_nodes: dict[str, torch.Tensor] = {}
    consts: list[_Const] = []
    for node in g.nodes:
        path = g.scope(node)
        if not path:
            continue
        for key, tensor in _node_parameters(g, node, path):
            from_nodes.setdefault(key, tensor)
        for name in node.input:
            if name and not _is_key(g.source(name)) and not _is_key(name) \
                    and g.is_constant(name):
                tensor = g.tensor(name)
                if tensor is not None and tensor.is_floating_point() and tensor.numel() > 1:
                    consts.append(_Const(path, node.op_type, g.source(name), tensor))
    added = {k: v for k, v in from_nodes.items() if k not in state}
    state.update(added)
    return _Named(state, consts, len(added))


def _node_parameters(g: _Graph, node: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The parameters a weight-bearing node reads from anonymous constants, in torch's
    layout (named inputs are covered by their names)."""
    def anonymous(index: int) -> torch.Tensor | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        name = node.input[index]
        if _is_key(name) or _is_key(g.source(name)) or not g.is_constant(name):
            return None
        tensor = g.tensor(name)
        return tensor if tensor is not None and tensor.is_floating_point() else None

    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        for index, what in ((1, "weight"), (2, "bias")):
            tensor = anonymous(index)
            if tensor is not None:
                yield f"{path}.{what}", tensor
    elif op == "PRelu":
        tensor = anonymous(1)
        if tensor is not None:
            yield f"{path}.weight", tensor.flatten()
    elif op in ("LayerNormalization", "BatchNormalization", "InstanceNormalization"):
        names = ("weight", "bias", "running_mean", "running_var")
        for index, what in enumerate(names, 1):
            tensor = anonymous(index)
            if tensor is not None:
                yield f"{path}.{what}", tensor
    elif op == "MatMul" and not g.is_constant(node.input[0]):
        tensor = anonymous(1)
        if tensor is not None and tensor.dim() == 2:
            yield f"{path}.weight", tensor.t().contiguous()
            bias = _matmul_bias(g, node, tensor.shape[1])
            if bias is not None:
                yield f"{path}.bias", bias
    elif op == "Gemm" and not g.is_constant(node.input[0]):
        attrs = {a.name: a.i for a in node.attribute if a.name in ("transA", "transB")}
        tensor = anonymous(1)
        if tensor is not None and tensor.dim() == 2 and not attrs.get("transA", 0):
            yield f"{path}.weight", (tensor if attrs.get("transB", 0)
                                     else tensor.t().contiguous())
        bias = anonymous(2)
        if bias is not None:
            yield f"{path}.bias", bias.flatten()


def _matmul_bias(g: _Graph, node: Any, width: int) -> torch.Tensor | None:
    """A ``Linear``'s bias: the anonymous constant of the ``Add`` that alone reads the
    ``MatMul`` output."""
    readers = g.consumers.get(node.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "Add":
        return None
    other = [n for n in readers[0].input if n != node.output[0]]
    if len(other) != 1 or _is_key(g.source(other[0])) or not g.is_constant(other[0]):
        return None
    tensor = g.tensor(other[0])
    if tensor is None or not tensor.is_floating_point() or tensor.numel() != width:
        return None
    return tensor.flatten()


def _prefixes(keys: list[str]) -> list[str]:
    """``""`` and the dotted prefixes every key shares (``net.`` around srprune's exports,
    ``module.`` around DataParallel ones), shortest first."""
    found = [""]
    if not keys:
        return found
    parts = [k.split(".") for k in keys]
    for depth in range(1, 3):
        heads = {tuple(p[:depth]) for p in parts if len(p) > depth}
        if len(heads) != 1 or any(len(p) <= depth for p in parts):
            break
        head = next(iter(heads))
        if head[-1].isdigit():
            break
        found.append(".".join(head) + ".")
    return found


def _strip(named: _Named, prefix: str) -> _Named:
    """The names without the file's wrapper prefix."""
    if not prefix:
        return named
    base = prefix[:-1]
    state = {k[len(prefix):]: v for k, v in named.state.items() if k.startswith(prefix)}
    consts = [_Const(c.scope[len(prefix):] if c.scope.startswith(prefix) else
                     ("" if c.scope == base else c.scope), c.op, c.name, c.tensor)
              for c in named.consts]
    return _Named(state, consts, named.by_node)


def _pattern(key: str) -> str:
    return _INDEX.sub("#", key)


# ------------------------------------------------------------------ registered candidates


@dataclass
class _Reference:
    """A registered architecture at one scale: its key patterns (from a small build)."""

    patterns: frozenset[str]
    meta_ok: bool


_REFERENCES: dict[tuple[str, int], _Reference | None] = {}


def _reference(spec: ModelSpec, scale: int) -> _Reference | None:
    """Key patterns of ``spec`` at ``scale``, from its small configuration (numeric path
    components erased, so depth does not matter); built once per process."""
    key = (spec.name, scale)
    if key not in _REFERENCES:
        config = spec.small_config(scale)
        ref = None
        for meta in (True, False):
            try:
                net = _build(spec, config, meta).net
            except Exception:  # a builder that cannot build here: not a candidate
                continue
            ref = _Reference(frozenset(_pattern(k) for k in net.state_dict()), meta)
            break
        _REFERENCES[key] = ref
    return _REFERENCES[key]


def _build(spec: ModelSpec, config: dict[str, Any], meta: bool) -> SRModel:
    """A candidate for its state-dict shapes only: on the meta device where its builder
    runs there, and without random initialisation either way (it is overwritten or unused,
    and it is most of the build time)."""
    with _SkipInit():
        if meta:
            with torch.device("meta"):
                return spec.build(_copy(config))
        return spec.build(_copy(config))


class _SkipInit(TorchFunctionMode):
    """A shapes-only build: in-place random fills do nothing, nor does any in-place op on
    a meta tensor (no values to change; timm's ``trunc_normal_`` costs seconds there), and
    a number read from a meta tensor is 0 (SwinIR reads drop-path rates with ``.item()``)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if args and isinstance(args[0], torch.Tensor):
            if name in _RANDOM_FILLS:
                return args[0]
            if args[0].is_meta:
                if name.endswith("_") and not name.startswith("_") \
                        and name not in _RESHAPING:
                    return args[0]
                if name == "item":
                    return 0.0 if args[0].is_floating_point() else 0
        return func(*args, **(kwargs or {}))


_RANDOM_FILLS = frozenset(("uniform_", "normal_", "erfinv_", "exponential_", "bernoulli_",
                           "random_", "cauchy_", "log_normal_", "geometric_"))
# in-place ops that change a tensor's shape or flags: always run
_RESHAPING = frozenset(("resize_", "resize_as_", "set_", "as_strided_", "squeeze_",
                        "unsqueeze_", "t_", "transpose_", "swapdims_", "swapaxes_",
                        "requires_grad_", "share_memory_"))


def _copy(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
            for k, v in config.items()}


@dataclass
class _Score:
    """How far a candidate's state dict is from the file's keys (lexicographic)."""

    extra: int  # file keys the candidate lacks: disqualifying
    bad: int  # shared keys whose sizes differ (a pruned width, or the wrong option)
    missing: int  # learned keys the file lacks where it has their kind (another block's)
    signature: int = 0  # of its learned keys and the shapes of the file's keys

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.extra, self.bad, self.missing)


def _score(net: nn.Module, shapes: dict[str, tuple[int, ...]]) -> _Score:
    own = net.state_dict()
    learned = {k for k, _ in net.named_parameters()}
    extra = sum(1 for k in shapes if k not in own)
    bad = sum(1 for k, s in shapes.items() if k in own and math.prod(s) != own[k].numel())
    patterns = {_pattern(k) for k in shapes}
    missing = sum(1 for k in learned if k not in shapes and _pattern(k) in patterns)
    signature = (frozenset(learned), tuple(tuple(own[k].shape) if k in own else None
                                          for k in shapes))
    return _Score(extra, bad, missing, hash(signature))


def _options(spec: ModelSpec, config: dict[str, Any]) -> list[tuple[str, ...]]:
    """Config entries a search may change: integers and lists of integers (nested one
    level for spandrel's ``hyperparameters``), never the scale."""
    paths: list[tuple[str, ...]] = []
    for key, value in config.items():
        if key == "hyperparameters" and isinstance(value, dict):
            paths += [(key, k) for k, v in value.items() if _searchable(k, v)]
        elif _searchable(key, value):
            paths.append((key,))
    return paths


def _searchable(key: str, value: Any) -> bool:
    if key in _SCALE_KEYS or key in ("num_in_ch", "num_out_ch", "in_nc", "out_nc",
                                      "in_chans"):
        return False
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, list) and 0 < len(value) <= 8 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def _get(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = config
    for part in path:
        value = value[part]
    return value


def _set(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    new = _copy(config)
    target = new
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return new


def _pool(shapes: dict[str, tuple[int, ...]], counts_only: bool = False) -> list[int]:
    """Numbers the file shows: counts (path indices + 1) and, unless ``counts_only``,
    sizes (tensor dims)."""
    values: set[int] = set()
    for key, shape in shapes.items():
        values.update(int(i) + 1 for i in _INDEX.findall(key))
        if not counts_only:
            values.update(shape)
    return sorted(v for v in values if 1 <= v <= MAX_POOL)


def _values(current: Any, pool: list[int], counts: list[int]) -> Iterator[Any]:
    """Values to try for one option: each pool number; for a list (per-stage depths or
    heads), each count as its length and as every entry."""
    if isinstance(current, list):
        for n in counts:
            if n <= 8 and n != len(current):
                yield (current + [current[-1]] * n)[:n]
        for v in counts:
            if any(x != v for x in current):
                yield [v] * len(current)
        return
    for v in pool:
        if v != current:
            yield v


@dataclass
class _Found:
    """A registered architecture and configuration whose keys take the file's."""

    spec: ModelSpec
    scale: int
    config: dict[str, Any]
    score: _Score
    changed: list[str]


class _Search:
    """Configurations of one registered architecture at one scale, scored against the
    file's keys; builds are cached (each costs milliseconds to a second)."""

    def __init__(self, spec: ModelSpec, scale: int, shapes: dict[str, tuple[int, ...]],
                 options: dict[str, Any], meta: bool) -> None:
        self.spec, self.scale, self.shapes, self.meta = spec, scale, shapes, meta
        self.options = options
        self.published = _with_options(spec.config_for(scale), options)
        self.small = _with_options(spec.small_config(scale), options)
        self.cache: dict[str, _Score | None] = {}

    def evaluate(self, config: dict[str, Any]) -> _Score | None:
        text = repr(config)
        if text not in self.cache:
            try:
                self.cache[text] = _score(_build(self.spec, config, self.meta).net,
                                          self.shapes)
            except Exception:  # options that do not build together
                self.cache[text] = None
        return self.cache[text]

    def first(self) -> tuple[tuple[int, int, int], dict[str, Any]] | None:
        """The better of the small and the published configuration (small first: it is
        cheap, and when it fits exactly the published one is not built)."""
        best = None
        for start in (self.small, self.published):
            score = self.evaluate(start)
            if score is not None and (best is None or score.key < best[0]):
                best = (score.key, start)
            if best is not None and best[0] == (0, 0, 0):
                break
        return best

    def run(self) -> _Found | None:
        """From :meth:`first`, one option at a time over the numbers the file shows (the
        user's ``--arch-opt`` stay fixed), until the keys and sizes agree or nothing
        improves."""
        best = self.first()
        if best is None:
            return None
        pool, counts = _pool(self.shapes), _pool(self.shapes, counts_only=True)
        fixed = {("hyperparameters", k) for k in self.options} | {(k,) for k in self.options}
        paths = [p for p in _options(self.spec, best[1]) if p not in fixed]
        for _ in range(SEARCH_ROUNDS):
            if best[0] == (0, 0, 0):
                break
            improved = False
            for path in paths:
                current = self.evaluate(best[1])
                for number, value in enumerate(_values(_get(best[1], path), pool, counts)):
                    config = _set(best[1], path, value)
                    score = self.evaluate(config)
                    if number == 0 and score is not None and current is not None \
                            and score.signature == current.signature:
                        break  # the option changes nothing the file shows (SwinIR's img_size)
                    if score is not None and score.key < best[0]:
                        best, improved = (score.key, config), True
            if not improved:
                break
        score = self.evaluate(best[1])
        if score is None or score.extra:
            return None
        changed = [f"{p[-1]}={_get(best[1], p)}" for p in _options(self.spec, best[1])
                   if _has(self.published, p) and _get(best[1], p) != _get(self.published, p)]
        return _Found(self.spec, self.scale, best[1], score, changed)


def _has(config: dict[str, Any], path: tuple[str, ...]) -> bool:
    try:
        _get(config, path)
    except (KeyError, TypeError):
        return False
    return True


def _with_options(config: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    if not options:
        return config
    if isinstance(config.get("hyperparameters"), dict):
        return {**config, "hyperparameters": {**config["hyperparameters"], **options}}
    return {**config, **options}


def _registered(named: _Named, scales: list[int] | None, only: ModelSpec | None,
                options: dict[str, Any], family: str) -> Iterator[tuple[_Found, _Named]]:
    """Registered architectures of one family (``srprune``: srprune's own, ``spandrel``:
    the registered spandrel ones) whose key patterns hold the file's, nearest first (by
    their small or published configuration), each searched when its turn comes."""
    variants = [_strip(named, p) for p in _prefixes(list(named.state))]
    queue: list[tuple[tuple, _Search, _Named]] = []
    specs = [only] if only is not None else [MODELS.get(n) for n in MODELS.names()]
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        if not isinstance(spec, ModelSpec):
            continue
        if only is None and (spec.family == "spandrel") != (family == "spandrel"):
            continue
        for scale in spec.scales:
            if scales is not None and scale not in scales:
                continue
            # one search per builder and configuration (drn-s30's small build is drn-s's)
            marker = (spec.family, repr(spec.small_config(scale)))
            if marker in seen:
                continue
            ref = _reference(spec, scale)
            if ref is None:
                continue
            for variant in variants:
                patterns = {_pattern(k) for k in variant.state}
                if patterns and patterns <= ref.patterns:
                    break
            else:
                continue
            seen.add(marker)
            shapes = {k: tuple(v.shape) for k, v in variant.state.items()}
            search = _Search(spec, scale, shapes, options, ref.meta_ok)
            first = search.first()
            if first is not None:
                queue.append(((first[0][0], first[0][1], len(ref.patterns - patterns),
                               first[0][2]), search, variant))
    queue.sort(key=lambda item: item[0])
    for _, search, variant in queue:
        hit = search.run()
        if hit is not None:
            yield hit, variant


# ------------------------------------------------------------ weights into a built model


def _assemble(model: SRModel, named: _Named, where: str) -> tuple[list[str], int]:
    """Load the file's tensors into ``model.net`` (reshaped where only the layout differs,
    layers shrunk where the file is narrower, folded parameters recovered); returns the
    learned parameters the file does not hold (kept as built) and how many were
    recovered from folded constants."""
    from srprune.io.artifact import resize_to_state

    net = model.net
    own = net.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        value = named.state.get(key)
        if value is None:
            continue
        if value.numel() == target.numel():
            value = value.reshape(target.shape)
        elif value.dim() != target.dim():
            raise ValueError(f"{key} is {tuple(value.shape)} in the file, "
                             f"{tuple(target.shape)} in the architecture")
        state[key] = value.to(target.dtype)
    learned = {k for k, _ in net.named_parameters()}
    missing = [k for k in own if k not in state and k in learned]
    recovered = _recover(net, missing, named)
    state.update(recovered)
    missing = [k for k in missing if k not in state]
    for key, target in own.items():
        state.setdefault(key, target)
    if any(tuple(state[k].shape) != tuple(own[k].shape) for k in own):
        resize_to_state(net, state, where)
    net.load_state_dict(state, strict=True)
    return missing, len(recovered)


def _recover(net: nn.Module, missing: list[str], named: _Named) -> dict[str, torch.Tensor]:
    """Parameters the exporter folded into constants, where the architecture shows how:
    a table gathered by an integer buffer of its module, or scoped constants read by the
    module's ``Mul``/``Add`` in the order the module registers its parameters."""
    by_module: dict[str, list[str]] = {}
    for key in missing:
        by_module.setdefault(key.rpartition(".")[0], []).append(key)
    recovered: dict[str, torch.Tensor] = {}
    for module_name, keys in by_module.items():
        module = net.get_submodule(module_name) if module_name else net
        inside = [c for c in named.consts if c.scope == module_name
                  or c.scope.startswith(module_name + ".")]
        for key in keys:
            param = net.get_parameter(key)
            value = _gathered(module, param, inside)
            if value is not None:
                recovered[key] = value
        exact = [c for c in named.consts if c.scope == module_name
                 and c.op in ("Mul", "Add", "Sub", "Div")]
        used: set[int] = set()
        for key in keys:
            if key in recovered:
                continue
            param = net.get_parameter(key)
            for index, const in enumerate(exact):
                if index not in used and const.tensor.numel() == param.numel():
                    recovered[key] = const.tensor.reshape(param.shape).clone()
                    used.add(index)
                    break
    return recovered


def _gathered(module: nn.Module, param: torch.Tensor, consts: list[_Const]
              ) -> torch.Tensor | None:
    """``param`` (rows, heads) from a folded ``param[index]`` laid out as (heads, n, n)
    (SwinIR's relative position bias), ``index`` being an integer buffer of the module."""
    if param.dim() != 2:
        return None
    rows, heads = param.shape
    for buffer in module.buffers(recurse=False):
        if buffer.is_floating_point() or buffer.numel() == 0 or buffer.is_meta:
            continue
        index = buffer.flatten().long()
        if int(index.min()) < 0 or int(index.max()) >= rows \
                or index.unique().numel() != rows:
            continue
        for const in consts:
            if const.tensor.numel() != heads * index.numel():
                continue
            values = const.tensor.reshape(heads, index.numel()).t()
            table = torch.empty(rows, heads)
            table[index] = values
            if torch.allclose(table[index], values):
                return table
    return None


# ----------------------------------------------------------------------------- the runtime


@dataclass
class _Runtime:
    """ONNX Runtime on the file: its input, the LR size it takes, the scale it makes."""

    session: Any
    feed: str
    size: tuple[int, int]
    scale: int | None
    reason: str = ""


def _session(path: Path) -> Any:
    """One-thread ONNX Runtime CPU session, quiet (the front door sits below srprune's
    measuring code, so it opens its own)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception classes
        text = str(exc).strip().splitlines()
        raise SrpruneError(f"ONNX Runtime cannot load {path}: "
                           f"{text[0] if text else type(exc).__name__}") from None


def _runtime(path: Path, g: _Graph) -> _Runtime:
    """One run of the file on a probe input; refuses graphs that are not RGB -> RGB at an
    integer scale. A graph ONNX Runtime loads but cannot run there gives no scale (and no
    parity check later), with the reason."""
    if len(g.inputs) != 1:
        raise SrpruneError(f"{path}: an ONNX model with {len(g.inputs)} inputs is not an SR "
                           f"model (one RGB image in); {RUNTIME_HINT}")
    dims = g.value_info_dims(g.inputs[0])
    if len(dims) != 4 or dims[1] not in (None, 3):
        shown = "x".join("?" if d is None else str(d) for d in dims)
        raise SrpruneError(f"{path}: its input is {shown or 'a scalar'}, not an RGB image "
                           f"batch (N, 3, H, W): not an SR model srprune can map; "
                           f"{RUNTIME_HINT}")
    height = dims[2] or PROBE_SIZE
    width = dims[3] or PROBE_SIZE
    session = _session(path)
    feed = session.get_inputs()[0].name
    x = _probe((height, width))
    try:
        out = session.run(None, {feed: (x / WRAPPER_RANGE).numpy()})[0]
    except Exception as exc:  # ORT's own error types
        return _Runtime(session, feed, (height, width), None,
                        f"ONNX Runtime cannot run it ({_first_line(exc)[:120]})")
    shape = tuple(np.asarray(out).shape)
    scale = shape[2] // height if len(shape) == 4 and height else 0
    if len(shape) != 4 or shape[1] != 3 or scale < 1 or shape[2] != scale * height \
            or shape[3] != scale * width:
        raise SrpruneError(f"{path}: not an SR model (a 1x3x{height}x{width} input gives "
                           f"{'x'.join(map(str, shape)) or 'a scalar'}, not an RGB image at "
                           f"an integer scale); {RUNTIME_HINT}")
    return _Runtime(session, feed, (height, width), scale)


def _probe(size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A smooth RGB input in [0, 255] (noise upsampled): natural-image-like values keep
    random and trained nets in their well-conditioned range."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size[0] // 4 + 1, size[1] // 4 + 1, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=True) * 255.0


def _parity(model: SRModel, runtime: _Runtime, input_range: float) -> float:
    """max |torch - ONNX Runtime| on the probe input, over max(1, max |output|), both on
    the 0..1 scale."""
    x = _probe(runtime.size, seed=1)
    with torch.no_grad():
        ours = model.eval()(x).float() / model.rgb_range
    theirs = runtime.session.run(None, {runtime.feed: (x / 255.0 * input_range).numpy()})[0]
    theirs = torch.from_numpy(np.asarray(theirs, dtype=np.float32)) / input_range
    if tuple(theirs.shape) != tuple(ours.shape):
        return math.inf
    reach = max(1.0, float(ours.abs().max()))
    return float((theirs - ours).abs().max()) / reach


def _wrapped(g: _Graph) -> bool:
    """srprune's export wrapper around a [0, 1] net: the input divided by 255 first and
    the output multiplied by 255 last."""
    if not g.inputs or not g.outputs:
        return False
    first = g.consumers.get(g.inputs[0].name, [])
    last = g.producer.get(g.outputs[0].name)

    def by(node: Any, ops: tuple[str, ...], value: float) -> bool:
        if node is None or node.op_type not in ops:
            return False
        consts = [g.tensor(n) for n in node.input if g.is_constant(n)]
        return len(consts) == 1 and consts[0] is not None and consts[0].numel() == 1 \
            and abs(float(consts[0].flatten()[0]) - value) < 1e-6 * max(1.0, value)

    head = any(by(n, ("Div",), WRAPPER_RANGE) or by(n, ("Mul",), 1 / WRAPPER_RANGE)
               for n in first)
    return head and by(last, ("Mul",), WRAPPER_RANGE)


# ------------------------------------------------------------------------------- the front


@dataclass
class _Accepted:
    """A model that reproduces the file, and how it was found."""

    model: SRModel
    label: str
    how: str
    not_in_file: list[str] = field(default_factory=list)
    parity: float | None = None
    input_range: float = 255.0


def load_onnx_model(path: str | Path, scale: int | None = None, arch: str | None = None,
                    arch_options: dict[str, Any] | None = None) -> SRModel:
    """An ``SRModel`` with the exact weights of an ONNX model, its architecture detected
    (see the module doc) or ``arch`` (a registered name or a spandrel architecture, with
    ``arch_options`` as builder arguments or hyperparameters)."""
    path = Path(path)
    options = dict(arch_options or {})
    if options and arch is None:
        raise SrpruneError(f"--arch-opt applies with --arch NAME; {path} names no "
                           "architecture")
    proto = _read(path)
    g = _Graph(proto)
    runtime = _runtime(path, g)
    if scale is not None and runtime.scale is not None and scale != runtime.scale:
        raise SrpruneError(f"{path} is a x{runtime.scale} model, but --scale {scale} was given")
    scale = runtime.scale or scale
    wrapped = _wrapped(g)
    reasons: list[str] = []
    with warnings.catch_warnings():  # trial builds of candidates warn (torch.meshgrid, ...)
        warnings.simplefilter("ignore")
        accepted = _by_names(path, g, None if scale is None else [scale], arch, options,
                             runtime, wrapped, reasons)
        if accepted is None:
            accepted = _by_order(path, g, scale, arch, options, runtime, wrapped, reasons)
    if accepted is None:
        _no_fit(path, g, arch, reasons)
    return _finish(accepted, path, proto, runtime)


def _by_names(path: Path, g: _Graph, scales: list[int] | None, arch: str | None,
              options: dict[str, Any], runtime: _Runtime, wrapped: bool,
              reasons: list[str]) -> _Accepted | None:
    """The names route: srprune's architectures, spandrel's reader, registered spandrel
    architectures; the first candidate that reproduces the file wins."""
    named = _named(g)
    if len(named.state) < 2:
        return None
    how = "tensor and node names" if named.by_node else "tensor names"
    only = None
    if arch is not None:
        spec = MODELS.get(arch) if arch in MODELS.names() else None
        if not isinstance(spec, ModelSpec):  # a spandrel architecture by its own name
            if options:
                return None  # hyperparameters given: the execution-order route builds them
            wanted = arch.lower().replace(" ", "")
            found = _spandrel_reader(path, named, runtime, wrapped, how, reasons)
            if found is not None and wanted in (
                    str(found.model.config.get("package", "")).lower(),
                    found.model.name.removeprefix("spandrel:").lower().replace(" ", "")):
                return found
            # the registered models of that spandrel architecture (swinir-light for SwinIR)
            spec = next((MODELS.get(n) for n in MODELS.names()
                         if isinstance(MODELS.get(n), ModelSpec)
                         and MODELS.get(n).family == "spandrel"
                         and str(MODELS.get(n).config_for(None).get("package", "")).lower()
                         == wanted), None)
            if spec is None:
                return None
        only = spec
    families = ("srprune", "spandrel-reader", "spandrel") if only is None else (
        ("spandrel",) if only.family == "spandrel" else ("srprune",))
    for family in families:
        if family == "spandrel-reader":
            tried = _spandrel_reader(path, named, runtime, wrapped, how, reasons)
            if tried is not None:
                return tried
            continue
        for hit, variant in _registered(named, scales, only, options, family):
            source = "spandrel" if family == "spandrel" else "srprune"
            label = f"{hit.spec.name} x{hit.scale} ({source}" \
                + (f", {', '.join(hit.changed)}" if hit.changed else "") + ")"
            try:
                model = hit.spec.build(_copy(hit.config))
                missing, recovered = _assemble(model, variant, str(path))
            except (SrpruneError, ValueError, RuntimeError, KeyError) as exc:
                reasons.append(f"{label}: {_first_line(exc)[:160]}")
                continue
            if hit.score.bad:
                label += ", narrower layers (pruned)"
            in_range = WRAPPER_RANGE if family == "srprune" or wrapped else 1.0
            checked = _check(model, runtime, in_range, label, reasons)
            if checked is False:
                continue
            found_how = how + (f" ({recovered} folded parameters recovered from constants)"
                               if recovered else "")
            return _Accepted(model, label, found_how, missing, checked, in_range)
    return None


def _spandrel_reader(path: Path, named: _Named, runtime: _Runtime, wrapped: bool,
                     how: str, reasons: list[str]) -> _Accepted | None:
    """spandrel's own detection on the keys (any hyperparameters of its architectures)."""
    from srprune.models.detect import _spandrel_model

    for prefix in reversed(_prefixes(list(named.state))):
        variant = _strip(named, prefix)
        try:
            model = _spandrel_model(dict(variant.state), path)
        except (SrpruneError, ValueError, RuntimeError, KeyError, TypeError):
            continue
        label = model.meta.get("detected", model.name)
        in_range = WRAPPER_RANGE if wrapped else 1.0
        checked = _check(model, runtime, in_range, label, reasons)
        if checked is False:
            continue
        return _Accepted(model, label, how, [], checked, in_range)
    return None


def _check(model: SRModel, runtime: _Runtime, in_range: float, label: str,
           reasons: list[str]) -> float | bool | None:
    """The parity of a candidate with the file (None: not measured), or False (with a
    reason) when its output is not the file's."""
    if runtime.scale is None:
        return None
    try:
        diff = _parity(model, runtime, in_range)
    except Exception as exc:  # the candidate does not run at the probe size
        reasons.append(f"{label}: does not run on the probe input ({_first_line(exc)[:100]})")
        return False
    if not diff <= PARITY_RTOL:
        reasons.append(f"{label}: its weights fit but its output differs from the file's by "
                       f"{diff:.3g} (relative)")
        return False
    return diff


def _by_order(path: Path, g: _Graph, scale: int | None, arch: str | None,
              options: dict[str, Any], runtime: _Runtime, wrapped: bool,
              reasons: list[str]) -> _Accepted | None:
    """The execution-order route: the graph in ncnn's layer form, fitted by
    :func:`srprune.models.ncnn_source.fit_ncnn_layers`."""
    from srprune.models.ncnn_source import fit_ncnn_layers

    try:
        parsed = _as_ncnn(g, path, wrapped)
        fitted = fit_ncnn_layers(parsed, path, scale, arch, options or None,
                                 what="ONNX model")
    except SrpruneError as exc:
        text = str(exc)
        if text.startswith("unknown architecture"):
            raise
        if "no architecture matches" not in text:  # ncnn's own summary: said again here
            reasons.append(text.removeprefix(f"{path}: ").removeprefix(
                f"{path} does not map onto {arch}: "))
        return None
    except (ValueError, RuntimeError, KeyError, IndexError) as exc:
        reasons.append(f"execution order: {_first_line(exc)[:160]}")
        return None
    in_range = WRAPPER_RANGE if wrapped else fitted.input_range
    checked = _check(fitted.model, runtime, in_range, fitted.label, reasons)
    if checked is False:
        return None
    return _Accepted(fitted.model, fitted.label, fitted.how, [], checked, in_range)


_BINARY = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3}
_REVERSED = {"Sub": 7, "Div": 8}  # ncnn's rsub / rdiv: the constant comes first
_RESIZE = {"nearest": 1, "linear": 2, "cubic": 3}


def _as_ncnn(g: _Graph, path: Path, wrapped: bool) -> Any:
    """The graph as ncnn layers (what :mod:`srprune.models.ncnn_source` fits): weight
    nodes with their tensors in ncnn's layout, constant operands of the arithmetic before
    the first convolution as ``MemoryData`` (SPAN's mean), resizes as ``Interp``, every
    other node by its ONNX type. srprune's export wrapper (x / 255 ... * 255) is left out:
    the layers are those of the net inside."""
    from srprune.io.ncnn import NcnnLayer, NcnnModel

    source = g.inputs[0].name
    rename: dict[str, str] = {}
    skip: set[int] = set()
    if wrapped:
        head = next(n for n in g.consumers.get(source, []) if n.op_type in ("Div", "Mul"))
        rename[head.output[0]] = source
        skip.update({id(head), id(g.producer[g.outputs[0].name])})
    layers = [NcnnLayer("Input", "input", [], [source])]
    memory: set[str] = set()
    seen_conv = False
    for number, node in enumerate(g.nodes):
        if id(node) in skip or node.op_type == "Constant":
            continue
        dynamic = [rename.get(n, n) for n in node.input if n and not g.is_constant(n)]
        if not dynamic and node.op_type != "Identity":
            continue  # folding leftovers: constants only
        name = node.name or f"{node.op_type.lower()}_{number}"
        layer = _ncnn_layer(g, node, name, dynamic)
        if layer.type == "BinaryOp" and not seen_conv and len(dynamic) == 1 \
                and not layer.params.get(1):
            const = next(n for n in node.input if n and g.is_constant(n))
            if const not in memory:
                memory.add(const)
                data = g.tensor(const)
                assert data is not None
                dims = [int(d) for d in data.shape if d != 1] or [1]
                layers.append(NcnnLayer("MemoryData", g.source(const), [], [const],
                                        {0: dims[-1]}, {"data": data.reshape(dims)}))
            order = [n for n in node.input if n]
            layer.inputs = [rename.get(n, n) for n in order]
        if layer.type in ("Convolution", "ConvolutionDepthWise", "Deconvolution",
                          "DeconvolutionDepthWise"):
            seen_conv = True
        layers.append(layer)
    return NcnnModel(path, None, layers, len({b for la in layers
                                              for b in la.inputs + la.outputs}))


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ncnn_layer(g: _Graph, node: Any, name: str, inputs: list[str]) -> Any:
    """One ONNX node as an ncnn layer (see :func:`_as_ncnn`)."""
    from srprune.io.ncnn import NcnnLayer

    op, attrs, outputs = node.op_type, _attrs(node), list(node.output)
    tensors = [g.tensor(n) if n and g.is_constant(n) else None for n in node.input]
    if op in ("Conv", "ConvTranspose") and len(tensors) > 1 and tensors[1] is not None \
            and tensors[1].dim() == 4:
        weight, group = tensors[1], int(attrs.get("group", 1))
        bias = tensors[2] if len(tensors) > 2 else None
        kh, kw = weight.shape[-2:]
        if op == "ConvTranspose":  # torch (in, out/g, k, k) -> ncnn (out, in/g, k, k)
            n_in, out_g = weight.shape[:2]
            weight = weight.reshape(group, n_in // group, out_g, kh, kw).transpose(1, 2) \
                .reshape(group * out_g, n_in // group, kh, kw)
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        strides = list(attrs.get("strides", [1, 1]))
        dilations = list(attrs.get("dilations", [1, 1]))
        params: dict[int, Any] = {
            0: int(weight.shape[0]), 1: int(kw), 11: int(kh), 2: int(dilations[-1]),
            12: int(dilations[0]), 3: int(strides[-1]), 13: int(strides[0]),
            4: int(pads[1]), 14: int(pads[0]), 15: int(pads[3]), 16: int(pads[2]),
            5: int(bias is not None), 6: int(weight.numel())}
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            params[4] = -233
        if op == "ConvTranspose":
            extra = list(attrs.get("output_padding", [0, 0]))
            params.update({18: int(extra[-1]), 19: int(extra[0])})
        if group > 1:
            params[7] = group
        kind = ("Convolution" if op == "Conv" else "Deconvolution") + (
            "DepthWise" if group > 1 else "")
        weights = {"weight": weight.contiguous()}
        if bias is not None:
            weights["bias"] = bias.flatten()
        return NcnnLayer(kind, name, inputs[:1], outputs, params, weights, "float32")
    if op == "PRelu" and len(tensors) > 1 and tensors[1] is not None:
        slope = tensors[1].flatten()
        return NcnnLayer("PReLU", name, inputs[:1], outputs, {0: slope.numel()},
                         {"slope": slope})
    if op in _BINARY:
        consts = [t for t in tensors if t is not None]
        params = {0: _BINARY[op]}
        if len(consts) == 1 and consts[0].numel() == 1 and len(inputs) == 1:
            first_const = tensors[0] is not None
            params = {0: _REVERSED.get(op, _BINARY[op]) if first_const else _BINARY[op],
                      1: 1, 2: float(consts[0].flatten()[0])}
        return NcnnLayer("BinaryOp", name, inputs, outputs, params)
    if op == "Resize":
        scales = tensors[2] if len(tensors) > 2 else None
        mode = attrs.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if scales is not None and scales.numel() == 4:
            return NcnnLayer("Interp", name, inputs[:1], outputs,
                             {0: _RESIZE.get(mode, 0), 1: float(scales[2]),
                              2: float(scales[3])})
    if op == "DepthToSpace":
        return NcnnLayer("PixelShuffle", name, inputs[:1], outputs,
                         {0: int(attrs.get("blocksize", 1))})
    if op == "Identity":
        return NcnnLayer("Split", name, inputs, outputs)
    return NcnnLayer(op, name, inputs, outputs)


def _no_fit(path: Path, g: _Graph, arch: str | None, reasons: list[str]) -> None:
    """One line: why the named architecture does not fit, or that none does."""
    counts = {op: sum(1 for n in g.nodes if n.op_type == op)
              for op in ("Conv", "ConvTranspose", "PRelu", "MatMul", "Gemm")}
    shown = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no weight layers"
    if arch is not None:
        raise SrpruneError(f"{path} does not map onto {arch}: "
                           f"{reasons[0] if reasons else 'no candidate'}; {RUNTIME_HINT}")
    why = f" (closest: {reasons[0]})" if reasons else ""
    raise SrpruneError(f"{path}: no architecture matches this ONNX model ({shown}){why}; name "
                       f"it with --arch NAME --arch-opt key=value; {RUNTIME_HINT}")


def _finish(accepted: _Accepted, path: Path, proto: Any, runtime: _Runtime) -> SRModel:
    """srprune's conventions (as the checkpoint loader sets them: arch, config, name, meta)
    and what the file was."""
    model = accepted.model.eval()
    opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                 None)
    detected = f"{accepted.label}; ONNX weights mapped by {accepted.how}"
    if accepted.not_in_file:
        detected += (f"; {len(accepted.not_in_file)} parameters the graph does not use "
                     f"(e.g. {accepted.not_in_file[0]}) keep their built values")
    if accepted.parity is not None:
        detected += f"; ONNX Runtime parity {accepted.parity:.1e}"
    else:
        detected += f"; not checked against ONNX Runtime ({runtime.reason})"
    fused = model.meta.get("reparameterized", 0)
    if fused and "re-parameterised" not in detected:
        detected += f"; {fused} re-parameterised blocks fused to the deploy form"
    model.meta.update(
        weights=str(path), detected=detected,
        onnx={"path": str(path), "mapped_by": accepted.how, "opset": opset,
              "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
              "input_range": accepted.input_range, "parity": accepted.parity,
              "not_in_file": list(accepted.not_in_file)})
    return model

