"""Pruning state that outlives one unit: which original output rows of each layer survive.

A criterion that reconstructs a consumer's *original* output (cp, thinet target=original,
the dr refit) must know which of that consumer's output rows earlier units removed. The
engine records every unit's kept channels here, in original coordinates, just before the
graph prunes them; criteria read it through ``Context.original_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.prune.contracts import Unit


def out_channels(module: nn.Module) -> int:
    """Output channels (features) of a conv or linear layer."""
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


class KeptRows:
    """Surviving original output rows per producer layer of one run."""

    def __init__(self, original: nn.Module) -> None:
        self._originals = dict(original.named_modules())
        self._rows: dict[str, torch.Tensor] = {}

    def record(self, unit: Unit, kept: Sequence[int]) -> None:
        """Note that ``unit`` keeps ``kept``; call before the unit is pruned.

        Member indices are in current coordinates, so the rows a producer still has are
        mapped back through what earlier units left of it (a producer can feed several units,
        e.g. a conv whose output is concatenated).
        """
        keep = set(kept)
        dropped = [j for j in range(unit.width) if j not in keep]
        for name, module, index in unit.producer_modules():
            current = self._rows.get(name)
            if current is None:
                current = torch.arange(out_channels(self._originals[name]))
            if len(current) != out_channels(module):  # pruned where we could not follow it
                self._rows.pop(name, None)
                continue
            alive = torch.ones(len(current), dtype=torch.bool)
            if dropped:
                alive[index[dropped].flatten().cpu()] = False
            self._rows[name] = current[alive]

    def rows(self, layer: str, current: int) -> torch.Tensor | None:
        """Original rows of ``layer`` still present (None when none were removed)."""
        if current == out_channels(self._originals[layer]):
            return None
        rows = self._rows.get(layer)
        if rows is None or len(rows) != current:
            raise SrpruneError(f"consumer {layer} lost output channels outside this run's "
                               "record (cannot match them to the original model); reconstruct "
                               "against the current model instead (cp/thinet: target=current; "
                               "dr/dcp: refit=none)")
        return rows
