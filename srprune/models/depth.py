"""Depth: the residual blocks of a net that can be removed whole, and their removal.

A residual block here is any submodule that is called once per forward pass, maps one tensor
to a tensor of the same shape, holds a convolution, and becomes exactly the identity when all
its parameters are zero (``x + f(x)`` with ``f`` ending in a layer that maps zero weights to
zero, scaled or not: EDSR's ResBlock, RCAN's and DRN's RCAB, RRDB, ...). The test is run on
the module itself, on the input it gets in one forward pass of the net (so ``relu(x + f(x))``
after a ReLU counts: its input is never negative), and no architecture is named here.
Removing a block replaces it with ``nn.Identity``; an artifact records the removed names and
replays the removal on load.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from srprune.errors import SrpruneError


@dataclass(frozen=True)
class ResidualBlock:
    """A removable block: its module path and a signature shared by blocks of equal cost
    (class, input shape on the probe input, parameter shapes)."""

    name: str
    signature: tuple


def find_residual_blocks(net: nn.Module, example: torch.Tensor,
                         exclude: Iterable[str] = ()) -> list[ResidualBlock]:
    """The innermost residual blocks of ``net`` in call order (see module docstring).

    ``exclude``: layer names (e.g. protected layers) whose enclosing blocks are not offered.
    """
    excluded = tuple(exclude)
    candidates = {name: module for name, module in net.named_modules()
                  if name and any(isinstance(m, nn.Conv2d) for m in module.modules())
                  and not any(x == name or x.startswith(name + ".") or name.startswith(x + ".")
                              for x in excluded)}
    calls: dict[str, list[torch.Tensor]] = {}
    order: list[str] = []

    def record(name: str):
        def hook(_module: nn.Module, args: tuple, output: object) -> None:
            if name not in calls:
                order.append(name)
            ok = (len(args) == 1 and isinstance(args[0], torch.Tensor)
                  and isinstance(output, torch.Tensor) and output.shape == args[0].shape)
            calls.setdefault(name, []).append(args[0].detach().clone() if ok else None)
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in candidates.items()]
    try:
        with torch.no_grad():
            net(example)
    finally:
        for h in hooks:
            h.remove()
    found = [n for n in order if len(calls[n]) == 1 and calls[n][0] is not None
             and _is_identity_when_zeroed(candidates[n], calls[n][0])]
    innermost = [n for n in found if not any(o.startswith(n + ".") for o in found)]
    return [ResidualBlock(n, (type(candidates[n]).__name__, tuple(calls[n][0].shape),
                              tuple(tuple(p.shape) for p in candidates[n].parameters())))
            for n in innermost]


def _is_identity_when_zeroed(module: nn.Module, x: torch.Tensor) -> bool:
    """True if ``module`` returns its (non-zero) input unchanged with every parameter zero."""
    if not float(x.abs().max()) > 0:
        return False
    zeros = {k: torch.zeros_like(v) for k, v in module.named_parameters()}
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = functional_call(module, zeros, (x.clone(),))
    except Exception:  # a block that does not run alone is not offered
        return False
    finally:
        module.train(was_training)
    return isinstance(out, torch.Tensor) and out.shape == x.shape and bool(
        torch.allclose(out, x, rtol=1e-5, atol=1e-5 * (1 + float(x.abs().max()))))


def inside_blocks(layers: Iterable[str], blocks: Iterable[str]) -> bool:
    """True when there are layers and every one lies inside one of ``blocks`` (by name)."""
    prefixes = tuple(f"{b}." for b in blocks)
    names = list(layers)
    return bool(names and prefixes) and all(n.startswith(prefixes) for n in names)


def remove_blocks(net: nn.Module, names: Sequence[str], where: str = "") -> None:
    """Replace each named submodule of ``net`` with ``nn.Identity`` (in place)."""
    modules = dict(net.named_modules())
    for name in names:
        if not isinstance(name, str) or not name or name not in modules:
            raise SrpruneError(f"{where}cannot remove block {name!r}: the model has no such "
                               "module")
        if isinstance(modules[name], nn.Identity):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else net
        setattr(parent, child, nn.Identity())

