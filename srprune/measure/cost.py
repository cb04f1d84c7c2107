"""Parameter and MAC counting for any SR model, in two documented conventions.

* ``macs``: multiply-accumulates of every ``Conv2d``/``ConvTranspose2d`` and ``Linear`` call
  (kernel area x input channels per group x output elements). Interpolation, activations,
  pooling, residual adds and attention multiplies are not counted.
* ``paper_macs``: ``macs`` plus one add per output element of every conv with a bias: the
  counter behind the dual-regression paper's tables.

Every call of a module is counted (a shared layer applied three times counts three times).
Counting is one forward pass at batch 1 of a copy of the net on PyTorch's ``meta`` device
(shapes only, no arithmetic), so the model itself is never touched.

This is the one MAC counter: :func:`record_calls` notes each layer's calls (output and input
positions) and :func:`layer_macs` turns them into MACs for any channel counts, so
``prune.plan.PlanCost`` predicts a pruned net's MACs with the very same formula.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from srprune.hooks import hooked
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


MAC_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
"""The layers whose calls are counted."""


@dataclass
class LayerCalls:
    """One layer's calls in a forward pass (batch 1), summed over calls.

    ``out_positions``: output elements per output channel (H x W for a conv, the leading
    dimensions for a linear); ``in_positions``: input elements per input channel (what a
    transposed conv's MACs scale with).
    """

    calls: int = 0
    out_positions: int = 0
    in_positions: int = 0


def layer_channels(module: nn.Module) -> tuple[int, int]:
    """(output, input) channels of a conv or linear layer."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    return module.out_channels, module.in_channels


def _kernel_area(module: nn.Module) -> int:
    return math.prod(module.kernel_size) if isinstance(module, nn.modules.conv._ConvNd) else 1


def groups_after(module: nn.Module, c_in: int, c_out: int) -> int:
    """Groups of a conv once it has ``c_in``/``c_out`` channels (a depthwise conv stays so)."""
    if not isinstance(module, nn.modules.conv._ConvNd):
        return 1
    depthwise = (isinstance(module, nn.Conv2d) and module.groups > 1
                 and module.groups == module.in_channels == module.out_channels)
    return c_in if depthwise else module.groups


def layer_macs(module: nn.Module, c_in: int, c_out: int, calls: LayerCalls) -> int:
    """MACs of a conv/linear layer's recorded calls, were it ``c_in`` -> ``c_out`` channels.

    A conv computes kernel x ``c_in``/groups MACs per output element; a transposed conv
    scatters each input element into kernel x ``c_out``/groups outputs; a linear layer
    computes ``c_in`` MACs per output element.
    """
    if isinstance(module, nn.Linear):
        return c_in * c_out * calls.out_positions
    groups = groups_after(module, c_in, c_out)
    if module.transposed:
        return calls.in_positions * c_in * _kernel_area(module) * (c_out // groups)
    return _kernel_area(module) * (c_in // groups) * c_out * calls.out_positions


def bias_adds(module: nn.Module, c_out: int, calls: LayerCalls) -> int:
    """One add per output element of a conv with a bias (the paper convention's extra)."""
    if isinstance(module, nn.modules.conv._ConvNd) and module.bias is not None:
        return c_out * calls.out_positions
    return 0


def layer_params(module: nn.Module, c_in: int, c_out: int) -> int:
    """Parameters of a conv2d/linear layer were it ``c_in`` -> ``c_out`` channels."""
    groups = groups_after(module, c_in, c_out)
    bias = c_out if module.bias is not None else 0
    return _kernel_area(module) * (c_in // groups) * c_out + bias


def record_calls(net: nn.Module, example: torch.Tensor) -> tuple[dict[str, LayerCalls], object]:
    """Per conv/linear layer name, its calls during ``net(example)``; and the output.

    Runs in eval mode without gradients (the training flag is restored); the hooks are gone
    afterwards. A layer applied several times sums its calls.
    """
    names = {m: n for n, m in net.named_modules()}
    calls: dict[str, LayerCalls] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        c_out, c_in = layer_channels(module)
        record = calls.setdefault(names[module], LayerCalls())
        record.calls += 1
        record.out_positions += output.numel() // c_out
        record.in_positions += inputs[0].numel() // c_in

    was_training = net.training
    try:
        net.eval()
        watched = [m for m in net.modules() if isinstance(m, MAC_LAYERS)]
        with hooked((m, hook) for m in watched), torch.no_grad():
            out = net(example)
    finally:
        net.train(was_training)
    return calls, out


def meta_calls(net: nn.Module, input_size: tuple[int, int],
               channels: int = 3) -> tuple[dict[str, LayerCalls], object]:
    """:func:`record_calls` on a ``meta``-device copy at batch 1 (the net is not touched)."""
    shadow = copy.deepcopy(net).to("meta")
    return record_calls(shadow, torch.zeros(1, channels, *input_size, device="meta"))


def count_macs(net: nn.Module, example: torch.Tensor) -> tuple[int, int, list[list[int]]]:
    """(macs, paper_macs, output shapes) of one forward pass of ``net`` on ``example``."""
    calls, out = record_calls(net, example)
    modules = dict(net.named_modules())
    macs = adds = 0
    for name, record in calls.items():
        module = modules[name]
        c_out, c_in = layer_channels(module)
        macs += layer_macs(module, c_in, c_out, record)
        adds += bias_adds(module, c_out, record)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return macs, macs + adds, [list(o.shape) for o in outs]


def model_cost(model: SRModel | nn.Module, input_size: tuple[int, int] = (96, 96),
               channels: int = 3) -> Cost:
    """Params and both MAC counts of an SR model's primal net at one LR size (batch 1)."""
    net = model.net if isinstance(model, SRModel) else model
    # Shapes are all that matter: run a copy on the meta device (no arithmetic, no memory).
    shadow = copy.deepcopy(net).to("meta")
    example = torch.zeros(1, channels, *input_size, device="meta")
    macs, paper_macs, outputs = count_macs(shadow, example)
    return Cost(count_params(net), macs, paper_macs, tuple(input_size), outputs)
