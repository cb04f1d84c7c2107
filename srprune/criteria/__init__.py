"""Channel-selection criteria; importing this package registers the built-ins."""

from srprune.criteria import cp, dcp, dr, magnitude, thinet  # noqa: F401  (registers built-ins)
from srprune.criteria.base import (
    Criterion,
    ScoreCriterion,
    SelectionCriterion,
    register_criterion,
    top_k,
)

__all__ = ["Criterion", "ScoreCriterion", "SelectionCriterion", "register_criterion", "top_k"]
