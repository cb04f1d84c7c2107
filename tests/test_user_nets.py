"""Nets as users write them: the dependency graph sees every layer, and pruning reaches its ratio.

Each net is written the way BasicSR, EDSR, RCAN and community code write theirs: in-place
activations (``nn.ReLU(inplace=True)``, ``F.relu(x, inplace=True)``, ``x.relu_()``), in-place
residual adds (``x += res``), ``nn.Sequential`` bodies, ``ModuleList`` loops, ``torch.cat``
skips, and the three common upsamplers (PixelShuffle, nearest interpolation + conv, transposed
conv). For each: every weight layer is covered by the graph, ``compress`` at 0.5 (``--scope
all``) removes about half the parameters, and the pruned net still runs at the same scale.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srprune.api import compress_model
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.prune.graph import SRGraph
from srprune.registry import MODELS


class InplaceBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act(self.conv1(x)))
        out += x  # the in-place residual add of most released code
        return out


class FunctionalBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x), inplace=True)
        y = self.conv2(y)
        y.mul_(0.2)
        return x + y


class LeakyBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1),
                                  nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        y.relu_()
        return x + y


class Upsampler(nn.Module):
    def __init__(self, c: int, scale: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "pixelshuffle":
            self.conv = nn.Conv2d(c, c * scale * scale, 3, padding=1)
            self.shuffle = nn.PixelShuffle(scale)
        elif kind == "nearest":
            self.conv = nn.Conv2d(c, c, 3, padding=1)
        else:
            self.conv = nn.ConvTranspose2d(c, c, scale, stride=scale)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "pixelshuffle":
            return F.leaky_relu(self.shuffle(self.conv(x)), 0.1, inplace=True)
        if self.kind == "nearest":
            return F.relu(self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest")))
        return torch.relu(self.conv(x))


class UserNet(nn.Module):
    """Head, a body of ``block`` modules (Sequential or ModuleList loop), a cat skip,
    an upsampler, a tail; RGB in [0, 1]."""

    def __init__(self, block: type[nn.Module], up: str, loop: bool, c: int = 16,
                 n: int = 3, scale: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        blocks = [block(c) for _ in range(n)]
        self.loop = loop
        self.body = nn.ModuleList(blocks) if loop else nn.Sequential(*blocks)
        self.fuse = nn.Conv2d(2 * c, c, 1)
        self.up = Upsampler(c, scale, up)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        y = f
        if self.loop:
            for b in self.body:
                y = b(y)
        else:
            y = self.body(y)
        y = self.fuse(torch.cat([y, f], dim=1))
        return self.tail(self.up(y))


CASES = [(block, up, loop) for block in (InplaceBlock, FunctionalBlock, LeakyBlock)
         for up, loop in (("pixelshuffle", False), ("nearest", True), ("transposed", False))]


def sr_model(block: type[nn.Module], up: str, loop: bool) -> SRModel:
    torch.manual_seed(0)
    net = UserNet(block, up, loop)

    class Scaled(nn.Module):  # srprune's convention: RGB in [0, 255]
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x / 255.0) * 255.0

    return SRModel(net=Scaled().eval(), scale=2, arch="test", config={})


def weight_layers(model: SRModel) -> list[str]:
    return [n for n, m in model.net.named_modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


@pytest.mark.parametrize(("block", "up", "loop"), CASES,
                         ids=[f"{b.__name__}-{u}-{'loop' if lp else 'seq'}" for b, u, lp in CASES])
def test_every_layer_is_seen_and_half_is_removed(block, up, loop):
    model = sr_model(block, up, loop)
    graph = SRGraph(model.net, 2)
    cover = graph.coverage()
    assert cover["missing"] == []
    assert cover["layers"] == cover["covered"] == len(weight_layers(model))
    # every conv inside a residual block is the producer or consumer of some unit
    members = {n for u in graph.every_unit() for n in (*u.producers, *u.consumers)}
    assert {n for n in weight_layers(model) if ".body." in n} <= members
    x = torch.rand(1, 3, 12, 12) * 255
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no coverage warning either
        result = compress_model(model, 0.5, scope="all", criterion="l1")
    assert 0.45 < result.ratio_achieved < 0.56
    with torch.no_grad():
        out = result.model(x)
    assert out.shape == (1, 3, 24, 24) and torch.isfinite(out).all()


def test_a_lost_layer_is_named_in_a_warning():
    """The invariant itself: a layer the tracer does not see is reported by name."""
    model = sr_model(InplaceBlock, "pixelshuffle", False)
    graph = SRGraph(model.net, 2)
    name = "net.body.1.conv1"
    graph._units = [u for u in graph.every_unit()
                    if name not in (u.root, *u.producers, *u.consumers)]
    del graph.dg.module2node[model.net.get_submodule(name)]
    cover = graph.coverage()
    total = len(weight_layers(model))
    assert cover == {"layers": total, "covered": total - 1, "missing": [name]}
    from srprune.prune.engine import warn_uncovered

    with pytest.warns(UserWarning, match=rf"sees {total - 1} of {total} weight layers; "
                                         r"not traced: net\.body\.1\.conv1"):
        warn_uncovered(graph)


@pytest.mark.parametrize("name", sorted(n for n in MODELS.names()
                                        if isinstance(MODELS.get(n), ModelSpec)))
def test_every_registered_model_is_seen_whole(name):
    """The invariant on the whole zoo (CI-sized builds): no weight layer is lost."""
    spec = MODELS.get(name)
    model = spec.build(spec.small_config(None))
    size = spec.extra.get("min_input", 16)
    cover = SRGraph(model.net, model.scale, example_size=(size, size), screen=False).coverage()
    assert cover["missing"] == [], cover
    assert cover["layers"] > 0
