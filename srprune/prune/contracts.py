"""What plugins implement against: read-only views of a pruning unit and of the run.

Criteria and strategies see these protocols only (never a Torch-Pruning object). The engine's
concrete classes (``prune.graph.PruningUnit``, ``prune.context.PruneContext``,
``prune.plan.PlanCost``) satisfy them; tests check that with ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

from srprune.models.srmodel import SRModel

Batch = tuple[list[torch.Tensor], torch.Tensor]
"""One calibration batch: (LR pyramid, smallest first; its first item is the input, HR)."""

Plan = dict[str, int]
"""Kept width per unit name."""

ProgressFn = Callable[[str, int, int], None]
"""A progress callback: ``(stage, done, total)``, ``done`` of ``total`` steps finished."""


class LayerSlice(NamedTuple):
    """One layer touching a unit: ``index[j]`` lists the layer's channels for unit channel j.

    ``index`` is a LongTensor (unit width, channels per unit channel): more than one channel per
    unit channel when the unit feeds a PixelShuffle (r^2 producer channels per shuffled one).
    """

    name: str
    module: nn.Module
    index: torch.Tensor


@runtime_checkable
class Unit(Protocol):
    """A coupled channel set: producers whose outputs and consumers whose inputs shrink together.

    ``width`` counts selectable channels now; ``group_size`` is the number of producer
    channels one selectable channel stands for (r^2 before a PixelShuffle(r), else 1);
    ``kind`` is "internal" (inside a block), "trunk" (residual/concat coupled) or "attention".
    """

    @property
    def uid(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def group_size(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def original_width(self) -> int: ...
    @property
    def producers(self) -> list[str]: ...
    @property
    def consumers(self) -> list[str]: ...

    def producer_modules(self) -> list[LayerSlice]:
        """Convs/linears writing this unit's channels, with their current channel indices."""
        ...

    def consumer_modules(self) -> list[LayerSlice]:
        """Convs/linears reading this unit's channels, with their current channel indices."""
        ...


@runtime_checkable
class Context(Protocol):
    """The run as a criterion or strategy sees it.

    ``model`` is being pruned in place; ``original`` is a frozen copy from before pruning
    (same layer names); ``batches`` are the calibration batches (empty without ``--data``);
    ``seed``, ``dual_weight`` (lambda of the DR loss) and ``device`` are the run's settings.
    """

    @property
    def model(self) -> SRModel: ...
    @property
    def original(self) -> SRModel: ...
    @property
    def batches(self) -> list[Batch]: ...
    @property
    def device(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def dual_weight(self) -> float: ...

    def require_data(self, who: str) -> list[Batch]:
        """The calibration batches, or a one-line error naming ``who`` needs them."""
        ...

    def module(self, name: str, original: bool = False) -> nn.Module:
        """A layer of the model being pruned (or of the original) by name."""
        ...

    def capture(self, name: str, batches: Sequence[Batch] | None = None,
                original: bool = False, what: str = "input") -> list[torch.Tensor]:
        """Input (or output) of layer ``name`` on each batch; forward passes stop early."""
        ...

    def original_rows(self, layer: str, current: int) -> torch.Tensor | None:
        """Which original output rows of ``layer`` survive (None if all ``current`` do)."""
        ...

    def report(self, stage: str, done: int, total: int) -> None:
        """Progress of a long loop: ``done`` of ``total`` steps of ``stage`` are finished.

        Call it with ``done=0`` before the first step and after every step; the CLI shows a
        bar (terminal) or start/periodic/done lines (logs). A no-op without a progress callback.
        """
        ...


@runtime_checkable
class CostModel(Protocol):
    """Exact params/MACs of the primal net under any plan, before anything is pruned."""

    def params(self, keep: Plan) -> int: ...
    def macs(self, keep: Plan) -> int: ...
    def reduction(self, keep: Plan) -> float:
        """Fraction of the current primal parameters removed by ``keep``."""
        ...
