"""Skip the frozen part of a forward pass that runs before a given layer.

While one unit's channels are being selected, every layer that runs before its consumer is
frozen and sees the same input batch, so its output never changes. ``PrefixCache`` records
those outputs once per batch and then replaces the largest such modules (called exactly once,
finished before the consumer starts) by their recorded outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from srprune.hooks import StopForward, hooked, run_until_stop


class PrefixCache:
    """Per-batch outputs of the modules that finish before ``stop_modules`` first run."""

    def __init__(self, net: nn.Module, stop_modules: list[nn.Module],
                 inputs: list[torch.Tensor]) -> None:
        self.net = net
        self.modules: list[nn.Module] = []
        self.outputs: list[dict[nn.Module, Any]] = []
        for i, x in enumerate(inputs):
            record = self._record(x, stop_modules, select=i == 0)
            self.outputs.append(record)

    def _record(self, x: torch.Tensor, stop: list[nn.Module], select: bool) -> dict:
        seq = [0]
        starts: dict[nn.Module, int] = {}
        ends: dict[nn.Module, int] = {}
        calls: dict[nn.Module, int] = {}
        outs: dict[nn.Module, Any] = {}

        def pre(module: nn.Module, args: tuple) -> None:
            seq[0] += 1
            starts.setdefault(module, seq[0])
            calls[module] = calls.get(module, 0) + 1

        def post(module: nn.Module, args: tuple, out: Any) -> None:
            seq[0] += 1
            ends[module] = seq[0]
            if isinstance(out, torch.Tensor):
                outs[module] = out.detach()

        def halt(module: nn.Module, args: tuple) -> None:
            raise StopForward  # nothing after the first stop module is needed

        modules = [m for m in self.net.modules() if m is not self.net]
        # the first pass runs whole, to count calls over the full forward; later ones halt
        halts = [] if select else [(m, halt) for m in stop]
        with hooked(((m, pre) for m in modules), kind="pre"), \
                hooked((m, post) for m in modules), hooked(halts, kind="pre"):
            run_until_stop(self.net, x)
        if select:
            limit = min(starts.get(m, 0) for m in stop) if stop else 0
            chosen = {m for m in modules if calls.get(m) == 1 and m in outs
                      and ends[m] < limit}
            parents = {child: parent for parent in self.net.modules()
                       for child in parent.children()}
            self.modules = [m for m in chosen if parents.get(m) not in chosen]
        return {m: outs[m] for m in self.modules}

    @contextmanager
    def replay(self, batch_no: int) -> Iterator[None]:
        """Inside the block the cached modules return their recorded outputs for the batch."""
        record = self.outputs[batch_no]
        for module in self.modules:
            module.forward = _constant(record[module])  # type: ignore[method-assign]
        try:
            yield
        finally:
            for module in self.modules:
                del module.forward


def _constant(value: torch.Tensor) -> Any:
    def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
        return value.clone()  # later in-place ops must not touch the cache

    return forward
