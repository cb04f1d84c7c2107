"""What the ``latency`` strategy knows of whole residual blocks (``depth=true``).

For each removable block (:func:`srprune.models.depth.find_residual_blocks`): its conv layers,
the time it takes beyond them (attention, the residual add, layout reorders), measured once
per kind of block by timing the model with every block of that kind removed against the
unpruned model, and its quality loss: the mean change of the SR output on calibration
patches with that block alone removed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from srprune.models.depth import find_residual_blocks, remove_blocks
from srprune.models.srmodel import SRModel
from srprune.prune.contracts import Context

BLOCK = "block:"  # working-plan keys of removed blocks (never in a returned plan)


@dataclass
class Depth:
    """The removable residual blocks (none without ``depth``): names in call order, conv
    layers, measured non-conv time (ms), measured quality loss, and the time per kind."""

    names: list[str] = field(default_factory=list)
    layers: dict[str, list[str]] = field(default_factory=dict)
    overhead_ms: dict[str, float] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)
    by_kind: dict[str, float] = field(default_factory=dict)

    def enclosing(self, layer_names: Sequence[str]) -> str | None:
        """The block holding every one of these layers, or None."""
        for name in self.names:
            if layer_names and all(n.startswith(name + ".") for n in layer_names):
                return name
        return None


def removed_in(plan: dict[str, int]) -> set[str]:
    """The blocks a working plan removes (its ``BLOCK``-prefixed keys)."""
    return {k[len(BLOCK):] for k in plan if k.startswith(BLOCK)}


def measure_depth(ctx: Context, layers: Sequence[str], conv_ms: Callable[[list[str]], float],
                  time_models: Callable[[SRModel, SRModel], tuple[float, float]],
                  scale: float, batches: int) -> Depth:
    """Blocks of ``ctx.model`` with their time beyond ``conv_ms`` (the predicted time of the
    unpruned layers named) and their quality loss on ``batches`` calibration batches.
    ``time_models(a, b)`` times two models in one interleaved run; ``scale`` turns the
    prediction into the measurement (measured = scale * predicted)."""
    data = ctx.require_data("strategy latency with depth=true (block losses are measured)")
    graph = getattr(ctx, "graph", None)
    settings = graph.settings if graph is not None else {}
    example = graph.example if graph is not None else torch.rand(1, 3, 16, 16) * 255
    blocks = find_residual_blocks(ctx.model.net, example, exclude=settings.get("protect", ()))
    names = [b.name for b in blocks]
    block_layers = {b: [n for n in layers if n.startswith(b + ".")] for b in names}
    kinds: dict[tuple, list[str]] = {}
    for b in blocks:
        kinds.setdefault(b.signature, []).append(b.name)
    overhead, by_kind = {}, {}
    for number, members in enumerate(kinds.values()):
        ctx.report("latency: timing blocks", number, len(kinds))
        shallow = copy.deepcopy(ctx.model)
        remove_blocks(shallow.net, members)
        unpruned_ms, shallow_ms = time_models(ctx.model, shallow)
        convs = sum(conv_ms(block_layers[b]) for b in members)
        each = max(0.0, (unpruned_ms - shallow_ms) / scale - convs) / len(members)
        overhead.update(dict.fromkeys(members, each))
        by_kind[f"{members[0]} (+{len(members) - 1} alike)"] = each
    ctx.report("latency: timing blocks", len(kinds), len(kinds))
    loss = block_losses(ctx, names, data[:batches])
    return Depth(names=names, layers=block_layers, overhead_ms=overhead, loss=loss,
                 by_kind=by_kind)


def block_losses(ctx: Context, names: Sequence[str], batches: Sequence[Any]
                 ) -> dict[str, float]:
    """Mean |SR - SR of the unpruned model| (0..255) on calibration LR patches with one
    block removed (its parameters zeroed: the block is then the identity)."""
    inputs = [lr[0].to(ctx.device) for lr, _ in batches]
    modules = dict(ctx.model.net.named_modules())
    result: dict[str, float] = {}
    with torch.no_grad():
        reference = [ctx.model(x) for x in inputs]
        for done, name in enumerate(names, 1):
            params = list(modules[name].parameters())
            saved = [p.detach().clone() for p in params]
            try:
                for p in params:
                    p.zero_()
                result[name] = float(np.mean(
                    [(ctx.model(x) - r).abs().mean().item()
                     for x, r in zip(inputs, reference, strict=True)]))
            finally:
                for p, s in zip(params, saved, strict=True):
                    p.copy_(s)
            ctx.report("latency block sensitivity", done, len(names))
    return result
