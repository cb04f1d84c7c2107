"""The SR-correct dependency graph: the only module that talks to Torch-Pruning.

Torch-Pruning 1.6 treats ``nn.PixelShuffle`` as channel preserving; here it is a layer of its
own whose output channel ``c`` comes from the ``r^2`` producer channels ``c*r^2 .. c*r^2+r^2-1``
(index mappings ``k -> k // r^2`` de-duplicated, and ``c -> c*r^2 + t``). Image-space convs
(those producing the colour channels) are protected automatically.

A :class:`PruningUnit` is one coupled channel set: the producer layers whose outputs and the
consumer layers whose inputs must shrink together. Its ``width`` counts *selectable* channels:
for a unit feeding a PixelShuffle(r) one selectable channel is a block of ``group_size = r^2``
producer channels. After every prune every layer's weights are checked against its channel
attributes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import _helpers
from torch_pruning.dependency import index_mapping as tp_index_mapping
from torch_pruning.dependency import shape_infer as tp_shape_infer

from srprune.errors import InternalError, SrpruneError
from srprune.hooks import hooked
from srprune.prune.contracts import LayerSlice

SCOPES = ("internal", "all")
# Torch-Pruning op nodes after which a unit's pruning is only trusted once a trial ran
_RISKY_OPS = {"_ReshapeOp", "_UnbindOp", "_ExpandOp", "_SliceOp", "_SplitOp"}
_CHANNEL_ATTR = "_srprune_out_channels"


# ----------------------------------------------------------------- PixelShuffle support


class PixelShufflePruner(tp.pruner.BasePruningFunc):
    """Torch-Pruning handler for ``nn.PixelShuffle`` in its *output*-channel coordinates."""

    TARGET_MODULES = (nn.PixelShuffle,)

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        setattr(layer, _CHANNEL_ATTR, getattr(layer, _CHANNEL_ATTR) - len(set(idxs)))
        return layer

    prune_in_channels = prune_out_channels  # channels pass through: intra-layer coupling

    def get_out_channels(self, layer: nn.Module) -> int:
        return getattr(layer, _CHANNEL_ATTR)

    def get_in_channels(self, layer: nn.Module) -> int:
        return getattr(layer, _CHANNEL_ATTR)


class _ToShuffled:
    """Producer channel k -> shuffled channel k // r^2 (one index per shuffled channel)."""

    def __init__(self, block: int) -> None:
        self.block = block

    def __call__(self, idxs: list) -> list:
        seen: dict[int, _helpers._HybridIndex] = {}
        for i in idxs:
            seen.setdefault(i.idx // self.block,
                            _helpers._HybridIndex(idx=i.idx // self.block, root_idx=i.root_idx))
        return list(seen.values())


class _FromShuffled:
    """Shuffled channel c -> producer channels c*r^2 .. c*r^2 + r^2 - 1."""

    def __init__(self, block: int) -> None:
        self.block = block

    def __call__(self, idxs: list) -> list:
        return [_helpers._HybridIndex(idx=i.idx * self.block + t, root_idx=i.root_idx)
                for i in idxs for t in range(self.block)]


_original_update = tp_index_mapping.update_index_mapping


def _update_index_mapping(graph: tp.DependencyGraph) -> None:
    global _CHANNEL_MEMO
    _CHANNEL_MEMO = {}
    try:
        _original_update(graph)
    finally:
        _CHANNEL_MEMO = None
    for module, node in graph.module2node.items():
        if not isinstance(module, nn.PixelShuffle):
            continue
        block = module.upscale_factor**2
        for producer in node.inputs:
            for dep in producer.dependencies:
                if dep.target is node:
                    dep.index_mapping[0] = _ToShuffled(block)
            for dep in node.dependencies:
                if dep.target is producer:
                    dep.index_mapping[0] = _FromShuffled(block)


# Torch-Pruning infers a concatenation's channel counts by walking the graph again from every
# node, without remembering results: on dense concatenations (ESRGAN: 5 per RDB, 3 RDBs a
# block) the walk grows exponentially with depth, hits its 500-call budget at 8 blocks and the
# trace fails ("int + NoneType"). While an index-mapping update runs, nothing changes widths,
# so each node's answer is remembered for that update: the walk becomes linear.
_CHANNEL_MEMO: dict[tuple[str, int], int | None] | None = None


def _memoized(kind: str, infer: Callable) -> Callable:
    def infer_once(graph: object, node: object, recursive_depth: list) -> int | None:
        if _CHANNEL_MEMO is None:
            return infer(graph, node, recursive_depth)
        key = (kind, id(node))
        if key not in _CHANNEL_MEMO:
            _CHANNEL_MEMO[key] = infer(graph, node, recursive_depth)
        return _CHANNEL_MEMO[key]

    infer_once.srprune_memo = True  # type: ignore[attr-defined]
    return infer_once


def _install_pixel_shuffle_fix() -> None:
    """Patch Torch-Pruning's index-mapping update and memoise its channel inference
    (idempotent, process-wide)."""
    if tp_index_mapping.update_index_mapping is not _update_index_mapping:
        tp_index_mapping.update_index_mapping = _update_index_mapping
    for name, kind in (("infer_in_channels_recursively", "in"),
                       ("infer_out_channels_recursively", "out")):
        current = getattr(tp_shape_infer, name)
        if not getattr(current, "srprune_memo", False):
            setattr(tp_shape_infer, name, _memoized(kind, current))


# ----------------------------------------------------------------- units


@dataclass
class Member:
    """One layer dimension inside a unit: ``index[j]`` lists its channels for unit channel j."""

    name: str
    module: nn.Module
    dim: str  # "out" (channels the layer produces) or "in" (channels it reads)
    index: torch.Tensor  # LongTensor (width, m)

    @property
    def per_channel(self) -> int:
        return int(self.index.shape[1])


@dataclass
class PruningUnit:
    """A coupled channel set, in network order, as criteria and strategies see it."""

    uid: int
    name: str  # the root producer layer's name
    kind: str  # "internal", "trunk" or "attention"
    group_size: int
    width: int
    original_width: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    blocked: str = ""  # why this unit cannot be pruned safely ("" when it can)
    _graph: SRGraph | None = field(default=None, repr=False, compare=False)

    def members(self) -> list[Member]:
        """Current member layers and their channel indices (recomputed from the graph)."""
        assert self._graph is not None
        return self._graph.members(self)

    def consumer_modules(self) -> list[LayerSlice]:
        """(name, module, index) of the convs/linears that read this unit's channels."""
        return [LayerSlice(m.name, m.module, m.index) for m in self.members()
                if m.dim == "in" and isinstance(m.module, (nn.Conv2d, nn.Linear))]

    def producer_modules(self) -> list[LayerSlice]:
        """(name, module, index) of the convs/linears that write this unit's channels."""
        return [LayerSlice(m.name, m.module, m.index) for m in self.members()
                if m.dim == "out" and isinstance(m.module, (nn.Conv2d, nn.Linear))]

    def as_dict(self) -> dict:
        return {"uid": self.uid, "name": self.name, "kind": self.kind,
                "group_size": self.group_size, "width": self.width,
                "original_width": self.original_width, "producers": self.producers,
                "consumers": self.consumers, "blocked": self.blocked}


# ----------------------------------------------------------------- the graph


def _output_transform(out: object) -> torch.Tensor:
    outs = out if isinstance(out, (list, tuple)) else [out]
    return sum(o.sum() for o in outs)


def _final(out: object) -> torch.Tensor:
    return out[-1] if isinstance(out, (list, tuple)) else out


class SRGraph:
    """Torch-Pruning dependency graph of an SR net with SR-specific rules."""

    def __init__(self, net: nn.Module, scale: int, example_size: tuple[int, int] = (16, 16),
                 protect: Sequence[str] = (), n_colors: int = 3, screen: bool = True) -> None:
        _install_pixel_shuffle_fix()
        self.net, self.scale, self.n_colors = net, scale, n_colors
        self._settings = {"example_size": tuple(example_size), "protect": tuple(protect),
                          "n_colors": n_colors}
        self._screen_units = screen
        device = next(net.parameters()).device
        self.example = torch.rand(1, n_colors, *example_size, device=device) * 255
        self.names = {m: n for n, m in net.named_modules()}
        self._order: list[nn.Module] = []
        self._spatial: dict[nn.Module, list[tuple[int, int]]] = {}
        self._probe()
        was_training = net.training
        try:
            self.dg = tp.DependencyGraph().build_dependency(
                net, self.example, output_transform=_output_transform,
                customized_pruners={nn.PixelShuffle: PixelShufflePruner()}, verbose=False,
            )
        except Exception as exc:  # Torch-Pruning raises many kinds on unsupported graphs
            raise SrpruneError(f"the dependency graph cannot trace this model: {exc}") from None
        finally:
            net.train(was_training)
        self.protected = self._protected_layers(protect)
        self._units: list[PruningUnit] | None = None

    # -- inspection --------------------------------------------------------------

    def _probe(self) -> None:
        """One forward pass: execution order, spatial sizes, PixelShuffle widths, SR check."""

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if module not in self._spatial:
                self._order.append(module)
                self._spatial[module] = []
            if isinstance(module, nn.PixelShuffle):
                setattr(module, _CHANNEL_ATTR, output.shape[1])
            if output.dim() == 4:
                self._spatial[module].append((output.shape[2], output.shape[3]))
            elif output.dim() == 3:  # tokens (batch, tokens, features): a transformer layer
                self._spatial[module].append((output.shape[1], 1))
            else:
                self._spatial[module].append((1, 1))

        watched = [m for m in self.net.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear, nn.PixelShuffle))]
        try:
            with hooked((m, hook) for m in watched), torch.no_grad():
                out = _final(self.net(self.example))
        except Exception as exc:
            raise SrpruneError(f"the model fails on a {tuple(self.example.shape)} input: "
                               f"{exc}") from None
        if any(isinstance(m, nn.PixelShuffle) for m in self.net.modules()) and not any(
                isinstance(m, nn.PixelShuffle) for m in self._order):
            raise SrpruneError("model defines a PixelShuffle it never calls")
        h, w = self.example.shape[2:]
        expected = (self.example.shape[0], self.n_colors, h * self.scale, w * self.scale)
        if tuple(out.shape) != expected:
            raise SrpruneError(
                f"not an x{self.scale} SR model: a {h}x{w} input gave output "
                f"{tuple(out.shape)}, expected {expected}"
            )

    def _protected_layers(self, protect: Sequence[str]) -> list[nn.Module]:
        """Image-space layers plus the user's named layers.

        Image-space: convs producing the colour channels, and every conv whose output
        reaches a model output without passing another conv (e.g. through a PixelShuffle).
        """
        modules = dict(self.net.named_modules())
        unknown = [n for n in protect if n not in modules]
        if unknown:
            raise SrpruneError(f"cannot protect unknown layer '{unknown[0]}'")
        layers = (nn.Conv2d, nn.Linear)
        protected = [m for m in self._order
                     if isinstance(m, nn.Conv2d) and m.out_channels == self.n_colors]
        protected += [m for m in self._order
                      if isinstance(m, nn.Linear) and m.out_features == self.n_colors]
        for module, node in self.dg.module2node.items():
            if isinstance(module, layers) and self._reaches_output(node):
                protected.append(module)
        for name in protect:
            protected.extend(modules[name].modules())
        return protected

    @staticmethod
    def _reaches_output(node: object) -> bool:
        """True if a path from ``node`` ends the graph without passing another conv/linear."""
        stack, seen = list(node.outputs), set()
        while stack:
            nxt = stack.pop()
            if id(nxt) in seen:
                continue
            seen.add(id(nxt))
            if isinstance(nxt.module, (nn.Conv2d, nn.Linear)):
                continue
            if not nxt.outputs:
                return True
            stack.extend(nxt.outputs)
        return not node.outputs

    def units(self, scope: str = "internal") -> list[PruningUnit]:
        """Prunable units in network order; ``internal`` keeps trunks and attention fixed.

        Blocked units (see :meth:`blocked_units`) are never returned.
        """
        if scope not in SCOPES:
            raise SrpruneError(f"unknown scope '{scope}'; use one of {', '.join(SCOPES)}")
        units = self.all_units()
        if scope == "all":
            return [u for u in units if u.kind != "attention"]
        return [u for u in units if u.kind == "internal"]

    def all_units(self) -> list[PruningUnit]:
        """Every prunable unit, attention squeezes included (used for exact cost prediction)."""
        return [u for u in self.every_unit() if not u.blocked]

    def blocked_units(self) -> list[PruningUnit]:
        """Units that cannot be pruned safely, each with its reason in ``blocked``."""
        return [u for u in self.every_unit() if u.blocked]

    def every_unit(self) -> list[PruningUnit]:
        """All discovered units, blocked ones included, in network order."""
        if self._units is None:
            self._units = self._discover()
            if self._screen_units:
                self._screen(self._units)
        return list(self._units)

    def _discover(self) -> list[PruningUnit]:
        units = []
        for root, group, failure in self._groups():
            channels = len(group[0].idxs) if group is not None else _out_channels(root)
            unit = PruningUnit(uid=-1, name=self.names[root], kind="trunk", group_size=1,
                               width=channels, original_width=channels,
                               producers=[self.names[root]], _graph=self)
            if group is None:
                unit.blocked = f"the dependency graph cannot map its channels: {failure}"
                units.append(unit)
                continue
            try:
                width, block = self._width_and_block(group)
                members = self._members_of(group, block)
            except SrpruneError as exc:  # a coupling we cannot map channel by channel
                unit.blocked = str(exc)
                units.append(unit)
                continue
            unit.group_size, unit.width, unit.original_width = block, width, width
            unit.producers = [m.name for m in members if m.dim == "out"
                              and isinstance(m.module, (nn.Conv2d, nn.Linear))]
            unit.consumers = [m.name for m in members if m.dim == "in"
                              and isinstance(m.module, (nn.Conv2d, nn.Linear))]
            unit.kind = self._classify(group, members)
            reason = self._unsupported(group)
            if reason:
                unit.blocked = reason
            units.append(unit)
        rank = {m: i for i, m in enumerate(self._order)}
        modules = dict(self.net.named_modules())
        units.sort(key=lambda u: rank.get(modules[u.name], len(rank)))
        for i, unit in enumerate(units):
            unit.uid = i
        return units

    def _groups(self) -> Iterator[tuple[nn.Module, tp.Group | None, str]]:
        """Torch-Pruning's coupled groups, one per root conv/linear not yet covered, as
        ``DependencyGraph.get_all_groups`` finds them, except that a root whose group
        Torch-Pruning cannot compute is yielded with the failure instead of ending the scan."""
        visited: set[nn.Module] = set()
        ignored = set(self.protected) | set(self.dg.IGNORED_LAYERS_IN_TRACING)
        for module in list(self.dg.module2node):
            if module in ignored or module in visited or not isinstance(
                    module, (nn.Conv2d, nn.Linear)):
                continue
            pruner = self.dg.get_pruner_of_module(module)
            if pruner is None or pruner.get_out_channels(module) is None:
                continue
            try:
                group = self.dg.get_pruning_group(
                    module, pruner.prune_out_channels,
                    list(range(pruner.get_out_channels(module))))
            except Exception as exc:  # Torch-Pruning's index mappings can fail on odd ops
                visited.add(module)
                yield module, None, " ".join(str(exc).split())[:120] or type(exc).__name__
                continue
            prunable = True
            for dep, _ in group:
                if self.dg.is_out_channel_pruning_fn(dep.handler):
                    visited.add(dep.target.module)
                    prunable = prunable and dep.target.module not in ignored
            if prunable:
                yield module, group, ""

    def _unsupported(self, group: tp.Group) -> str:
        """Why a group cannot be pruned safely by construction ("" if it can)."""
        for item in group:
            module = item.dep.target.module
            if (isinstance(module, nn.Conv2d) and module.groups > 1
                    and not module.groups == module.in_channels == module.out_channels):
                return (f"grouped convolution {self.names[module]} (groups={module.groups}) "
                        "couples channels per group")
        return ""

    def _risky(self, unit: PruningUnit) -> bool:
        """Units whose pruning only a trial can vouch for: reshapes, slices, token layers."""
        group = self._group(unit, range(unit.width))
        kinds = {type(item.dep.target.module).__name__ for item in group}
        return bool(kinds & _RISKY_OPS) or any(
            isinstance(item.dep.target.module, (nn.Linear, nn.LayerNorm, nn.GroupNorm))
            for item in group)

    def _screen(self, units: list[PruningUnit]) -> None:
        """Trial-prune each risky unit by one channel on a copy of the net and run it; a unit
        whose trial fails (a hard-coded reshape, a shared weight, ...) is blocked with the
        failure as its reason."""
        risky = []
        for unit in units:
            if unit.blocked or unit.width < 2:
                continue
            try:
                if self._risky(unit):
                    risky.append(unit.name)
            except Exception as exc:  # Torch-Pruning cannot even map the unit's channels
                text = " ".join(str(exc).split())[:120] or type(exc).__name__
                unit.blocked = f"the dependency graph cannot map its channels: {text}"
        if not risky:
            return
        by_name = {u.name: u for u in units}
        trial = SRGraph(copy.deepcopy(self.net), self.scale, screen=False, **self._settings)
        trial_units = {u.name: u for u in trial.every_unit()}
        for name in risky:
            unit = trial_units[name]
            touched = {item.dep.target.module for item in trial._group(unit, range(unit.width))
                       if isinstance(item.dep.target.module, nn.Module)}
            saved = {m: _snapshot(m) for m in touched}
            try:
                trial.prune(unit, range(unit.width - 1))
                trial.verify_output()
            except (SrpruneError, InternalError, RuntimeError, ValueError) as exc:
                text = " ".join(str(exc).split())[:160]
                by_name[name].blocked = f"pruning breaks the model: {text}"
                for module, state in saved.items():  # undo the trial on the copy
                    module.__dict__.update(state)

    def _width_and_block(self, group: tp.Group) -> tuple[int, int]:
        root_len = len(group[0].idxs)
        width = min(len(item.idxs) for item in group
                    if isinstance(item.dep.target.module, nn.Module))
        shuffled = any(isinstance(item.dep.target.module, nn.PixelShuffle) for item in group)
        if width == 0 or root_len % width or (width != root_len and not shuffled):
            raise SrpruneError(f"unsupported channel coupling at layer "
                               f"{self.names.get(group[0].dep.target.module)}: {root_len} "
                               f"channels meet a {width}-channel part (a split or slice)")
        return width, root_len // width

    def _classify(self, group: tp.Group, members: list[Member]) -> str:
        convs_out = [m for m in members if m.dim == "out"
                     and isinstance(m.module, (nn.Conv2d, nn.Linear))]
        if all(max(self._spatial.get(m.module, [(2, 2)]), default=(2, 2)) == (1, 1)
               for m in convs_out):
            return "attention"
        coupled = len(convs_out) > 1 or any(
            type(item.dep.target.module).__name__ in ("_ConcatOp", "_SplitOp")
            for item in group)
        return "trunk" if coupled else "internal"

    def _members_of(self, group: tp.Group, block: int) -> list[Member]:
        members: list[Member] = []
        for item in group:
            module = item.dep.target.module
            if not isinstance(module, nn.Module) or isinstance(module, nn.PixelShuffle):
                continue
            if module not in self.names:
                continue
            fn = item.dep.handler
            dim = "out" if self.dg.is_out_channel_pruning_fn(fn) else "in"
            by_channel: dict[int, list[int]] = {}
            for idx, root_idx in zip(item.idxs, item.root_idxs):
                by_channel.setdefault(root_idx // block, []).append(idx)
            sizes = {len(v) for v in by_channel.values()}
            if len(sizes) != 1:
                raise SrpruneError(f"irregular channel coupling at layer {self.names[module]}")
            index = torch.tensor([sorted(by_channel[j]) for j in sorted(by_channel)],
                                 dtype=torch.long)
            members.append(Member(self.names[module], module, dim, index))
        return members

    def _root(self, unit: PruningUnit) -> nn.Module:
        return dict(self.net.named_modules())[unit.name]

    def _group(self, unit: PruningUnit, channels: Sequence[int]) -> tp.Group:
        root = self._root(unit)
        fn = (tp.prune_linear_out_channels if isinstance(root, nn.Linear)
              else tp.prune_conv_out_channels)
        idxs = [j * unit.group_size + t for j in channels for t in range(unit.group_size)]
        return self.dg.get_pruning_group(root, fn, idxs)

    def members(self, unit: PruningUnit) -> list[Member]:
        """Member layers with current indices of all ``unit.width`` channels."""
        return self._members_of(self._group(unit, range(unit.width)), unit.group_size)

    # -- pruning -------------------------------------------------------------------

    def prune(self, unit: PruningUnit, keep: Sequence[int]) -> None:
        """Physically remove every channel of ``unit`` not in ``keep`` (indices < width)."""
        keep_set = sorted({int(k) for k in keep})
        if not keep_set:
            raise SrpruneError(f"unit {unit.name}: must keep at least one channel")
        if keep_set[0] < 0 or keep_set[-1] >= unit.width:
            raise SrpruneError(f"unit {unit.name}: keep indices outside 0..{unit.width - 1}")
        drop = [j for j in range(unit.width) if j not in set(keep_set)]
        if drop:
            group = self._group(unit, drop)
            if not self.dg.check_pruning_group(group):
                raise SrpruneError(f"unit {unit.name}: pruning would empty a layer")
            group.prune()
            unit.width = len(keep_set)
        check_consistency(self.net)

    def verify_output(self) -> None:
        """The pruned net still runs and keeps its output shape."""
        self._order, self._spatial = [], {}
        try:
            with torch.no_grad():
                self._probe()
        except SrpruneError as exc:  # it ran before pruning: this is our bug
            raise InternalError(f"the pruned model no longer runs: {exc}") from None


def _snapshot(module: nn.Module) -> dict:
    """A module's own state (tensors and attributes, not its children) to undo a trial."""
    return {k: copy.deepcopy(v) for k, v in module.__dict__.items() if k != "_modules"}


def _out_channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def check_consistency(net: nn.Module) -> None:
    """Every layer's weight shapes agree with its channel attributes."""
    for name, m in net.named_modules():
        problem = None
        if isinstance(m, nn.Conv2d):
            if m.weight.shape[0] != m.out_channels or \
                    m.weight.shape[1] * m.groups != m.in_channels:
                problem = (f"weight {tuple(m.weight.shape)} vs in {m.in_channels}, "
                           f"out {m.out_channels}, groups {m.groups}")
            elif m.bias is not None and m.bias.shape[0] != m.out_channels:
                problem = f"bias {tuple(m.bias.shape)} vs out {m.out_channels}"
        elif isinstance(m, nn.Linear):
            if tuple(m.weight.shape) != (m.out_features, m.in_features):
                problem = f"weight {tuple(m.weight.shape)} vs {m.out_features}x{m.in_features}"
        elif isinstance(m, nn.PReLU) and m.weight.numel() != m.num_parameters:
            problem = f"PReLU weight {m.weight.numel()} vs {m.num_parameters}"
        if problem:
            raise InternalError(f"inconsistent layer after pruning: {name}: {problem}")
