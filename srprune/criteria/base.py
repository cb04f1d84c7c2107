"""The two criterion contracts and the decorator that registers built-ins.

* Score criteria: ``score(unit, ctx) -> Tensor[unit.width]`` (higher = keep); the engine keeps
  the top ``n_keep`` channels.
* Selection criteria: ``select(unit, n_keep, ctx) -> kept indices``; they may update the
  weights of the unit's consumer layers (least squares, a few SGD steps, ...).

A criterion is a class; its constructor takes its options as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from srprune.registry import CRITERIA


class Criterion:
    """Base of every criterion. ``needs_data`` criteria get calibration batches in ``ctx``."""

    kind: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no option {sorted(options)[0]!r}")

    def prepare(self, ctx: Any) -> None:
        """Called once by the engine before the first unit is pruned (default: nothing)."""

    def select(self, unit: Any, n_keep: int, ctx: Any) -> list[int]:
        raise NotImplementedError


class ScoreCriterion(Criterion):
    """Keeps the ``n_keep`` best-scored channels (ties go to the lower index)."""

    kind = "score"

    def score(self, unit: Any, ctx: Any) -> torch.Tensor:
        raise NotImplementedError

    def select(self, unit: Any, n_keep: int, ctx: Any) -> list[int]:
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
