"""Parameter and MAC counting for any SR model, in two documented conventions.

* ``macs``: multiply-accumulates of every ``Conv2d``/``ConvTranspose2d`` and ``Linear`` call
  (kernel area x input channels per group x output elements). Interpolation, activations,
  pooling, residual adds and attention multiplies are not counted.
* ``paper_macs``: ``macs`` plus one add per output element of every conv with a bias: the
  counter behind the dual-regression paper's tables.

Every call of a module is counted (a shared layer applied three times counts three times).
Counting is one forward pass at batch 1 of a copy of the net on PyTorch's ``meta`` device
(shapes only, no arithmetic), so the model itself is never touched.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from srprune.models.srmodel import SRModel


@dataclass
class Cost:
    """Counts for one LR input size (batch 1)."""

    params: int
    macs: int
    paper_macs: int
    input_size: tuple[int, int]
    outputs: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data


def count_params(module: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())


def _layer_macs(module: nn.Module, output: torch.Tensor) -> tuple[int, int]:
    """(MACs, bias adds) of one call of a conv or linear layer."""
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        if module.transposed:
            # each input element scatters into kernel x out/groups outputs
            return 0, 0
        per_output = kernel * module.in_channels // module.groups
        n_out = output.numel()
        return per_output * n_out, (n_out if module.bias is not None else 0)
    if isinstance(module, nn.Linear):
        n_out = output.numel()
        return module.in_features * n_out, 0
    return 0, 0


def _transposed_macs(module: nn.modules.conv._ConvNd, inputs: torch.Tensor,
                     output: torch.Tensor) -> tuple[int, int]:
    kernel = 1
    for k in module.kernel_size:
        kernel *= k
    macs = inputs.numel() * kernel * module.out_channels // module.groups
    return macs, (output.numel() if module.bias is not None else 0)


def count_macs(net: nn.Module, example: torch.Tensor) -> tuple[int, int, list[list[int]]]:
    """(macs, paper_macs, output shapes) of one forward pass of ``net`` on ``example``."""
    totals = [0, 0]

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
            macs, adds = _transposed_macs(module, inputs[0], output)
        else:
            macs, adds = _layer_macs(module, output)
        totals[0] += macs
        totals[1] += adds

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            out = net(example)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return totals[0], totals[0] + totals[1], [list(o.shape) for o in outs]


def model_cost(model: SRModel | nn.Module, input_size: tuple[int, int] = (96, 96),
               channels: int = 3) -> Cost:
    """Params and both MAC counts of an SR model's primal net at one LR size (batch 1)."""
    net = model.net if isinstance(model, SRModel) else model
    # Shapes are all that matter: run a copy on the meta device (no arithmetic, no memory).
    shadow = copy.deepcopy(net).to("meta")
    example = torch.zeros(1, channels, *input_size, device="meta")
    macs, paper_macs, outputs = count_macs(shadow, example)
    return Cost(count_params(net), macs, paper_macs, tuple(input_size), outputs)
