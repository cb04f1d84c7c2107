"""Sampling of a unit's consumer convs on the calibration batches, kept as sufficient statistics.

For one unit, each consumer conv ``C`` (weight ``W``: n outputs x c inputs x k x k) is looked at
on a bounded, seeded sample of output positions of the calibration batches:

* ``X_i``: the k x k input patch of ``C`` at position i in the model **being pruned** (so errors
  made by earlier units are compensated), flattened to ``c*k*k`` (im2col, stride, dilation and
  padding mode of ``C`` honoured);
* ``Y_i``: the output of ``C`` at the same position in the **original** model (``target
  "original"``, CP's choice) or in the model being pruned (``target "current"``, ThiNet's).
  Output rows that earlier units removed from ``C`` are dropped from an original target
  (``Context.original_rows``).

Only sufficient statistics are kept (``N``, ``sum X``, ``sum Y``, ``X^T X``, ``X^T Y``,
``sum |Y|^2``, float64), so memory is ``O((c k^2)^2)`` whatever the number of samples.

Consumers must be ``nn.Conv2d`` with ``groups == 1``; other consumers raise ``SrpruneError``.
A consumer called several times per forward pass is sampled on its first call only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srprune.errors import SrpruneError
from srprune.hooks import StopForward, hooked, run_until_stop
from srprune.prune.contracts import Context, LayerSlice, Unit

TARGETS = ("original", "current")
"""Whose consumer output is reconstructed: the original model's or the one being pruned."""

Found = dict[str, dict[str, Any]]  # per consumer name: sampled positions, "x" patches, "y"


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


def grouped_consumer(unit: Unit) -> str | None:
    """What makes ``unit`` impossible to reconstruct by least squares over conv patches: "the
    grouped convolution NAME" or "the Linear NAME (not a convolution)"; None when every
    consumer is a plain (groups 1) convolution."""
    for name, module, _ in unit.consumer_modules():
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            return f"the grouped convolution {name}"
        if not isinstance(module, nn.Conv2d):
            return f"the {type(module).__name__} {name} (not a convolution)"
    return None


def conv_consumers(unit: Unit, who: str) -> list[LayerSlice]:
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


def collect_stats(unit: Unit, ctx: Context, samples: int, target: str,
                  who: str) -> list[ConsumerStats]:
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


Hook = Callable[[nn.Module, tuple, torch.Tensor], None]


@dataclass
class _Sampler:
    """Per-batch sampling of consumer input patches and target outputs."""

    gen: torch.Generator
    per_image: int
    target: str

    def batch(self, ctx: Context, consumers: list[LayerSlice], x: torch.Tensor) -> Found:
        found: Found = {}
        hooks = {name: self._input_hook(name, conv, found, len(consumers))
                 for name, conv, _ in consumers}
        _run(ctx.model.net, x, hooks)
        if self.target == "original" and len(found) == len(consumers):
            hooks = {name: self._output_hook(ctx, name, conv.out_channels, found,
                                             len(consumers))
                     for name, conv, _ in consumers}
            _run(ctx.original.net, x, hooks)
        return found

    def _input_hook(self, name: str, conv: nn.Conv2d, found: Found, total: int) -> Hook:
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
                raise StopForward
        return hook

    @staticmethod
    def _output_hook(ctx: Context, name: str, current_out: int, found: Found,
                     total: int) -> Hook:
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if "y" in found[name]:
                return
            img, oh, ow = found[name]["pos"]
            y = output[img, :, oh, ow].double().cpu()
            rows = ctx.original_rows(name, current_out)
            found[name]["y"] = y if rows is None else y[:, rows]
            if all("y" in f for f in found.values()) and len(found) == total:
                raise StopForward
        return hook


def _run(net: nn.Module, x: torch.Tensor, hooks: dict[str, Hook]) -> None:
    """One forward pass of ``net`` with output hooks on the named layers (they may stop it)."""
    modules = dict(net.named_modules())
    with hooked((modules[name], fn) for name, fn in hooks.items()):
        run_until_stop(net, x)


def _accumulate(acc: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> None:
    parts = {"n": x.shape[0], "sum_x": x.sum(0), "sum_y": y.sum(0), "xx": x.T @ x,
             "xy": x.T @ y, "yy": float((y * y).sum())}
    for key, value in parts.items():
        acc[key] = value if key not in acc else acc[key] + value


__all__ = ["TARGETS", "ConsumerStats", "collect_stats", "conv_consumers", "patches"]
