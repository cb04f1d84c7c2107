"""``cp``: channel pruning by LASSO selection + least-squares reconstruction (He et al. 2017).

Adapted to SR as the DRC authors did (notes ``baselines.md`` §2.5): consumer input patches
come from the model being pruned, targets from the original model, the LASSO penalty is
bisected until exactly ``n_keep`` channels survive, then the consumer weights are refit.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from srprune.criteria.base import register_criterion
from srprune.criteria.gram import ChannelGram, total_gram
from srprune.criteria.reconstruction import ReconstructionCriterion
from srprune.criteria.sampling import ConsumerStats
from srprune.errors import SrpruneError
from srprune.prune.contracts import Unit

LAMBDA_FLOOR = 1e-6  # smallest penalty tried, relative to the one that zeroes every channel


def lasso(gram: np.ndarray, corr: np.ndarray, lam: float, beta: np.ndarray, iters: int,
          tol: float) -> np.ndarray:
    """Cyclic coordinate descent on ``1/2 b^T G b - c^T b + lam |b|_1`` (Gram form).

    ``beta`` is the warm start (copied). Stops after ``iters`` sweeps or when no coefficient
    moves by more than ``tol``. Channels with ``G_jj = 0`` stay at zero.
    """
    beta = beta.copy()
    grad = gram @ beta
    diag = np.diag(gram)
    for _ in range(iters):
        moved = 0.0
        for j in range(len(beta)):
            if diag[j] <= 0:
                continue
            old = beta[j]
            rho = corr[j] - grad[j] + diag[j] * old
            new = math.copysign(max(abs(rho) - lam, 0.0), rho) / diag[j]
            if new != old:
                grad += gram[:, j] * (new - old)
                beta[j] = new
                moved = max(moved, abs(new - old))
        if moved <= tol:
            break
    return beta


@register_criterion("cp")
class ChannelPruning(ReconstructionCriterion):
    """CP: LASSO channel selection on consumer-input patches + least-squares reconstruction.

    Options (``--criterion-opt key=value``):

    * ``samples`` (4000): output positions sampled per consumer, spread over all calibration
      images (the official code uses 10 per image; more are needed because the full k x k
      weights are refit). The LASSO runs on the Gram of all of them.
    * ``lasso_iters`` (300): coordinate-descent sweeps per LASSO solve.
    * ``lasso_tol`` (1e-7): a solve stops when no coefficient moves more than this.
    * ``bisect_steps`` (60): bisection steps on the penalty (log scale, between 1e-6 and 1
      times the penalty that zeroes every channel) to land on exactly ``n_keep`` nonzero
      coefficients. Fallback when it cannot land (ties, a non-monotone path, or fewer
      informative channels than ``n_keep``): keep the ``n_keep`` largest ``|beta|`` of the
      smallest-penalty solution with more than ``n_keep`` nonzeros (ties: larger contribution
      norm, then lower index); a ``UserWarning`` says so.
    * ``ridge`` (1e-3): relative ridge of the reconstruction, towards the current weights.
    * ``reconstruct`` (true): refit consumer weights and bias by least squares (false: plain
      removal of the unselected channels).
    * ``target`` ("original"): reconstruct the original model's consumer output, or
      "current" (the model being pruned).
    """

    label = "cp"

    def __init__(self, samples: int = 4000, lasso_iters: int = 300, lasso_tol: float = 1e-7,
                 bisect_steps: int = 60, ridge: float = 1e-3, reconstruct: bool = True,
                 target: str = "original") -> None:
        super().__init__(samples=samples, ridge=ridge, target=target)
        if int(lasso_iters) != lasso_iters or lasso_iters < 1 or \
                int(bisect_steps) != bisect_steps or bisect_steps < 0:
            raise SrpruneError("cp: lasso_iters must be >= 1 and bisect_steps >= 0 (integers)")
        if not lasso_tol >= 0:
            raise SrpruneError(f"cp: lasso_tol must be >= 0, got {lasso_tol!r}")
        self.lasso_iters, self.bisect_steps = int(lasso_iters), int(bisect_steps)
        self.lasso_tol, self.reconstruct = float(lasso_tol), bool(reconstruct)

    def choose(self, unit: Unit, n_keep: int, stats: list[ConsumerStats]) -> list[int]:
        return self.lasso_select(total_gram(stats), n_keep, unit.name)

    def update(self, unit: Unit, kept: list[int], stats: list[ConsumerStats]) -> None:
        if self.reconstruct:
            super().update(unit, kept, stats)

    def lasso_select(self, gram: ChannelGram, n_keep: int, where: str = "unit") -> list[int]:
        """Exactly ``n_keep`` channels by penalty bisection (fallback: see class docstring)."""
        g = gram.gram.numpy()
        c = gram.corr.numpy()
        norm = float(np.mean(np.diag(g)))
        if not (norm > 0 and np.isfinite(g).all() and np.isfinite(c).all()):
            return _fallback_rank(np.zeros(len(c)), np.diag(g), n_keep, where,
                                  "no channel contributes to the consumer output")
        g, c = g / norm, c / norm
        lam_max = float(np.max(np.abs(c)))
        if lam_max <= 0:
            return _fallback_rank(np.zeros(len(c)), np.diag(g), n_keep, where,
                                  "the target is orthogonal to every channel")

        def solve(t: float, start: np.ndarray) -> tuple[np.ndarray, int]:
            beta = lasso(g, c, t * lam_max, start, self.lasso_iters, self.lasso_tol)
            return beta, int(np.count_nonzero(beta))

        lo, hi = math.log(LAMBDA_FLOOR), 0.0
        beta_lo, nnz = solve(LAMBDA_FLOOR, np.zeros(len(c)))
        if nnz == n_keep:
            return sorted(np.flatnonzero(beta_lo).tolist())
        if nnz < n_keep:
            return _fallback_rank(beta_lo, np.diag(g), n_keep, where,
                                  f"only {nnz} channels are informative")
        for _ in range(self.bisect_steps):
            mid = (lo + hi) / 2
            beta, nnz = solve(math.exp(mid), beta_lo)
            if nnz == n_keep:
                return sorted(np.flatnonzero(beta).tolist())
            if nnz > n_keep:
                lo, beta_lo = mid, beta
            else:
                hi = mid
        return _fallback_rank(beta_lo, np.diag(g), n_keep, where,
                              f"the penalty bisection did not land on {n_keep} channels")


def _fallback_rank(beta: np.ndarray, diag: np.ndarray, n_keep: int, where: str,
                   why: str) -> list[int]:
    warnings.warn(f"cp: {where}: {why}; keeping the {n_keep} largest |beta|", UserWarning,
                  stacklevel=4)
    order = sorted(range(len(beta)), key=lambda j: (-abs(float(beta[j])), -float(diag[j]), j))
    return sorted(order[:n_keep])


__all__ = ["ChannelPruning", "lasso"]
