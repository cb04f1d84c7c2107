"""Shared machinery of the reconstruction criteria (CP, ThiNet): features, Gram sums, solves.

For one unit, each consumer conv ``C`` (weight ``W``: n outputs x c inputs x k x k) is looked at
on a bounded, seeded sample of output positions of the calibration batches:

* ``X_i``: the k x k input patch of ``C`` at position i in the model **being pruned** (so errors
  made by earlier units are compensated), flattened to ``c*k*k`` (im2col, stride, dilation and
  padding mode of ``C`` honoured);
* ``Y_i``: the output of ``C`` at the same position in the **original** model (``target
  "original"``, CP's choice) or in the model being pruned (``target "current"``, ThiNet's).

Only sufficient statistics are kept (``N``, ``sum X``, ``sum Y``, ``X^T X``, ``X^T Y``,
``sum |Y|^2``, float64), so memory is ``O((c k^2)^2)`` whatever the number of samples. The
output of ``C`` is linear in per-channel patch blocks: channel q contributes
``z_q = W[:, q] . X_i[q]``; every Gram of contributions is derived from the statistics.

Least-squares rewrite of ``C`` on the kept inputs (:func:`least_squares_update`): weights and,
when ``C`` has a bias, the bias are refit (the bias is an unpenalised intercept; a bias-free
consumer stays bias-free). The ridge pulls towards the current weights: it solves
``min |Y - X W'^T - b'|^2 + alpha |W' - W|^2`` with ``alpha = ridge * trace(cov X) / p``.
Fallbacks, always without NaN: a non-positive-definite system is solved by ``lstsq`` (gelsd,
``rcond`` 1e-10: the minimum-norm change from ``W``); fewer samples than unknowns, or a
non-finite solution, leaves the weights unchanged (plain removal) with a ``UserWarning``.

Consumers must be ``nn.Conv2d`` with ``groups == 1``; other consumers raise ``SrpruneError``.
A consumer called several times per forward pass is sampled on its first call only.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srprune.criteria.base import SelectionCriterion
from srprune.errors import SrpruneError
from srprune.prune.plan import layer_channels

TARGETS = ("original", "current")
LSTSQ_RCOND = 1e-10

# Output rows of producer layers kept so far in a run, in original coordinates, keyed by the
# run's frozen original net: lets an "original" target follow consumers whose outputs an
# earlier unit already pruned.
_KEPT_ROWS: weakref.WeakKeyDictionary[nn.Module, dict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary())


@dataclass
class ConsumerStats:
    """Sufficient statistics of one consumer conv on the sampled positions (float64, CPU)."""

    name: str
    module: nn.Conv2d  # the consumer in the model being pruned
    index: torch.Tensor  # (width, m): consumer input channels of each unit channel
    n: int  # number of sampled positions
    sum_x: torch.Tensor  # (p,)  with p = c * k * k
    sum_y: torch.Tensor  # (n_out,)
    xx: torch.Tensor  # (p, p)
    xy: torch.Tensor  # (p, n_out)
    yy: float  # sum of squared targets

    @property
    def kk(self) -> int:
        return int(self.module.kernel_size[0] * self.module.kernel_size[1])

    def weight2d(self) -> torch.Tensor:
        """Current weights as (n_out, p) float64."""
        return self.module.weight.detach().double().cpu().reshape(self.module.out_channels, -1)

    def bias(self) -> torch.Tensor:
        b = self.module.bias
        if b is None:
            return torch.zeros(self.module.out_channels, dtype=torch.float64)
        return b.detach().double().cpu()

    def kept_inputs(self, kept: list[int]) -> torch.Tensor:
        """Consumer input channels that survive when the unit keeps ``kept`` (sorted)."""
        drop = torch.zeros(self.module.in_channels, dtype=torch.bool)
        keep = set(kept)
        dropped = [j for j in range(self.index.shape[0]) if j not in keep]
        if dropped:
            drop[self.index[dropped].flatten()] = True
        return torch.nonzero(~drop).flatten()

    def columns(self, inputs: torch.Tensor) -> torch.Tensor:
        """Flattened patch columns of the given input channels."""
        return (inputs[:, None] * self.kk + torch.arange(self.kk)).flatten()


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


# ----------------------------------------------------------------- feature collection


class _Stop(Exception):
    """Raised from a hook once every consumer has been sampled (ends the forward early)."""


def conv_consumers(unit: Any, who: str) -> list[tuple[str, nn.Conv2d, torch.Tensor]]:
    """The unit's consumers, checked to be plain (groups 1) convolutions."""
    consumers = unit.consumer_modules()
    if not consumers:
        raise SrpruneError(f"{who}: unit {unit.name} has no consumer layer to reconstruct")
    for name, module, _ in consumers:
        if not isinstance(module, nn.Conv2d):
            raise SrpruneError(f"{who}: consumer {name} of unit {unit.name} is a "
                               f"{type(module).__name__}; only Conv2d consumers are supported")
        if module.groups != 1:
            raise SrpruneError(f"{who}: consumer {name} of unit {unit.name} has groups="
                               f"{module.groups}; only groups=1 convs are supported")
    return consumers


