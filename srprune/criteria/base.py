"""The two criterion contracts and the decorator that registers built-ins.

* Score criteria: ``score(unit, ctx) -> Tensor[unit.width]`` (higher = keep); the engine keeps
  the top ``n_keep`` channels.
* Selection criteria: ``select(unit, n_keep, ctx) -> kept indices``; they may update the
  weights of the unit's consumer layers (least squares, a few SGD steps, ...).

A criterion is a class; its constructor takes its options as keyword arguments. Criteria see
the unit and the run only through the protocols of :mod:`srprune.prune.contracts`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from srprune.prune.contracts import Context, Unit
from srprune.registry import CRITERIA


class Criterion:
    """Base of every criterion. ``needs_data`` criteria get calibration batches in ``ctx``."""

    kind: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False
    preset_group: ClassVar[str | None] = None
    """Which option group of a preset applies to this criterion (None: none).

    The run configuration passes the preset's options of that group (e.g. "greedy": rounds,
    SGD steps and batches) to any criterion class that declares it; options given explicitly
    still win.
    """

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no option {sorted(options)[0]!r}")

    def prepare(self, ctx: Context) -> None:
        """Called once by the engine before the first unit is pruned (default: nothing).

        Code that calls :meth:`select` without the engine must call this first.
        """

    def select(self, unit: Unit, n_keep: int, ctx: Context) -> list[int]:
        raise NotImplementedError


class ScoreCriterion(Criterion):
    """Keeps the ``n_keep`` best-scored channels (ties go to the lower index)."""

    kind = "score"

    def score(self, unit: Unit, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def select(self, unit: Unit, n_keep: int, ctx: Context) -> list[int]:
        scores = self.score(unit, ctx).detach().double().cpu()
        if scores.shape != (unit.width,):
            raise ValueError(f"{type(self).__name__} returned {tuple(scores.shape)} scores for "
                             f"a unit of width {unit.width}")
        if not torch.isfinite(scores).all():
            raise ValueError(f"{type(self).__name__} returned non-finite scores")
        return top_k(scores, n_keep)


class SelectionCriterion(Criterion):
    """Chooses kept channels itself and may update consumer weights."""

    kind = "selection"


def top_k(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest scores, ties to the lower index, returned sorted."""
    order = sorted(range(len(scores)), key=lambda j: (-float(scores[j]), j))
    return sorted(order[:k])


def register_criterion(name: str) -> Callable[[type], type]:
    """Class decorator registering a built-in criterion under ``name``."""
    return CRITERIA.register(name)
