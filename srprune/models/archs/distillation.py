"""The outer network IMDN and RFDN share: feature conv, a cascade of distillation blocks
whose outputs a 1x1 conv fuses, a conv with a long skip, a sub-pixel upsampler to RGB."""

from __future__ import annotations

import torch
from torch import nn


def cascade_forward(net: nn.Module, x: torch.Tensor, prefix: str, count: int) -> torch.Tensor:
    """Run ``net``'s blocks ``<prefix>1 .. <prefix><count>`` in the shared layout.

    ``net`` has ``fea_conv``, the blocks, ``c`` (fusion), ``LR_conv`` and ``upsampler``;
    RGB goes in and out in [0, 255] (the official nets work in [0, 1]).
    """
    fea = net.fea_conv(x / 255.0)
    outs, out = [], fea
    for i in range(1, count + 1):
        out = getattr(net, f"{prefix}{i}")(out)
        outs.append(out)
    lr = net.LR_conv(net.c(torch.cat(outs, dim=1))) + fea
    return net.upsampler(lr) * 255.0