def _pad(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    if isinstance(conv.padding, str):
        amounts = [0, 0, 0, 0]
        if conv.padding == "same":
            for dim, slot in ((1, 0), (0, 2)):  # F.pad order: left, right, top, bottom
                total = conv.dilation[dim] * (conv.kernel_size[dim] - 1)
                amounts[slot], amounts[slot + 1] = total // 2, total - total // 2
    else:
        ph, pw = conv.padding
        amounts = [pw, pw, ph, ph]
    if not any(amounts):
        return x
    if conv.padding_mode == "zeros":
        return F.pad(x, amounts)
    return F.pad(x, amounts, mode=conv.padding_mode)


def patches(x: torch.Tensor, conv: nn.Conv2d, img: torch.Tensor, oh: torch.Tensor,
            ow: torch.Tensor) -> torch.Tensor:
    """im2col at output positions ``(img, oh, ow)``: (N, c*kh*kw) in the weight's layout."""
    xp = _pad(x, conv)
    kh, kw = conv.kernel_size
    rows = oh[:, None] * conv.stride[0] + torch.arange(kh, device=x.device) * conv.dilation[0]
    cols = ow[:, None] * conv.stride[1] + torch.arange(kw, device=x.device) * conv.dilation[1]
    block = xp[img[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, kh, kw, c)
    return block.permute(0, 3, 1, 2).reshape(len(img), -1)


def _positions(gen: torch.Generator, n_img: int, h: int, w: int,
               per_image: int) -> tuple[torch.Tensor, ...]:
    take = min(per_image, h * w)
    flat = torch.cat([torch.randperm(h * w, generator=gen)[:take] for _ in range(n_img)])
    img = torch.arange(n_img).repeat_interleave(take)
    return img, flat // w, flat % w


def _target_rows(ctx: Any, name: str, current_out: int, original_out: int) -> torch.Tensor | None:
    """Original output rows of consumer ``name`` still present in the pruned model."""
    if current_out == original_out:
        return None
    rows = _KEPT_ROWS.get(ctx.original.net, {}).get(name)
    if rows is None or len(rows) != current_out:
        raise SrpruneError(f"consumer {name} lost output channels outside this criterion "
                           "(cannot match them to the original model); reconstruct against "
                           "the current model instead (cp/thinet: target=current; dr/dcp: "
                           "refit=none)")
    return rows


def collect_stats(unit: Any, ctx: Any, samples: int, target: str, who: str) -> list[ConsumerStats]:
    """Sample every consumer of ``unit`` on the calibration batches (see module docstring).

    ``samples`` output positions per consumer are spread evenly over the calibration images
    (at least one per image, at most all of an image's positions), drawn from a generator
    seeded by the run's seed and the unit.
    """
    batches = ctx.require_data(who)
    consumers = conv_consumers(unit, who)
    n_images = sum(int(lr[0].shape[0]) for lr, _ in batches)
    sampler = _Sampler(
        gen=torch.Generator().manual_seed(int(ctx.seed) * 1_000_003 + int(unit.uid)),
        per_image=max(1, math.ceil(samples / max(1, n_images))), target=target)
    acc: dict[str, dict[str, Any]] = {name: {} for name, _, _ in consumers}
    for lr, _ in batches:
        found = sampler.batch(ctx, consumers, lr[0].to(ctx.device))
        missing = [name for name in acc if name not in found or "y" not in found[name]]
        if missing:
            raise SrpruneError(f"{who}: consumer {missing[0]} of unit {unit.name} is never "
                               "called in the forward pass")
        for name in acc:
            _accumulate(acc[name], found[name]["x"], found[name]["y"])
    return [ConsumerStats(name=name, module=module, index=index.cpu(), **acc[name])
            for name, module, index in consumers]


@dataclass
class _Sampler:
    """Per-batch sampling of consumer input patches and target outputs."""

    gen: torch.Generator
    per_image: int
    target: str

    def batch(self, ctx: Any, consumers: list, x: torch.Tensor) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        hooks = {name: self._input_hook(name, conv, found, len(consumers))
                 for name, conv, _ in consumers}
        _run(ctx.model.net, x, hooks)
        if self.target == "original" and len(found) == len(consumers):
            hooks = {name: self._output_hook(ctx, name, conv.out_channels, found,
                                             len(consumers))
                     for name, conv, _ in consumers}
            _run(ctx.original.net, x, hooks)
        return found

    def _input_hook(self, name: str, conv: nn.Conv2d, found: dict, total: int) -> Any:
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if name in found:
                return
            img, oh, ow = (t.to(output.device) for t in _positions(
                self.gen, output.shape[0], output.shape[2], output.shape[3], self.per_image))
            found[name] = {"pos": (img, oh, ow),
                           "x": patches(inputs[0], conv, img, oh, ow).double().cpu()}
            if self.target == "current":
                found[name]["y"] = output[img, :, oh, ow].double().cpu()
            if len(found) == total:
                raise _Stop
        return hook

    @staticmethod
    def _output_hook(ctx: Any, name: str, current_out: int, found: dict, total: int) -> Any:
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if "y" in found[name]:
                return
            img, oh, ow = found[name]["pos"]
            y = output[img, :, oh, ow].double().cpu()
            rows = _target_rows(ctx, name, current_out, output.shape[1])
            found[name]["y"] = y if rows is None else y[:, rows]
            if all("y" in f for f in found.values()) and len(found) == total:
                raise _Stop
        return hook


def _run(net: nn.Module, x: torch.Tensor, hooks: dict[str, Any]) -> None:
    modules = dict(net.named_modules())
    handles = [modules[name].register_forward_hook(fn) for name, fn in hooks.items()]
    try:
        with torch.no_grad():
            net(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()


def _accumulate(acc: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> None:
    parts = {"n": x.shape[0], "sum_x": x.sum(0), "sum_y": y.sum(0), "xx": x.T @ x,
             "xy": x.T @ y, "yy": float((y * y).sum())}
    for key, value in parts.items():
        acc[key] = value if key not in acc else acc[key] + value


# ----------------------------------------------------------------- Gram of contributions


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


# ----------------------------------------------------------------- solves and rewrites


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


def record_kept_rows(unit: Any, kept: list[int], ctx: Any) -> None:
    """Track which original output rows of the unit's producers survive (for targets).

    Call before the unit is pruned: member indices are in current coordinates, so the rows a
    producer still has are mapped back through what earlier units left of it (a producer can
    feed several units, e.g. a conv whose output is concatenated).
    """
    rows = _KEPT_ROWS.setdefault(ctx.original.net, {})
    originals = dict(ctx.original.net.named_modules())
    keep = set(kept)
    dropped = [j for j in range(unit.width) if j not in keep]
    for name, module, index in unit.producer_modules():
        current = rows.get(name)
        if current is None:
            current = torch.arange(layer_channels(originals[name])[0])
        if len(current) != layer_channels(module)[0]:  # pruned where we could not follow it
            rows.pop(name, None)
            continue
        alive = torch.ones(len(current), dtype=torch.bool)
        if dropped:
            alive[index[dropped].flatten().cpu()] = False
        rows[name] = current[alive]


# ----------------------------------------------------------------- the criterion base


class ReconstructionCriterion(SelectionCriterion):
    """Base of CP and ThiNet: sample consumers, choose channels, rewrite consumer weights.

    Common options: ``samples`` (positions sampled per consumer), ``ridge`` (relative ridge of
    the least-squares solves, towards the current weights), ``target`` ("original" or
    "current": whose consumer output is reconstructed). Defaults are set by subclasses.
    """

    needs_data = True
    label = "reconstruction"

    def __init__(self, samples: int = 4000, ridge: float = 1e-3, target: str = "original",
                 **options: Any) -> None:
        super().__init__(**options)
        if int(samples) != samples or samples < 1:
            raise SrpruneError(f"{self.label}: samples must be a positive integer, "
                               f"got {samples!r}")
        if not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge < 0:
            raise SrpruneError(f"{self.label}: ridge must be a finite number >= 0, "
                               f"got {ridge!r}")
        if target not in TARGETS:
            raise SrpruneError(f"{self.label}: target must be one of {', '.join(TARGETS)}, "
                               f"got {target!r}")
        self.samples, self.ridge, self.target = int(samples), float(ridge), target

    @property
    def who(self) -> str:
        return f"criterion '{self.label}'"

    def choose(self, unit: Any, n_keep: int, stats: list[ConsumerStats]) -> list[int]:
        raise NotImplementedError

    def update(self, unit: Any, kept: list[int], stats: list[ConsumerStats]) -> None:
        for s in stats:
            least_squares_update(s, kept, self.ridge, self.who)

    def select(self, unit: Any, n_keep: int, ctx: Any) -> list[int]:
        if not 1 <= n_keep <= unit.width:
            raise SrpruneError(f"{self.who}: cannot keep {n_keep} of {unit.width} channels "
                               f"in unit {unit.name}")
        stats = collect_stats(unit, ctx, self.samples, self.target, self.who)
        kept = sorted(int(j) for j in self.choose(unit, n_keep, stats))
        self.update(unit, kept, stats)
        record_kept_rows(unit, kept, ctx)
        return kept


__all__ = ["TARGETS", "ChannelGram", "ConsumerStats", "ReconstructionCriterion",
           "channel_gram", "collect_stats", "conv_consumers", "least_squares_update",
           "output_error", "patches", "record_kept_rows", "ridge_solve", "scale_update",
           "total_gram"]
