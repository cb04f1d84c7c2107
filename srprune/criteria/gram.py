"""Gram sums of a unit's channel contributions to its consumers, from sampled statistics.

The output of a consumer conv ``C`` is linear in per-channel patch blocks: channel q
contributes ``z_q = W[:, q] . X_i[q]`` at sampled position i (see
:mod:`srprune.criteria.sampling`); every Gram of contributions, and the output error of any
kept set, is derived from the sufficient statistics without revisiting the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from srprune.criteria.sampling import ConsumerStats


@dataclass
class ChannelGram:
    """Contributions ``Z_j`` of the unit's channels to the consumer output, as Gram sums.

    ``gram[j, l] = <Z_j, Z_l>``; ``corr[j] = <r, Z_j>`` and ``rr = |r|^2`` where ``r`` is the
    part of the target the unit's channels must produce (target minus bias minus the
    contributions of the consumer's other inputs). All sums run over samples and outputs.
    """

    gram: torch.Tensor
    corr: torch.Tensor
    rr: float
    rows: int  # samples x outputs

    def __add__(self, other: ChannelGram) -> ChannelGram:
        return ChannelGram(self.gram + other.gram, self.corr + other.corr,
                           self.rr + other.rr, self.rows + other.rows)

    def error(self, kept: list[int], scale: torch.Tensor | None = None) -> float:
        """``|r - sum_{j in kept} s_j Z_j|^2`` (``s = 1`` by default)."""
        k = torch.as_tensor(kept, dtype=torch.long)
        s = torch.ones(len(k), dtype=torch.float64) if scale is None else scale
        return float(self.rr - 2 * s @ self.corr[k] + s @ self.gram[k][:, k] @ s)


def channel_gram(stats: ConsumerStats) -> ChannelGram:
    """Gram sums of the unit's channel contributions to one consumer (see ChannelGram)."""
    w = stats.weight2d()  # (n_out, p)
    c, kk = stats.module.in_channels, stats.kk
    b = stats.bias()
    # input-channel level: Gin[q, r] = sum_{a,b} xx[(q,a),(r,b)] * (W^T W)[(q,a),(r,b)]
    g_in = (stats.xx * (w.T @ w)).reshape(c, kk, c, kk).sum((1, 3))
    yz = (stats.xy * w.T).reshape(c, kk, -1).sum((1, 2))
    bz = (stats.sum_x * (w.T @ b)).reshape(c, kk).sum(1)
    unit_inputs = stats.index.flatten()
    others = torch.ones(c, dtype=torch.bool)
    others[unit_inputs] = False
    corr_in = yz - bz - g_in[:, others].sum(1)
    yb = stats.yy - 2 * float(b @ stats.sum_y) + stats.n * float(b @ b)
    rr = yb - 2 * float((yz - bz)[others].sum()) + float(g_in[others][:, others].sum())
    assign = torch.zeros(stats.index.shape[0], c, dtype=torch.float64)
    for j, row in enumerate(stats.index):
        assign[j, row] = 1.0
    return ChannelGram(gram=assign @ g_in @ assign.T, corr=assign @ corr_in, rr=rr,
                       rows=stats.n * stats.module.out_channels)


def total_gram(all_stats: list[ConsumerStats]) -> ChannelGram:
    """Sum of :func:`channel_gram` over the unit's consumers."""
    grams = [channel_gram(s) for s in all_stats]
    total = grams[0]
    for g in grams[1:]:
        total = total + g
    return total


def output_error(stats: ConsumerStats, kept: list[int]) -> float:
    """``sum_i |Y_i - C(X_i)|^2`` over the samples, with the consumer's current weights and
    only the inputs surviving ``kept`` (the others read as removed)."""
    cols = stats.columns(stats.kept_inputs(kept))
    w = stats.weight2d()[:, cols]
    b = stats.bias()
    xx, xy, sx = stats.xx[cols][:, cols], stats.xy[cols], stats.sum_x[cols]
    err = (stats.yy - 2 * float((w.T * xy).sum()) - 2 * float(b @ stats.sum_y)
           + float((w @ xx * w).sum()) + 2 * float(b @ (w @ sx)) + stats.n * float(b @ b))
    return max(err, 0.0)


__all__ = ["ChannelGram", "channel_gram", "output_error", "total_gram"]
