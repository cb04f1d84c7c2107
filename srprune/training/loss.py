"""The dual-regression (DR) loss, and dual nets for models that bring none.

Loss (mean L1 on the [0, 255] scale): the primal term compares the final output with HR and,
for multi-output nets such as DRN, every intermediate output with the LR image of its scale;
the dual term maps outputs back down with the dual nets and compares them with the LR images:
``loss = primal + dual_weight * dual`` (dual_weight = lambda = 0.1 by default).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srprune.errors import SrpruneError
from srprune.models.drn import dual_models
from srprune.models.srmodel import SRModel

DUAL_FEATS = 16  # width of dual nets built for models that bring none


class StridedDual(nn.Module):
    """The dual net of a scale that is not a power of two (x3): SR -> LR in one step.

    Conv, LeakyReLU, then a conv with stride ``scale`` (kernel ``scale``): the one-level
    counterpart of DRN's stride-2 ``DownBlock``, since the LR pyramid of x3 has one level.
    """

    def __init__(self, scale: int, n_feats: int = DUAL_FEATS) -> None:
        super().__init__()
        self.dual_module = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, n_feats, 3, padding=1, bias=False),
                          nn.LeakyReLU(0.2, inplace=True)),
            nn.Conv2d(n_feats, 3, scale, stride=scale, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dual_module(x)


def dual_nets(scale: int, n_feats: int = DUAL_FEATS) -> nn.ModuleList:
    """Dual nets for any scale: one stride-2 step per x2 (DRN's), or one strided step."""
    if scale >= 2 and scale & (scale - 1) == 0:
        return dual_models(scale, n_feats)
    return nn.ModuleList([StridedDual(scale, n_feats)])


def ensure_duals(model: SRModel) -> SRModel:
    """Give a model the dual nets of its scale when it has none (needed by the DR loss)."""
    if model.duals is None:
        model.duals = dual_nets(model.scale)
    return model


def dr_loss(model: SRModel, lr_pyramid: list[torch.Tensor], hr: torch.Tensor,
            dual_weight: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, primal, dual) dual-regression loss of one batch.

    ``lr_pyramid`` is ``[LR_s, ..., LR_2]`` (smallest first); its first item is the input.
    """
    outputs = model.outputs(lr_pyramid[0])
    return dr_loss_from_outputs(model, outputs, lr_pyramid, hr, dual_weight)


def dr_loss_from_outputs(model: SRModel, outputs: list[torch.Tensor],
                         lr_pyramid: list[torch.Tensor], hr: torch.Tensor,
                         dual_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DR loss for precomputed primal outputs (multi-scale or final-only)."""
    if outputs[-1].shape != hr.shape:
        raise SrpruneError(f"model output {tuple(outputs[-1].shape)} does not match HR "
                           f"{tuple(hr.shape)}: is the data at the model's scale?")
    primal = F.l1_loss(outputs[-1], hr)
    multi = len(outputs) == len(lr_pyramid) + 1
    if multi:
        for out, target in zip(outputs[:-1], lr_pyramid):
            primal = primal + F.l1_loss(out, target)
    dual = hr.new_zeros(())
    if dual_weight and model.duals is not None:
        if multi:
            for k, net in enumerate(model.duals):
                dual = dual + F.l1_loss(net(outputs[k + 1]), lr_pyramid[k])
        else:  # chain the dual nets down from the final image
            x = outputs[-1]
            for k in reversed(range(len(model.duals))):
                x = model.duals[k](x)
                dual = dual + F.l1_loss(x, lr_pyramid[k])
    return primal + dual_weight * dual, primal, dual


def fit_duals(model: SRModel, batches: list, steps: int = 200, lr: float = 1e-3,
              device: str = "cpu") -> float:
    """Fit only the dual nets (primal frozen) on ``batches``; returns the last dual loss."""
    model = ensure_duals(model)
    opt = torch.optim.Adam(model.duals.parameters(), lr=lr)
    with torch.no_grad():
        cached = [([t.to(device) for t in lr_pyr], model.outputs(lr_pyr[0].to(device)))
                  for lr_pyr, _ in batches]
    last = float("nan")
    model.duals.train()
    for step in range(steps):
        lr_pyr, outputs = cached[step % len(cached)]
        opt.zero_grad(set_to_none=True)
        _, _, dual = dr_loss_from_outputs(model, outputs, lr_pyr, outputs[-1], 1.0)
        dual.backward()
        opt.step()
        last = dual.item()
    model.duals.eval()
    return last


DUAL_FIT_STEPS = 300  # Adam steps (lr 1e-3) fitting new dual nets to a frozen primal
DUAL_FIT_BATCHES = 8


def fit_new_duals(model: SRModel, sampler: Any, device: str = "cpu",
                  steps: int | None = None) -> dict[str, Any] | None:
    """New dual nets fitted to the frozen primal before training, for a model that brings none.

    Fresh from their random initialisation the dual term measures a random net, not the
    model: on the SPAN authors' x4 model it was ~100x the primal one (L1 274 against 2.6 on
    the 0-255 scale; fitted 13-16). Fine-tuning results there did not change beyond noise
    (benchmarks/RESULTS.md), but the DR loss now means what it says.
    ``DUAL_FIT_BATCHES`` batches of ``sampler`` are the fitting data. Returns what was done
    (``None``: the model has dual nets, nothing changed).
    """
    if model.duals is not None:
        return None
    steps = DUAL_FIT_STEPS if steps is None else int(steps)
    batches = [sampler.next_batch() for _ in range(DUAL_FIT_BATCHES)]
    ensure_duals(model).duals.to(device)
    with torch.no_grad():
        lr_pyr = [t.to(device) for t in batches[0][0]]
        outputs = model.outputs(lr_pyr[0])
        before = float(dr_loss_from_outputs(model, outputs, lr_pyr, outputs[-1], 1.0)[2])
    after = fit_duals(model, batches, steps=steps, device=device)
    return {"fitted_steps": steps, "batches": len(batches),
            "dual_loss_before": round(before, 4), "dual_loss_after": round(after, 4)}
