"""Channel-selection criteria; importing this package registers the built-ins.

* ``base``: the criterion contracts (score / selection), ``register_criterion``, ``top_k``.
* ``magnitude`` (l1, random), ``cp``, ``thinet``, ``dcp``, ``dr``: the built-in criteria.
* ``reconstruction``: the base of cp and thinet, built on ``sampling`` (consumer statistics
  on the calibration batches), ``gram`` (Gram sums of channel contributions) and
  ``least_squares`` (consumer weight rewrites).
* ``greedy``: the greedy gradient selection with SGD updates behind dcp and dr.
"""

from srprune.criteria import cp, dcp, dr, magnitude, thinet  # noqa: F401  (registers built-ins)
from srprune.criteria.base import (
    Criterion,
    ScoreCriterion,
    SelectionCriterion,
    register_criterion,
    top_k,
)

__all__ = ["Criterion", "ScoreCriterion", "SelectionCriterion", "register_criterion", "top_k"]
