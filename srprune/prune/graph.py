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
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import _helpers
from torch_pruning.dependency import index_mapping as tp_index_mapping
from torch_pruning.dependency import shape_infer as tp_shape_infer

from srprune.errors import InternalError, SrpruneError
from srprune.hooks import hooked
from srprune.models.splits import SplitRecorder, channel_splits, set_channel_splits
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
    for module, node in graph.module2node.items():  # the split pruner forgets the offsets
        if isinstance(module, tp.ops._SplitOp):
            _order_split_outputs(node)
        elif isinstance(module, tp.ops._ConcatOp):
            _order_concat_inputs(node)
        if isinstance(module, tp.ops._SplitOp) and module.split_sizes is not None:
            offsets = [0]
            for size in module.split_sizes:
                offsets.append(offsets[-1] + size)
            module.offsets = offsets
    _CHANNEL_MEMO = {}
    try:
        _original_update(graph)
    finally:
        _CHANNEL_MEMO = None
    for module, node in graph.module2node.items():
        if isinstance(module, tp.ops._ConcatOp):
            _reverse_cat_to_split(node)
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


def _split_output_number(split: object, consumer: object) -> int | None:
    """Which output of a split node ``consumer`` reads (from its autograd inputs)."""
    for fn, number in getattr(consumer.grad_fn, "next_functions", ()) or ():
        if fn is split.grad_fn:
            return int(number)
    return None


def _order_split_outputs(split: object) -> None:
    """Torch-Pruning reads a split's i-th part size for the i-th consumer it happened to
    find; put the consumers in the order of the parts they really read (PLKSR's split
    feeds a conv and a concatenation, found in the other order). Left alone unless every
    part has exactly one consumer."""
    sizes = getattr(split.module, "split_sizes", None)
    numbers = [_split_output_number(split, consumer) for consumer in split.outputs]
    if sizes is None or sorted(n for n in numbers if n is not None) != list(range(len(sizes))) \
            or None in numbers:
        return
    split.outputs = [consumer for _, consumer in sorted(zip(numbers, split.outputs),
                                                         key=lambda pair: pair[0])]


def _order_concat_inputs(cat: object) -> None:
    """The same for a concatenation: its inputs in the order of ``torch.cat``'s arguments
    (Torch-Pruning keeps them in the order it found them). Left alone when one producer is
    concatenated twice."""
    order = [fn for fn, _ in getattr(cat.grad_fn, "next_functions", ()) or ()]
    positions = []
    for node in cat.inputs:
        hits = [i for i, fn in enumerate(order) if fn is node.grad_fn]
        if len(hits) != 1:
            return
        positions.append(hits[0])
    if len(set(positions)) == len(positions):
        cat.inputs = [node for _, node in sorted(zip(positions, cat.inputs),
                                                 key=lambda pair: pair[0])]


def _reverse_cat_to_split(cat: object) -> None:
    """A split part concatenated again (PLKSR): Torch-Pruning maps concatenation channels
    back to the split's input with the split's mapping first and the concatenation's second;
    walking backwards, the concatenation's must come first."""
    for dep in cat.dependencies:
        first, second = dep.index_mapping
        if (dep.target in cat.inputs and isinstance(dep.target.module, tp.ops._SplitOp)
                and isinstance(first, tp_index_mapping._SplitIndexMapping)
                and isinstance(second, tp_index_mapping._ConcatIndexMapping)):
            dep.index_mapping = [second, first]


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
    name: str  # the root producer layer's name, plus [a:b] for one segment of its channels
    kind: str  # "internal", "trunk" or "attention"
    group_size: int
    width: int
    original_width: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    blocked: str = ""  # why this unit cannot be pruned safely ("" when it can)
    root: str = ""  # the root producer layer (its name)
    # a segment of the root's output channels (original numbering; None: all of them): a
    # split sends the root's channels to different places, and each part is its own unit
    channels: list[int] | None = field(default=None, repr=False)
    # how one selectable channel's group_size rows lie among the root's rows: "block"
    # (consecutive: PixelShuffle) or "strided" (one in each part: grouped convolutions)
    layout: str = "block"
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


