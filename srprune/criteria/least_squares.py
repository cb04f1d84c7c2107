"""Least-squares rewrites of a consumer conv on the channels a unit keeps.

:func:`least_squares_update` refits the weights of ``C`` on the kept inputs and, when ``C``
has a bias, the bias (an unpenalised intercept; a bias-free consumer stays bias-free). The
ridge pulls towards the current weights: it solves
``min |Y - X W'^T - b'|^2 + alpha |W' - W|^2`` with ``alpha = ridge * trace(cov X) / p``.
:func:`scale_update` is ThiNet's variant: one least-squares scale per kept channel.

Fallbacks, always without NaN: a non-positive-definite system is solved by ``lstsq`` (gelsd,
``rcond`` 1e-10: the minimum-norm change from ``W``); fewer samples than unknowns, or a
non-finite solution, leaves the weights unchanged (plain removal) with a ``UserWarning``.
"""

from __future__ import annotations

import warnings

import torch

from srprune.criteria.gram import channel_gram
from srprune.criteria.sampling import ConsumerStats

LSTSQ_RCOND = 1e-10


def ridge_solve(cov: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor | None:
    """Solve ``(cov + alpha I) X = rhs`` with ``alpha = ridge * trace(cov) / dim``.

    Cholesky when positive definite, else ``lstsq`` (gelsd, minimum norm, rcond 1e-10);
    ``None`` when the result is not finite.
    """
    if not (bool(torch.isfinite(cov).all()) and bool(torch.isfinite(rhs).all())):
        return None
    dim = cov.shape[0]
    scale = float(torch.trace(cov)) / dim if dim else 0.0
    alpha = ridge * scale if scale > 0 else ridge
    a = cov + alpha * torch.eye(dim, dtype=cov.dtype)
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0 and alpha > 0:
        sol = torch.cholesky_solve(rhs, chol)
    else:
        try:
            sol = torch.linalg.lstsq(a, rhs, rcond=LSTSQ_RCOND, driver="gelsd").solution
        except RuntimeError:  # LAPACK failed to converge
            return None
    return sol if bool(torch.isfinite(sol).all()) else None


def _fallback(who: str, name: str, why: str) -> None:
    """Warn that consumer ``name`` keeps its weights (plain removal) and why."""
    warnings.warn(f"{who}: {name}: {why}; weights of the kept channels left unchanged "
                  "(plain removal)", UserWarning, stacklevel=3)


def least_squares_update(stats: ConsumerStats, kept: list[int], ridge: float, who: str) -> bool:
    """Refit the consumer's weights (and bias) on its surviving inputs; True if refit.

    Writes into the consumer in place; the columns of dropped channels are left for the
    graph to remove.
    """
    inputs = stats.kept_inputs(kept)
    cols = stats.columns(inputs)
    has_bias = stats.module.bias is not None
    unknowns = len(cols) + int(has_bias)
    if stats.n < unknowns:
        _fallback(who, stats.name, f"{stats.n} samples for {unknowns} unknowns per output")
        return False
    w0 = stats.weight2d()[:, cols]
    xx, xy = stats.xx[cols][:, cols], stats.xy[cols]
    if has_bias:
        mx, my = stats.sum_x[cols] / stats.n, stats.sum_y / stats.n
        xx = xx - stats.n * torch.outer(mx, mx)
        xy = xy - stats.n * torch.outer(mx, my)
    delta = ridge_solve(xx, xy - xx @ w0.T, ridge)
    if delta is None:
        _fallback(who, stats.name, "the least-squares solution is not finite")
        return False
    w_new = (w0.T + delta).T
    module = stats.module
    with torch.no_grad():
        weight = module.weight.detach().reshape(module.out_channels, -1).clone()
        weight[:, cols] = w_new.to(weight.dtype).to(weight.device)
        module.weight.copy_(weight.view_as(module.weight))
        if has_bias:
            module.bias.copy_((my - w_new @ mx).to(module.bias.dtype))
    return True


def scale_update(stats: ConsumerStats, kept: list[int], ridge: float, who: str) -> bool:
    """ThiNet's least-squares scaling: ``W[:, channel s] *= w_s``; True if applied."""
    gram = channel_gram(stats)
    k = torch.as_tensor(sorted(kept), dtype=torch.long)
    if gram.rows < len(k):
        _fallback(who, stats.name, f"{gram.rows} sampled outputs for {len(k)} scales")
        return False
    g = gram.gram[k][:, k]
    delta = ridge_solve(g, (gram.corr[k] - g.sum(1))[:, None], ridge)
    if delta is None:
        _fallback(who, stats.name, "the least-squares scaling is not finite")
        return False
    factors = 1.0 + delta[:, 0]
    module = stats.module
    with torch.no_grad():
        for s, f in zip(k.tolist(), factors.tolist()):
            module.weight[:, stats.index[s].to(module.weight.device)] *= f
    return True


__all__ = ["LSTSQ_RCOND", "least_squares_update", "ridge_solve", "scale_update"]
