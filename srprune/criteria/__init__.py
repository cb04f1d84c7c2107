"""Channel-selection criteria; importing this package registers the built-ins."""

from srprune.criteria import dr, magnitude  # noqa: F401  (registers dr, l1, random)
from srprune.criteria.base import (
    Criterion,
    ScoreCriterion,
    SelectionCriterion,
    register_criterion,
    top_k,
)

__all__ = ["Criterion", "ScoreCriterion", "SelectionCriterion", "register_criterion", "top_k"]
