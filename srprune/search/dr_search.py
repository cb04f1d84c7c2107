"""``dr-search``: differentiable channel-number search on the dual-regression loss.

Every unit gets architecture weights ``alpha`` over the width options
``k_i = round_to(width * (1 - ratio) * v_i)`` for ``v`` in V = {0.5, 0.6, ..., 1.0}. A unit's
channels are ranked by the L1 norm of its consumer's weights (re-ranked at every step); the
consumer's input channel ``c`` is scaled by ``m_c = sum_i softmax(alpha)_i [rank(c) < k_i]``,
which equals the softmax-weighted sum of the |V| narrower layers in one conv. Steps alternate:
an alpha step (Adam) on a validation batch, then a weight step (Adam, primal and dual nets,
gradient clipped at 5) on a training batch, both on L_DR. This is first-order DARTS (the
authors' second-order term is off by a factor eps^2 in their code, and first-order is 3x
cheaper). Search runs on a copy: the model's own weights are untouched.

The plan is the argmax option per unit; one global factor then rescales all widths (keeping
their searched proportions) so that the plan removes the requested fraction of parameters.
With ``round_to="auto"`` (the default) the options are multiples of :data:`SEARCH_STEP` and
the final widths multiples of ORT's NCHWc block on this CPU (falling back to finer multiples
where the block cannot land near the ratio, as ``uniform`` does).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.hooks import hooked
from srprune.io.checkpoint import check_writable, write_atomic
from srprune.models.srmodel import SRModel
from srprune.prune.contracts import Batch, Context, CostModel, Plan, Unit
from srprune.prune.plan import plan_to_json, plan_to_text
from srprune.search.base import (
    Strategy,
    aligned_plan,
    bisect_plan,
    check_round_to,
    register_strategy,
    round_width,
    rounded_plan,
)
from srprune.training.loss import dr_loss, ensure_duals

WIDTH_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SEARCH_STEP = 4  # option widths are multiples of this with round_to "auto"


@register_strategy("dr-search")
class DRSearch(Strategy):
    """Differentiable width search on L_DR (see module docstring).

    Options: ``steps`` (60: alternating alpha/weight steps; presets set it), ``alpha_lr``
    (3e-3), ``alpha_weight_decay`` (1e-3), ``weight_lr`` (1e-4), ``dual_weight`` (lambda of
    L_DR; default: the run's ``--dual-weight``), ``round_to`` ("auto": options in multiples
    of :data:`SEARCH_STEP`, final widths in multiples of ORT's NCHWc block; an integer: options
    and final widths in multiples of it), ``min_width`` (1), ``save`` (path prefix: writes
    PREFIX.json and PREFIX.txt with the plan; existing files are refused, checked before the
    search starts), ``force`` (False: True overwrites the save files), ``seed`` (default:
    the run's ``--seed``).
    """

    needs_data = True
    preset_group = "search"

    def __init__(self, steps: int = 60, alpha_lr: float = 3e-3, alpha_weight_decay: float = 1e-3,
                 weight_lr: float = 1e-4, dual_weight: float | None = None,
                 round_to: int | str | None = "auto",
                 min_width: int = 1, save: str | None = None, force: bool = False,
                 seed: int | None = None) -> None:
        self.round_to = check_round_to(round_to)
        if steps < 1 or min_width < 1:
            raise SrpruneError("dr-search needs steps >= 1, round_to >= 1 and min_width >= 1")
        self.steps, self.alpha_lr, self.alpha_wd = int(steps), float(alpha_lr), alpha_weight_decay
        self.weight_lr = float(weight_lr)
        self.dual_weight = None if dual_weight is None else float(dual_weight)
        self.step = self.round_to or SEARCH_STEP  # the options' multiple
        self.min_width = int(min_width)
        self.report: dict[str, object] = {}
        self.save, self.force, self.seed = save, bool(force), seed
        self.history: list[dict[str, float]] = []
        for target in self._targets():  # fail now, not after the search
            try:
                check_writable(target, force=True)  # the folder exists, target is no folder
            except SrpruneError as exc:
                raise SrpruneError(f"dr-search save: {exc}") from None
            if target.exists() and not self.force:
                raise SrpruneError(f"dr-search save: {target} already exists; pass "
                                   "--force (or --strategy-opt force=true) to overwrite it")

    def _targets(self) -> list[Path]:
        """The files ``save`` writes (none without it): PREFIX.json and PREFIX.txt."""
        if not self.save:
            return []
        return [Path(f"{self.save}.json"), Path(f"{self.save}.txt")]

    def options_for(self, width: int, ratio: float) -> list[int]:
        """The candidate kept widths of one unit (multiples of the search step, distinct)."""
        keep = max(1e-6, 1.0 - ratio)
        widths = {round_width(width, keep * v, self.step, max(self.min_width,
                                                               min(self.step, width)))
                  for v in WIDTH_FACTORS}
        return sorted(widths)

    def plan(self, units: Sequence[Unit], ratio: float, ctx: Context, cost: CostModel) -> Plan:
        batches = ctx.require_data("strategy 'dr-search'")
        if len(batches) < 2:
            raise SrpruneError("dr-search needs at least 2 calibration batches (train and "
                               "validation halves): raise --calib-batches")
        seed = ctx.seed if self.seed is None else self.seed
        dual_weight = ctx.dual_weight if self.dual_weight is None else self.dual_weight
        train, val = batches[0::2], batches[1::2]
        torch.manual_seed(seed)
        model = ensure_duals(copy.deepcopy(ctx.model)).to(ctx.device)
        options = {u.name: self.options_for(u.width, ratio) for u in units}
        alphas = {u.name: (1e-3 * torch.randn(len(options[u.name]))).to(ctx.device)
                  .requires_grad_() for u in units}
        consumers = _consumers(model, units)
        weights = [p for p in model.net.parameters() if p.requires_grad]
        assert model.duals is not None  # ensure_duals
        weights += list(model.duals.parameters())
        opt_alpha = torch.optim.Adam(alphas.values(), lr=self.alpha_lr,
                                     weight_decay=self.alpha_wd)
        opt_w = torch.optim.Adam(weights, lr=self.weight_lr)
        model.net.train()
        self.history = []
        ctx.report("dr-search", 0, self.steps)
        with _masked(consumers, alphas, options):
            for step in range(self.steps):
                loss_val = self._step(model, opt_alpha, val[step % len(val)], ctx.device,
                                      dual_weight)
                loss_trn = self._step(model, opt_w, train[step % len(train)], ctx.device,
                                      dual_weight, clip=weights)
                self.history.append({"step": step + 1, "val": loss_val, "train": loss_trn})
                ctx.report("dr-search", step + 1, self.steps)
        chosen = {name: options[name][int(a.argmax())] for name, a in alphas.items()}
        plan, self.report = rounded_plan(
            self.round_to,
            lambda m: _rescale_to_ratio(units, chosen, ratio, cost, m, self.min_width),
            cost, ratio)
        self.probabilities = {n: a.softmax(0).tolist() for n, a in alphas.items()}
        self.chosen, self.options = chosen, options
        if self.save:
            self._write(units, plan)
        return plan

    def _step(self, model: SRModel, opt: torch.optim.Optimizer, batch: Batch, device: str,
              dual_weight: float, clip: list[torch.Tensor] | None = None) -> float:
        lr_pyr, hr = batch
        lr_pyr = [t.to(device) for t in lr_pyr]
        opt.zero_grad(set_to_none=True)
        loss, _, _ = dr_loss(model, lr_pyr, hr.to(device), dual_weight)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(clip, 5.0)
        opt.step()
        return float(loss.item())

    def _write(self, units: Sequence[Unit], plan: Plan) -> None:
        data = plan_to_json(units, plan)
        data["search"] = {"chosen": self.chosen, "options": self.options,
                          "probabilities": self.probabilities, "history": self.history}
        texts = (json.dumps(data, indent=1), plan_to_text(units, plan))
        for target, text in zip(self._targets(), texts):
            write_atomic(target, lambda tmp, text=text: tmp.write_text(text), force=self.force)


def _consumers(model: SRModel, units: Sequence[Unit]
               ) -> dict[str, list[tuple[nn.Conv2d, torch.Tensor]]]:
    """For each unit, its conv consumers in the search copy and their channel indices."""
    modules = dict(model.net.named_modules())
    result = {}
    for unit in units:
        pairs = [(modules[name], index) for name, module, index in unit.consumer_modules()
                 if isinstance(module, nn.Conv2d)]
        if not pairs:
            raise SrpruneError(f"dr-search: unit {unit.name} has no conv consumer to mask")
        result[unit.name] = pairs
    return result


def _masked(consumers: dict[str, list[tuple[nn.Conv2d, torch.Tensor]]],
            alphas: dict[str, torch.Tensor],
            options: dict[str, list[int]]) -> AbstractContextManager[None]:
    """Pre-hooks scaling each consumer's input channels by the unit's soft width mask."""
    pairs = []
    for name, convs in consumers.items():
        k = torch.tensor(options[name])
        for conv, index in convs:
            pairs.append((conv, _mask_hook(conv, index, alphas[name], k)))
    return hooked(pairs, kind="pre")


def _mask_hook(conv: nn.Conv2d, index: torch.Tensor, alpha: torch.Tensor,
               k: torch.Tensor) -> Callable[[nn.Module, tuple], tuple]:
    def hook(module: nn.Module, inputs: tuple) -> tuple:
        x = inputs[0]
        with torch.no_grad():  # rank unit channels by the L1 norm of the consumer's columns
            norms = conv.weight.abs().sum((0, 2, 3))[index.to(conv.weight.device)].sum(1)
            order = norms.argsort(descending=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(len(order), device=order.device)
        inside = (rank[None, :] < k[:, None].to(rank.device)).to(x.dtype)  # options x width
        unit_mask = alpha.softmax(0).to(x.dtype) @ inside
        channel_mask = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
        channel_mask = channel_mask.index_put((index.flatten().to(x.device),),
                                              unit_mask.repeat_interleave(index.shape[1]))
        return (x * channel_mask.view(1, -1, 1, 1), *inputs[1:])

    return hook


def _rescale_to_ratio(units: Sequence[Unit], chosen: Plan, ratio: float, cost: CostModel,
                      round_to: int, min_width: int) -> Plan:
    """Scale all chosen widths by one factor so the parameter reduction matches ``ratio``
    (kept widths multiples of ``round_to``, :func:`~srprune.search.base.aligned_plan`)."""
    def plan_at(factor: float) -> Plan:
        targets = {u.name: chosen[u.name] * factor for u in units}
        return aligned_plan(units, targets, round_to, max(min_width, round_to))

    hi = max(u.width / max(1, chosen[u.name]) for u in units)
    return bisect_plan(plan_at, cost, ratio, 0.0, hi)