WEIGHT_LAYERS = (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)


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
        recorder = SplitRecorder()
        try:  # split calls numbered per forward pass of the net, as the replay numbers them
            with recorder, hooked([(net, recorder.new_pass)], kind="pre"):
                self.dg = tp.DependencyGraph().build_dependency(
                    net, (self.example,), output_transform=_output_transform,
                    customized_pruners={nn.PixelShuffle: PixelShufflePruner()}, verbose=False,
                )
        except Exception as exc:  # Torch-Pruning raises many kinds on unsupported graphs
            raise SrpruneError(f"the dependency graph cannot trace this model: {exc}") from None
        finally:
            net.train(was_training)
        self._splits = self._number_splits(recorder)
        self.protected = self._protected_layers(protect)
        self._units: list[PruningUnit] | None = None
        self._alive: dict[nn.Module, list[int]] = {}  # roots of segments: original rows alive

    def _number_splits(self, recorder: SplitRecorder) -> dict[nn.Module, tuple[int, list[int]]]:
        """Torch-Pruning's channel-split nodes -> (call number in a forward pass, sizes).

        The sizes are the ones the call really produced (Torch-Pruning infers a chunk's
        sizes from its consumers and can get them wrong); its mappings are redone with them.
        """
        calls = {id(fn): (number, dim, sizes)
                 for number, dim, sizes, fn in recorder.calls if fn is not None}
        found = {}
        for module, node in self.dg.module2node.items():
            call = calls.get(id(node.grad_fn))
            if not isinstance(module, tp.ops._SplitOp) or call is None or call[1] != 1:
                continue
            number, _, sizes = call
            module.split_sizes = list(sizes)
            found[module] = (number, list(sizes))
        if found:
            for module in self.dg.module2node:
                if isinstance(module, tp.ops._ConcatOp):
                    module.concat_sizes = None
            tp_index_mapping.update_index_mapping(self.dg)
        return found

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
                   if isinstance(m, (*WEIGHT_LAYERS, nn.PixelShuffle))]
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

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor settings (example size, protect, colours): a twin graph's."""
        return dict(self._settings)

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

    def coverage(self) -> dict[str, Any]:
        """Which weight layers the graph sees: every conv/linear layer with parameters that
        the forward pass runs must be traced (in a unit, blocked with a reason), unless it is
        fixed: frozen, or image to image. ``missing`` names layers the tracer lost: their channels
        would be pruned without their neighbours, so they must never go unnoticed."""
        layers = [m for m in self._order if isinstance(m, WEIGHT_LAYERS)
                  and any(p.numel() for p in m.parameters(recurse=False))]
        named = {name for unit in self.every_unit()
                 for name in (*unit.producers, *unit.consumers, unit.root)}
        missing = [self.names[m] for m in layers
                   if m not in self.dg.module2node and self.names[m] not in named
                   and not _fixed(m, self.n_colors)]
        return {"layers": len(layers), "covered": len(layers) - len(missing),
                "missing": missing}

    def _discover(self) -> list[PruningUnit]:
        units = []
        for root, channels, group, failure in self._groups():
            root_name = self.names[root]
            n = len(channels) if channels is not None else _out_channels(root)
            name = root_name if channels is None else f"{root_name}{_segment_label(channels)}"
            unit = PruningUnit(uid=-1, name=name, kind="trunk", group_size=1,
                               width=n, original_width=n, producers=[root_name],
                               root=root_name, channels=channels, _graph=self)
            if channels is not None:
                self._alive.setdefault(root, list(range(_out_channels(root))))
            if group is None:
                unit.blocked = f"the dependency graph cannot map its channels: {failure}"
                units.append(unit)
                continue
            try:
                width, block, unit.layout = self._width_and_block(group)
                members = self._members_of(group, self._positions(unit, block))
            except SrpruneError as exc:  # a coupling we cannot map channel by channel
                unit.blocked = str(exc)
                units.append(unit)
                continue
            unit.group_size, unit.width, unit.original_width = block, width, width
            unit.producers = [m.name for m in members if m.dim == "out"
                              and isinstance(m.module, (nn.Conv2d, nn.Linear))]
            unit.consumers = [m.name for m in members if m.dim == "in"
                              and isinstance(m.module, (nn.Conv2d, nn.Linear))]
            unit.kind = self._classify(group, members, segmented=channels is not None)
            units.append(unit)
        rank = {m: i for i, m in enumerate(self._order)}
        modules = dict(self.net.named_modules())
        units.sort(key=lambda u: (rank.get(modules[u.root], len(rank)),
                                  u.channels[0] if u.channels else 0))
        for i, unit in enumerate(units):
            unit.uid = i
        return units

    def _groups(self) -> Iterator[tuple[nn.Module, list[int] | None, tp.Group | None, str]]:
        """Coupled channel sets, as ``(root, channels, group, failure)``.

        Like Torch-Pruning's ``get_all_groups`` (one group per root conv/linear whose output
        channels no earlier group covered), except that a root whose group Torch-Pruning
        cannot compute is yielded with the failure instead of ending the scan, and a group
        in which a split sends the root's channels to different layers is cut into segments
        (``channels``: the root's channels of one segment), each coupled as a whole.
        """
        covered: dict[nn.Module, set[int]] = {}
        ignored = set(self.protected) | set(self.dg.IGNORED_LAYERS_IN_TRACING)
        for module in list(self.dg.module2node):
            if module in ignored or not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            pruner = self.dg.get_pruner_of_module(module)
            if pruner is None or pruner.get_out_channels(module) is None:
                continue
            done = covered.get(module, set())
            free = [c for c in range(pruner.get_out_channels(module)) if c not in done]
            if not free:
                continue
            try:
                group = self.dg.get_pruning_group(module, pruner.prune_out_channels, free)
                segments = (_segments(group, free) if any(
                    isinstance(item.dep.target.module, tp.ops._SplitOp) for item in group)
                    else [free])
                parts = ([(None if len(free) == pruner.get_out_channels(module) else free,
                           group)] if len(segments) == 1 else
                         [(seg, self.dg.get_pruning_group(module, pruner.prune_out_channels,
                                                          seg)) for seg in segments])
            except Exception as exc:  # Torch-Pruning's index mappings can fail on odd ops
                covered.setdefault(module, set()).update(free)
                text = " ".join(str(exc).split())[:120] or type(exc).__name__
                yield module, None, None, text
                continue
            for channels, part in parts:
                prunable = True
                for dep, idxs in part:
                    if self.dg.is_out_channel_pruning_fn(dep.handler):
                        target = dep.target.module
                        covered.setdefault(target, set()).update(int(i) for i in idxs)
                        prunable = prunable and target not in ignored
                if prunable:
                    yield module, channels, part, ""

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
        for name, reason in trial._trial([trial_units[n] for n in risky]).items():
            by_name[name].blocked = f"pruning breaks the model: {reason}"

    def _trial(self, units: list[PruningUnit]) -> dict[str, str]:
        """Prune each unit by one channel and run the net once; when that fails, undo and
        try the units one at a time (one forward pass when every unit is fine). Returns
        ``{unit name: failure}`` of the units that break the net alone."""
        touched = {item.dep.target.module for unit in units
                   for item in self._group(unit, range(unit.width))
                   if isinstance(item.dep.target.module, nn.Module)}
        saved = {m: _snapshot(m) for m in touched}
        splits = channel_splits(self.net)
        alive = {module: list(rows) for module, rows in self._alive.items()}
        states = [(unit.width, unit.channels) for unit in units]
        try:
            for unit in units:
                self.prune(unit, range(unit.width - 1))
            self.verify_output()
            return {}
        except (SrpruneError, InternalError, RuntimeError, ValueError) as exc:
            failure = " ".join(str(exc).split())[:160]
        for module, snapshot in saved.items():  # undo the trial on the copy
            module.__dict__.update(snapshot)
        set_channel_splits(self.net, splits)
        self._alive = alive
        for unit, (width, channels) in zip(units, states):
            unit.width, unit.channels = width, channels
        if len(units) == 1:
            return {units[0].name: failure}
        failures: dict[str, str] = {}
        for unit in units:  # one by one: the culprits are often many (SwinIR's attention)
            failures.update(self._trial([unit]))
        return failures

    def _width_and_block(self, group: tp.Group) -> tuple[int, int, str]:
        """Selectable channels, rows per selectable channel, and how those rows lie."""
        root_len = len(group[0].idxs)
        width = min(len(item.idxs) for item in group
                    if isinstance(item.dep.target.module, nn.Module))
        shuffled = any(isinstance(item.dep.target.module, nn.PixelShuffle) for item in group)
        if width == 0 or root_len % width or (width != root_len and not shuffled):
            raise SrpruneError(f"unsupported channel coupling at layer "
                               f"{self.names.get(group[0].dep.target.module)}: {root_len} "
                               f"channels meet a {width}-channel part (a split or slice)")
        parts = 1
        for item in group:
            conv = item.dep.target.module
            if isinstance(conv, nn.Conv2d) and _grouped(conv):
                parts = math.lcm(parts, conv.groups)
                if shuffled or root_len % parts or len(item.idxs) != root_len:
                    raise SrpruneError(
                        f"grouped convolution {self.names[conv]} (groups={conv.groups}) "
                        "couples channels per group" + (" and feeds a PixelShuffle"
                                                        if shuffled else ""))
        if parts > 1:
            return root_len // parts, parts, "strided"
        return width, root_len // width, "block"

    def _rows_of(self, unit: PruningUnit, channels: Sequence[int]) -> list[int]:
        """Positions among the unit's root rows of the given unit channels' rows."""
        g = unit.group_size
        if unit.layout == "strided":
            return sorted(j + k * unit.width for j in channels for k in range(g))
        return [j * g + t for j in channels for t in range(g)]

    def _root_rows(self, unit: PruningUnit) -> list[int]:
        """The root layer's current output channels that make up ``unit``, in unit order."""
        if unit.channels is None:
            return list(range(unit.width * unit.group_size))
        alive = {row: i for i, row in enumerate(self._alive[self._root(unit)])}
        return [alive[c] for c in unit.channels]

    def _positions(self, unit: PruningUnit, block: int) -> dict[int, int]:
        """Root channel (current numbering) -> unit channel."""
        rows = self._root_rows(unit)
        if unit.layout == "strided":
            return {row: i % (len(rows) // block) for i, row in enumerate(rows)}
        return {row: i // block for i, row in enumerate(rows)}

    def _classify(self, group: tp.Group, members: list[Member], segmented: bool = False) -> str:
        convs_out = [m for m in members if m.dim == "out"
                     and isinstance(m.module, (nn.Conv2d, nn.Linear))]
        if all(max(self._spatial.get(m.module, [(2, 2)]), default=(2, 2)) == (1, 1)
               for m in convs_out):
            return "attention"
        coupled = len(convs_out) > 1 or any(
            type(item.dep.target.module).__name__ in (
                ("_ConcatOp",) if segmented else ("_ConcatOp", "_SplitOp"))
            for item in group)
        return "trunk" if coupled else "internal"

    def _members_of(self, group: tp.Group, position: dict[int, int]) -> list[Member]:
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
                by_channel.setdefault(position[int(root_idx)], []).append(int(idx))
            sizes = {len(v) for v in by_channel.values()}
            if len(sizes) != 1 or len(by_channel) != len(set(position.values())):
                raise SrpruneError(f"irregular channel coupling at layer {self.names[module]}")
            index = torch.tensor([sorted(by_channel[j]) for j in sorted(by_channel)],
                                 dtype=torch.long)
            members.append(Member(self.names[module], module, dim, index))
        return members

    def _root(self, unit: PruningUnit) -> nn.Module:
        return dict(self.net.named_modules())[unit.root or unit.name]

    def _group(self, unit: PruningUnit, channels: Sequence[int]) -> tp.Group:
        root = self._root(unit)
        fn = (tp.prune_linear_out_channels if isinstance(root, nn.Linear)
              else tp.prune_conv_out_channels)
        rows = self._root_rows(unit)
        idxs = [rows[i] for i in self._rows_of(unit, channels)]
        return self.dg.get_pruning_group(root, fn, idxs)

    def members(self, unit: PruningUnit) -> list[Member]:
        """Member layers with current indices of all ``unit.width`` channels."""
        return self._members_of(self._group(unit, range(unit.width)),
                                self._positions(unit, unit.group_size))

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
            self._forget_rows(group)
            if unit.channels is not None:
                unit.channels = [unit.channels[i] for i in self._rows_of(unit, keep_set)]
            unit.width = len(keep_set)
            self._install_splits()
        check_consistency(self.net)

    def _forget_rows(self, group: tp.Group) -> None:
        """Drop the pruned rows from the alive lists of segment roots."""
        for dep, idxs in group:
            alive = self._alive.get(dep.target.module)
            if alive is not None and self.dg.is_out_channel_pruning_fn(dep.handler):
                gone = {int(i) for i in idxs}
                alive[:] = [row for i, row in enumerate(alive) if i not in gone]

    def _install_splits(self) -> None:
        """Let the net replay every channel split whose sizes pruning changed."""
        changed = {number: list(op.split_sizes) for op, (number, sizes) in self._splits.items()
                   if list(op.split_sizes) != sizes}
        if changed:
            set_channel_splits(self.net, {**channel_splits(self.net), **changed})

    def verify_output(self) -> None:
        """The pruned net still runs and keeps its output shape."""
        self._order, self._spatial = [], {}
        try:
            with torch.no_grad():
                self._probe()
        except SrpruneError as exc:  # it ran before pruning: this is our bug
            raise InternalError(f"the pruned model no longer runs: {exc}") from None


def _fixed(layer: nn.Module, colours: int) -> bool:
    """A layer no pruning touches: frozen (no trainable parameter: a mean shift written as a
    conv) or image to image (colours in and out)."""
    if not any(p.requires_grad for p in layer.parameters(recurse=False)):
        return True
    ins = getattr(layer, "in_channels", getattr(layer, "in_features", None))
    outs = getattr(layer, "out_channels", getattr(layer, "out_features", None))
    return ins == outs == colours


def _grouped(conv: nn.Conv2d) -> bool:
    """A grouped convolution that is not depthwise (channels coupled per group)."""
    return conv.groups > 1 and not conv.groups == conv.in_channels == conv.out_channels


def _segments(group: tp.Group, channels: list[int]) -> list[list[int]]:
    """The root's channels cut by which layers they reach: channels that reach the same
    layers form one segment (one segment when no split or slice separates them)."""
    reach: dict[int, list[int]] = {c: [] for c in channels}
    for k, item in enumerate(group):
        for root_idx in {int(r) for r in item.root_idxs}:
            if root_idx in reach:
                reach[root_idx].append(k)
    segments: dict[tuple[int, ...], list[int]] = {}
    for c in channels:
        segments.setdefault(tuple(reach[c]), []).append(c)
    return sorted(segments.values(), key=lambda seg: seg[0])


def _segment_label(channels: list[int]) -> str:
    lo, hi = channels[0], channels[-1] + 1
    return f"[{lo}:{hi}]" if hi - lo == len(channels) else f"[{lo}:{hi}:{len(channels)}]"


def _snapshot(module: nn.Module) -> dict:
    """A module's own state (tensors and attributes, not its children) to undo a trial."""
    state = {}
    for key, value in module.__dict__.items():
        if key == "_modules":
            continue
        try:
            state[key] = copy.deepcopy(value)
        except TypeError:  # Torch-Pruning's op nodes hold autograd nodes: kept as they are
            state[key] = value
    return state


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
