"""What a criterion or strategy may read while pruning: models, graph, data, seed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.graph import SRGraph
from srprune.models.srmodel import SRModel

Batch = tuple[list[torch.Tensor], torch.Tensor]  # (LR pyramid smallest first, HR)


@dataclass
class PruneContext:
    """Read access for criteria and strategies.

    ``model`` is being pruned in place; ``original`` is a frozen copy of it before pruning
    (same layer names); ``batches`` are calibration batches (LR pyramid, HR) or empty when
    no data was given; ``options`` holds run-wide settings such as ``dual_weight``.
    """

    model: SRModel
    original: SRModel
    graph: SRGraph
    batches: list[Batch] = field(default_factory=list)
    device: str = "cpu"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def require_data(self, who: str) -> list[Batch]:
        """The calibration batches, or a clear error naming who needs them."""
        if not self.batches:
            raise SrpruneError(f"{who} needs calibration images: pass --data DIR")
        return self.batches

    def module(self, name: str, original: bool = False) -> nn.Module:
        net = (self.original if original else self.model).net
        return dict(net.named_modules())[name]

    def capture(self, name: str, batches: list[Batch] | None = None, original: bool = False,
                what: str = "input") -> list[torch.Tensor]:
        """Inputs (or outputs) of layer ``name`` on each batch, without gradients.

        The forward pass stops right after the layer's first call: nothing later is computed.
        """
        sr = self.original if original else self.model
        module = dict(sr.net.named_modules())[name]
        with capture_layer(module, what, stop=True) as store, torch.no_grad():
            for lr, _ in batches if batches is not None else self.batches:
                with suppress(StopForward):
                    sr.net(lr[0].to(self.device))
        return store


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted tensor is captured."""


@contextmanager
def capture_layer(module: nn.Module, what: str = "input",
                  stop: bool = False) -> Iterator[list[torch.Tensor]]:
    """Collect a layer's first input or its output on each call while in the block.

    With ``stop`` the hook raises :class:`StopForward` after recording (caller catches it).
    """
    store: list[torch.Tensor] = []

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        store.append((inputs[0] if what == "input" else output).detach())
        if stop:
            raise StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
