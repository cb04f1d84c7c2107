"""Bias compensation: what removed channels fed their consumers on average goes into the bias.

Removing channel ``j`` of a unit removes its whole contribution ``W[:, j] * x_j`` from every
consumer layer, and that includes its mean, ``S[:, j] * mu_j``: ``S`` is the consumer's
weights summed over the kernel (its response to a constant input) and ``mu_j`` the channel's
mean activation on the calibration data. Activations after SiLU, (leaky) ReLU or on a residual
trunk are not zero-mean, so plain removal shifts each consumer's output by a constant. With
calibration data the engine puts it back, after the criterion chose and before the graph
removes the channels::

    b += S_before @ mu - S[:, kept] @ mu[kept]     (= S[:, removed] @ mu[removed] for l1)

``S_before``: the consumer's kernel sums before the criterion ran (a criterion may rescale the
kept inputs, as ``thinet`` does); the consumer's mean output then stays what it was before
the unit was cut, exactly so for constant activations. ``mu`` is measured in the model being
pruned (earlier units already cut), over every calibration position; ``S @ mu`` is the
interior response, so zero padding at patch borders does not bias it. Only this unit's
removal is compensated, not the drift earlier units caused (matching the unpruned model's
mean output instead did worse on SPAN x4: -0.2 dB with ``thinet``, -6 dB with channels ranked
by their output energy).

A consumer is left as the criterion made it when the criterion changed its bias (``cp``,
``thinet update=full``, ``dr``/``dcp``: their least-squares refit or SGD already fitted the
intercept), when it has no bias (adding one would change the architecture), when it is a
grouped convolution, when it loses its own output channels with the unit (depthwise convs:
their consumers are compensated instead), or when it is neither a Conv2d nor a Linear layer.
Trunk units (residual or concatenated streams, ``kind`` "trunk") are not compensated: a trunk
channel is the running image representation, its mean is image content rather than an
offset, and on drn-t ``--scope all`` compensating the trunks cost 0.1 to 0.4 dB while the
block-inner units gained 0.01 to 0.02 dB. Without calibration data nothing happens. What it is
worth on SPAN x4 and drn-t: ``benchmarks/span_diagnosis.py``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from srprune.hooks import StopForward, hooked, run_until_stop
from srprune.prune.contracts import Context, LayerSlice, Unit


def _eligible(unit: Unit, trunks: bool = False) -> list[LayerSlice]:
    """Consumers whose bias can absorb the removed channels' mean (see module docstring);
    none for a trunk unit unless ``trunks``."""
    if unit.kind != "internal" and not trunks:
        return []
    producers = set(unit.producers)
    found = []
    for item in unit.consumer_modules():
        name, module, _ = item
        if name in producers or getattr(module, "bias", None) is None:
            continue
        if (isinstance(module, nn.Conv2d) and module.groups == 1) or isinstance(module, nn.Linear):
            found.append(item)
    return found


Snapshot = dict[str, tuple[torch.Tensor, torch.Tensor]]


def consumer_state(unit: Unit, trunks: bool = False) -> Snapshot:
    """Copies of the weights and biases of ``unit``'s eligible consumers. Take them before
    the criterion runs: :func:`compensate_biases` then knows which biases it refit and which
    weights it rescaled (``{}`` for a trunk unit unless ``trunks``)."""
    return {name: (module.weight.detach().clone(), module.bias.detach().clone())
            for name, module, _ in _eligible(unit, trunks)}


def input_means(net: nn.Module, modules: dict[str, nn.Module],
                inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel mean of each named layer's input (its first call per forward pass), float64.

    Channels are dim 1 of a 4-D input (convs) and the last dim otherwise (linears); the mean
    runs over every other dim and over all ``inputs``. Each forward pass stops once every
    layer has been seen.
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    seen: set[str] = set()

    def hook(name: str) -> Any:
        def record(mod: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if name in seen:
                return
            seen.add(name)
            x = args[0].detach().double()
            flat = x.transpose(0, 1).flatten(1) if x.dim() == 4 else x.flatten(0, -2).T
            sums[name] = sums.get(name, 0) + flat.sum(1).cpu()
            counts[name] = counts.get(name, 0) + flat.shape[1]
            if len(seen) == len(modules):
                raise StopForward
        return record

    with hooked((module, hook(name)) for name, module in modules.items()):
        for x in inputs:
            seen.clear()
            run_until_stop(net, x)
    return {name: sums[name] / counts[name] for name in sums}


def kernel_sums(module: nn.Module) -> torch.Tensor:
    """(out, in) float64: a conv's weights summed over its kernel (a linear's weights)."""
    return _sums(module.weight.detach())


def _sums(weight: torch.Tensor) -> torch.Tensor:
    weight = weight.double().cpu()
    return weight.flatten(2).sum(2) if weight.dim() > 2 else weight


def compensate_biases(unit: Unit, kept: Sequence[int], ctx: Context,
                      before: Snapshot | None = None, trunks: bool = False) -> dict[str, float]:
    """Put the removed channels' mean contribution into the biases of ``unit``'s consumers.

    Call after the criterion chose ``kept`` and before the graph removes the other channels.
    ``before`` (:func:`consumer_state`, taken before the criterion ran): consumers whose bias
    the criterion changed are left alone, and where it changed the kept weights (``thinet``'s
    rescaling) the shift is ``S_before @ mu - S[:, kept] @ mu[kept]``, so the consumer's mean
    output stays what it was before the unit was cut. Without ``before`` the weights are taken
    as the criterion's. Trunk units are left alone unless ``trunks`` (module docstring).
    Returns ``{consumer: norm of the bias change}``; ``{}`` without calibration data or when
    nothing is removed.
    """
    keep = {int(k) for k in kept}
    removed = [j for j in range(unit.width) if j not in keep]
    consumers = [(name, module, index) for name, module, index in _eligible(unit, trunks)
                 if before is None or (name in before and torch.equal(before[name][1],
                                                                      module.bias.detach()))]
    if not ctx.batches or not removed or not consumers:
        return {}
    means = input_means(ctx.model.net, {name: module for name, module, _ in consumers},
                        [lr[0].to(ctx.device) for lr, _ in ctx.batches])
    changes: dict[str, float] = {}
    for name, module, index in consumers:
        if name not in means:  # never called in the forward pass
            continue
        alive = torch.ones(means[name].shape[0], dtype=torch.bool)
        alive[index[removed].flatten().cpu()] = False
        now = kernel_sums(module)
        then = now if before is None else _sums(before[name][0])
        shift = then @ means[name] - now[:, alive] @ means[name][alive]
        if not bool(torch.isfinite(shift).all()):
            continue
        with torch.no_grad():
            module.bias.add_(shift.to(module.bias.dtype).to(module.bias.device))
        changes[name] = float(shift.norm())
    return changes


__all__ = ["Snapshot", "compensate_biases", "consumer_state", "input_means", "kernel_sums"]
