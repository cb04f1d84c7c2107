"""The run as criteria and strategies see it (implements ``prune.contracts.Context``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.hooks import capture_layer, run_until_stop
from srprune.models.srmodel import SRModel
from srprune.prune.contracts import Batch, ProgressFn
from srprune.prune.graph import SRGraph
from srprune.prune.state import KeptRows


@dataclass
class PruneContext:
    """Read access for criteria and strategies, plus the engine's own pruning state.

    ``model`` is being pruned in place; ``original`` is a frozen copy of it before pruning
    (same layer names); ``batches`` are calibration batches (LR pyramid, HR) or empty when
    no data was given; ``progress`` receives :meth:`report` calls (None: they are dropped).
    ``graph`` and ``kept_rows`` belong to the engine (not part of the plugin contract).
    """

    model: SRModel
    original: SRModel
    graph: SRGraph
    batches: list[Batch] = field(default_factory=list)
    device: str = "cpu"
    seed: int = 0
    dual_weight: float = 0.1
    kept_rows: KeptRows | None = None
    progress: ProgressFn | None = None
    criterion: Any = None
    """The run's criterion object (a search may narrow units with it to price them)."""
    criterion_name: str = ""
    compensate: bool = False
    """Whether the engine compensates biases after the criterion (searches do the same)."""

    def __post_init__(self) -> None:
        if self.kept_rows is None:
            self.kept_rows = KeptRows(self.original.net)

    def report(self, stage: str, done: int, total: int) -> None:
        """Progress of a long loop (``done`` of ``total`` steps of ``stage``); no-op without
        a progress callback."""
        if self.progress is not None:
            self.progress(stage, done, total)

    def require_data(self, who: str) -> list[Batch]:
        """The calibration batches, or a clear error naming who needs them."""
        if not self.batches:
            raise SrpruneError(f"{who} needs calibration images: pass --data DIR")
        return self.batches

    def module(self, name: str, original: bool = False) -> nn.Module:
        net = (self.original if original else self.model).net
        return dict(net.named_modules())[name]

    def capture(self, name: str, batches: Sequence[Batch] | None = None,
                original: bool = False, what: str = "input") -> list[torch.Tensor]:
        """Inputs (or outputs) of layer ``name`` on each batch, without gradients.

        The forward pass stops right after the layer's first call: nothing later is computed.
        """
        sr = self.original if original else self.model
        with capture_layer(self.module(name, original), what, stop=True) as store:
            for lr, _ in batches if batches is not None else self.batches:
                run_until_stop(sr.net, lr[0].to(self.device))
        return store

    def original_rows(self, layer: str, current: int) -> torch.Tensor | None:
        """Original output rows of ``layer`` still present (None if it has all of them)."""
        assert self.kept_rows is not None
        return self.kept_rows.rows(layer, current)
