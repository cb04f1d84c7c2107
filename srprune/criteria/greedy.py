"""Greedy gradient-norm channel selection with short SGD updates (DCP / DR pruning core).

For one unit, the consumer layers' weights are replaced by trainable copies ``Wp`` whose
columns for the unit's channels start at zero (columns a consumer reads from other units keep
their weights and stay frozen); a channel mask ``d`` starts empty. Each round accumulates the
gradient ``G`` of

    loss = reconstruction_weight * sum_c MSE(consumer_c output, original consumer_c output)
           + gamma * aux_loss(pruned model)

over the calibration batches, adds the unselected channels with the largest gradient score,
warm-starts their weights from the original, then takes ``sgd_steps`` SGD steps (Nesterov,
momentum 0.9) on ``Wp`` (masked to the selected channels) and the consumer biases; steps that
raise the loss on the first calibration batch are undone and retried at up to three ten times
smaller learning rates, else skipped (a consumer that writes image-scale values, such as the
output conv under ``--scope all``, otherwise diverges at the authors' lr). Every other
parameter stays frozen. Subclasses define ``aux_loss``.

With ``refit="lstsq"`` the selection ends with the closed-form solve of the reconstruction
part of the sub-problem: the kept consumer weights (and bias) are refit by least squares to
the original model's consumer output, as ``cp`` does (:mod:`srprune.criteria.least_squares`).

The engine calls :meth:`~GreedyGradientSelection.prepare` once before the first unit; code
that calls ``select`` directly must call it first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from srprune.criteria.base import SelectionCriterion
from srprune.criteria.least_squares import least_squares_update
from srprune.criteria.sampling import collect_stats, grouped_consumer
from srprune.errors import SrpruneError
from srprune.hooks import capture_outputs
from srprune.models.srmodel import SRModel
from srprune.prune.contracts import Batch, Context, LayerSlice, Unit
from srprune.prune.prefix_cache import PrefixCache

VARIANTS = ("summed", "frobenius")
REFITS = ("none", "lstsq")
BACKTRACKS = 3  # retries of an SGD update that raised the loss, at lr/10, lr/100, lr/1000


class GreedyGradientSelection(SelectionCriterion):
    """Options (constructor keywords, ``--criterion-opt key=value`` on the CLI):

    * ``rounds`` (4): selection rounds per unit; each adds ``ceil(n_keep / rounds)`` channels
      (``rounds = n_keep`` is the authors' one-channel-at-a-time greedy).
    * ``sgd_steps`` (4): SGD steps on the consumer weights after each round.
    * ``lr`` (5e-5): SGD learning rate of those steps (the authors' ``layer_wise_lr``).
    * ``variant`` ("summed"): channel score from the gradient G of the consumer weights:
      "summed" = sum over output channels of per-kernel Frobenius norms (the authors' code),
      "frobenius" = ||G[:, j]||_F^2 (the paper's formula).
    * ``reconstruction_weight`` (1.0): weight of the feature-reconstruction term L_M.
    * ``gamma`` (1.0): weight of the auxiliary (image-level) loss.
    * ``max_batches`` (0 = all): calibration batches used per gradient pass.
    * ``cache_prefix`` (True): replay the frozen layers before the consumer from a per-batch
      cache instead of recomputing them (same result, less time).
    * ``refit`` ("none"): after the last round, "lstsq" refits the kept consumer weights and
      bias by least squares to the original consumer output on ``refit_samples`` (4000)
      sampled positions, ridge ``refit_ridge`` (1e-3); "none" keeps the SGD-updated weights.
    """

    needs_data = True
    aux_name = "aux"
    preset_group = "greedy"
    """A preset's "greedy" options (rounds, sgd_steps, max_batches) apply to every subclass."""

    def __init__(self, rounds: int = 4, sgd_steps: int = 4, lr: float = 5e-5,
                 variant: str = "summed", reconstruction_weight: float = 1.0,
                 gamma: float = 1.0, max_batches: int = 0, cache_prefix: bool = True,
                 refit: str = "none", refit_samples: int = 4000,
                 refit_ridge: float = 1e-3) -> None:
        if variant not in VARIANTS:
            raise SrpruneError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if refit not in REFITS:
            raise SrpruneError(f"refit must be one of {', '.join(REFITS)}, got {refit!r}")
        if (isinstance(refit_samples, bool) or not isinstance(refit_samples, int)
                or refit_samples < 1):
            raise SrpruneError(f"refit_samples must be a positive integer, got {refit_samples!r}")
        if (isinstance(refit_ridge, bool) or not isinstance(refit_ridge, (int, float))
                or not math.isfinite(refit_ridge) or refit_ridge < 0):
            raise SrpruneError(f"refit_ridge must be a finite number >= 0, got {refit_ridge!r}")
        if rounds < 1 or sgd_steps < 0 or not math.isfinite(lr) or lr <= 0:
            raise SrpruneError("rounds must be >= 1, sgd_steps >= 0 and lr a finite number > 0")
        self.rounds, self.sgd_steps, self.lr = int(rounds), int(sgd_steps), float(lr)
        self.variant = variant
        self.reconstruction_weight, self.gamma = float(reconstruction_weight), float(gamma)
        self.max_batches = int(max_batches)
        self.cache_prefix = bool(cache_prefix)
        self.refit, self.refit_samples = refit, int(refit_samples)
        self.refit_ridge = float(refit_ridge)
        self._cache: PrefixCache | None = None

    # -- hooks for subclasses -------------------------------------------------------

    def prepare(self, ctx: Context) -> None:
        """Called once before the first unit (e.g. to check or build dual nets)."""

    def aux_loss(self, ctx: Context, outputs: list[torch.Tensor], lr_pyramid: list[torch.Tensor],
                 hr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- selection --------------------------------------------------------------------

    def select(self, unit: Unit, n_keep: int, ctx: Context) -> list[int]:
        batches = ctx.require_data(f"criterion '{type(self).__name__}'")
        if self.max_batches:
            batches = batches[: self.max_batches]
        consumers = [(name, module, index) for name, module, index in unit.consumer_modules()
                     if isinstance(module, nn.Conv2d)]
        if not consumers:
            raise SrpruneError(f"unit {unit.name} has no conv consumer to select channels on")
        targets = self._original_outputs(ctx, consumers, batches)
        self._cache = (PrefixCache(ctx.model.net, [m for _, m, _ in consumers],
                                   [lr[0].to(ctx.device) for lr, _ in batches])
                       if self.cache_prefix else None)
        with _trainable_consumers(ctx.model, consumers) as (weights, originals):
            selected: list[int] = []
            per_round = math.ceil(n_keep / self.rounds)
            while len(selected) < n_keep:
                scores = self._scores(unit, ctx, consumers, weights, targets, batches)
                scores[selected] = -math.inf
                take = min(per_round, n_keep - len(selected))
                new = torch.topk(scores, take).indices.tolist()
                selected.extend(new)
                masks = _input_masks(consumers, selected, weights)
                with torch.no_grad():
                    for (_, _, index), w, orig in zip(consumers, weights, originals):
                        cols = index[new].flatten()
                        w[:, cols] = orig[:, cols]
                self._update(ctx, consumers, weights, masks, targets, batches)
        kept = sorted(selected)
        if self.refit == "lstsq" and grouped_consumer(unit) is None:
            self._refit(unit, kept, ctx)  # (a grouped consumer keeps its SGD-updated weights)
        return kept

    def _refit(self, unit: Unit, kept: list[int], ctx: Context) -> None:
        """Least-squares refit of the kept consumer weights (see the module docstring)."""
        who = f"criterion '{type(self).__name__}'"
        for stats in collect_stats(unit, ctx, self.refit_samples, "original", who):
            least_squares_update(stats, kept, self.refit_ridge, who)

    def _original_outputs(self, ctx: Context, consumers: list[LayerSlice],
                          batches: list[Batch]) -> list[list]:
        """Consumer outputs of the frozen original model (the reconstruction targets)."""
        if not self.reconstruction_weight:
            return [[None] * len(batches) for _ in consumers]
        return [ctx.capture(name, batches, original=True, what="output")
                for name, _, _ in consumers]

    def _loss(self, ctx: Context, consumers: list[LayerSlice], targets: list, batch_no: int,
              batch: Batch) -> torch.Tensor:
        lr_pyramid, hr = batch
        lr_pyramid = [t.to(ctx.device) for t in lr_pyramid]
        hr = hr.to(ctx.device)
        replay = self._cache.replay(batch_no) if self._cache is not None else nullcontext()
        with capture_outputs([m for _, m, _ in consumers]) as outs, replay:
            outputs = ctx.model.outputs(lr_pyramid[0])
        loss = hr.new_zeros(())
        if self.reconstruction_weight:
            for got, want in zip(outs, targets):
                target = want[batch_no]
                if got[0].shape == target.shape:  # skip when an earlier unit changed it
                    loss = loss + self.reconstruction_weight * F.mse_loss(got[0], target)
        if self.gamma:
            loss = loss + self.gamma * self.aux_loss(ctx, outputs, lr_pyramid, hr)
        return loss

    def _scores(self, unit: Unit, ctx: Context, consumers: list[LayerSlice], weights: list,
                targets: list, batches: list[Batch]) -> torch.Tensor:
        for w in weights:
            w.grad = None
        for i, batch in enumerate(batches):
            self._loss(ctx, consumers, targets, i, batch).backward()
        scores = torch.zeros(unit.width, dtype=torch.float64)
        for (_, _, index), w in zip(consumers, weights):
            g = w.grad.detach().double().cpu()
            if self.variant == "summed":
                per_input = g.pow(2).sum((2, 3)).sqrt().sum(0)
            else:
                per_input = g.pow(2).sum((0, 2, 3))
            scores += per_input[index].sum(1)
        return scores

    def _update(self, ctx: Context, consumers: list[LayerSlice], weights: list, masks: list,
                targets: list, batches: list[Batch]) -> None:
        """``sgd_steps`` masked SGD steps, judged by the loss on the first calibration batch.

        If they raise it (or make it non-finite) they are undone and retried at a ten times
        smaller learning rate, up to ``BACKTRACKS`` times; if every try fails, the weights
        stay as they were before the update.
        """
        if not self.sgd_steps:
            return
        biases = [m.bias for _, m, _ in consumers if m.bias is not None]
        params = [*weights, *biases]
        start = [p.detach().clone() for p in params]
        before: float | None = None
        lr = self.lr
        for _ in range(BACKTRACKS + 1):
            opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
            for step in range(self.sgd_steps):
                i = step % len(batches)
                opt.zero_grad(set_to_none=True)
                loss = self._loss(ctx, consumers, targets, i, batches[i])
                if before is None:  # first step of the first try: batch 0, starting weights
                    before = float(loss.detach())
                    if not math.isfinite(before):
                        raise SrpruneError(
                            f"the selection loss at {consumers[0][0]} is not finite before any "
                            "update; check the calibration images and the model's weights")
                loss.backward()
                for w, mask in zip(weights, masks):
                    w.grad.mul_(mask)
                opt.step()
            with torch.no_grad():
                after = float(self._loss(ctx, consumers, targets, 0, batches[0]))
            if math.isfinite(after) and after <= before:
                return
            with torch.no_grad():
                for p, value in zip(params, start):
                    p.copy_(value)
            lr /= 10


def _input_masks(consumers: list[LayerSlice], selected: list[int],
                 weights: list) -> list[torch.Tensor]:
    masks = []
    for (_, _, index), w in zip(consumers, weights):
        mask = torch.zeros(w.shape[1], device=w.device, dtype=w.dtype)
        mask[index[selected].flatten().to(w.device)] = 1
        masks.append(mask.view(1, -1, 1, 1))
    return masks


@contextmanager
def _trainable_consumers(model: SRModel, consumers: list[LayerSlice]
                         ) -> Iterator[tuple[list[nn.Parameter], list[torch.Tensor]]]:
    """Freeze every parameter; give each consumer a trainable weight (and bias) whose columns
    for the unit's channels start at zero."""
    params = list(model.net.parameters())
    if model.duals is not None:
        params += list(model.duals.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    originals = [m.weight.detach().clone() for _, m, _ in consumers]
    weights = []
    for (_, module, index), orig in zip(consumers, originals):
        start = orig.clone()  # inputs from other units (a concatenation) keep their weights
        start[:, index.flatten().to(start.device)] = 0
        module.weight = nn.Parameter(start)
        if module.bias is not None:
            module.bias.requires_grad_(True)
        weights.append(module.weight)
    try:
        yield weights, originals
    finally:
        for (_, module, _), w in zip(consumers, weights):
            module.weight = nn.Parameter(w.detach().clone())
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        for _, module, _ in consumers:
            module.weight.requires_grad_(True)
            if module.bias is not None:
                module.bias.requires_grad_(True)


__all__ = ["REFITS", "VARIANTS", "GreedyGradientSelection"]
