"""One unit narrowed in place for a measurement, then put back: what a search's sensitivity sees.

A search that weighs "how much quality does unit U lose at width w" must narrow U the way the
run will. Channels are removed by zeroing every row that writes them (weights and biases of the
unit's producer layers): they then carry zeros into their consumers, as if removed (exact for
nets that map 0 to 0 after those layers, e.g. ReLU-family activations and residual adds).

Which channels stay, and what happens to their consumers, comes from the run's own criterion
when one is given: its choice, its consumer updates (``cp``'s least-squares refit,
``thinet``'s rescaling, the SGD of ``dr``/``dcp``) and, as the engine does with ``compensate``,
the bias compensation of :mod:`srprune.prune.compensation`. Without one, the first ``n_keep``
channels of a given order stay (e.g. by L1 filter mass) and nothing else changes. Measured on
the SPAN authors' x4 model, the difference is the whole story: ranked by L1 mass, halving
``conv_cat`` costs 16.9 dB; through ``cp`` it costs almost nothing (benchmarks/RESULTS.md).

Every parameter of the unit's producer and consumer layers is restored on exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from srprune.prune.compensation import compensate_biases, consumer_state
from srprune.prune.contracts import Context, Unit


def _touched(unit: Unit) -> list[tuple[torch.nn.Module, str]]:
    """The parameters a narrowing may change, as (layer, attribute name): those of the unit's
    producers and consumers (by name, since a criterion may replace a Parameter object)."""
    seen: dict[int, torch.nn.Module] = {}
    for _, module, _ in (*unit.producer_modules(), *unit.consumer_modules()):
        seen.setdefault(id(module), module)
    return [(module, name) for module in seen.values()
            for name, param in module.named_parameters(recurse=False) if param is not None]


@contextmanager
def narrowed(unit: Unit, n_keep: int, ctx: Context, criterion: Any = None,
             compensate: bool = False,
             order: Sequence[int] | torch.Tensor | None = None) -> Iterator[list[int]]:
    """Inside the block, ``unit`` keeps ``n_keep`` channels (yielded, sorted) and the others
    carry zeros.

    With ``criterion`` (a prepared criterion object), it chooses the channels and updates
    their consumers as in a real run, and ``compensate`` adds the engine's bias compensation;
    otherwise the first ``n_keep`` of ``order`` stay. All touched parameters are put back on
    exit, whatever happens inside.
    """
    if (criterion is None) == (order is None):
        raise ValueError("narrowed needs exactly one of criterion and order")
    params = _touched(unit)
    saved = [getattr(module, name).detach().clone() for module, name in params]
    try:
        with torch.no_grad():
            if criterion is not None:
                state = consumer_state(unit) if compensate and ctx.batches else None
                kept = sorted(int(k) for k in criterion.select(unit, n_keep, ctx))
                if state is not None:
                    compensate_biases(unit, kept, ctx, state)
            else:
                kept = sorted(int(k) for k in list(order)[:n_keep])
            keep = set(kept)
            removed = torch.tensor([j for j in range(unit.width) if j not in keep],
                                   dtype=torch.long)
            if len(removed):
                for _, module, index in unit.producer_modules():
                    rows = index.to(module.weight.device)[removed.to(index.device)].flatten()
                    module.weight[rows] = 0
                    if module.bias is not None:
                        module.bias[rows] = 0
        yield kept
    finally:
        with torch.no_grad():
            for (module, name), value in zip(params, saved, strict=True):
                getattr(module, name).copy_(value)


__all__ = ["narrowed"]
