"""The one place that registers PyTorch module hooks: always removed, early stop built in.

Everything that watches a forward pass (feature capture for criteria, MAC counting, graph
probing, prefix caching, search masks) goes through :func:`hooked`, so no hook can outlive
its block, and a forward pass can end as soon as the wanted tensor is seen
(:class:`StopForward` + :func:`run_until_stop`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

HookKind = Literal["forward", "pre"]


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted tensors are captured."""


@contextmanager
def hooked(pairs: Iterable[tuple[nn.Module, Callable[..., Any]]],
           kind: HookKind = "forward") -> Iterator[None]:
    """Register ``(module, hook)`` pairs as forward (or forward-pre) hooks inside the block."""
    handles = []
    try:
        for module, fn in pairs:
            handles.append(module.register_forward_hook(fn) if kind == "forward"
                           else module.register_forward_pre_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_until_stop(net: nn.Module, x: torch.Tensor) -> Any:
    """``net(x)`` without gradients; a :class:`StopForward` from a hook ends it (returns None)."""
    try:
        with torch.no_grad():
            return net(x)
    except StopForward:
        return None


@contextmanager
def capture_layer(module: nn.Module, what: str = "input",
                  stop: bool = False) -> Iterator[list[torch.Tensor]]:
    """Collect a layer's first input or its output (detached) on each call while in the block.

    With ``stop`` the hook raises :class:`StopForward` after recording (run the forward pass
    with :func:`run_until_stop`).
    """
    store: list[torch.Tensor] = []

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        store.append((inputs[0] if what == "input" else output).detach())
        if stop:
            raise StopForward

    with hooked([(module, hook)]):
        yield store


@contextmanager
def capture_outputs(modules: list[nn.Module]) -> Iterator[list[list[torch.Tensor]]]:
    """Outputs of several modules during forward passes, gradients kept (one list each)."""
    stores: list[list[torch.Tensor]] = [[] for _ in modules]

    def recorder(store: list[torch.Tensor]) -> Callable[..., None]:
        return lambda mod, inputs, output: store.append(output)

    with hooked((m, recorder(s)) for m, s in zip(modules, stores)):
        yield stores
