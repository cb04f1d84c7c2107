"""A test-only srprune plugin package, found through entry points (tests/test_contracts.py).

Never installed: tests/conftest.py declares the entry points of ``pyproject.toml`` here for
the test session only, so a user's own ``srprune list`` does not show them.

* model ``testnet`` (x2, x4): conv head, residual blocks with an inner width, PixelShuffle(2)
  upsampling stages, conv tail; registered only through the ``srprune.models`` entry point.
* criterion ``l2-test``: the L2 norm of each channel's producer filters (higher = keep).
* strategy ``scan-test``: one keep fraction for every unit, the largest (scanned downwards in
  steps of 1/``grid``, default 64) whose plan removes at least the requested fraction of
  parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from srprune import ModelSpec, ScoreCriterion, SRModel, Strategy
from srprune.prune.contracts import Context, CostModel, Plan, Unit

__all__ = ["TESTNET", "L2Test", "ResBlock", "ScanTest", "ShuffleSR", "build_testnet"]


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), the first conv widening to ``inner`` channels."""

    def __init__(self, n_feats: int, inner: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_feats, inner, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inner, n_feats, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class ShuffleSR(nn.Module):
    """Head, residual blocks plus a global skip, log2(scale) PixelShuffle(2) stages, tail."""

    def __init__(self, scale: int, n_feats: int = 16, inner: int = 32, n_blocks: int = 2) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two, got {scale}")
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(n_feats, inner) for _ in range(n_blocks)])
        stages: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            stages += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2)]
        self.up = nn.Sequential(*stages)
        self.tail = nn.Conv2d(n_feats, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.head(x / 255.0)
        feats = feats + self.body(feats)
        return self.tail(self.up(feats)) * 255.0


def build_testnet(scale: int, n_feats: int = 16, inner: int = 32, n_blocks: int = 2) -> SRModel:
    net = ShuffleSR(scale, n_feats, inner, n_blocks)
    config = {"scale": scale, "n_feats": n_feats, "inner": inner, "n_blocks": n_blocks}
    return SRModel(net=net, scale=scale, arch="testnet", config=config)


TESTNET = ModelSpec(
    name="testnet",
    description="test plugin: 2 residual blocks, PixelShuffle(2) stages",
    configs={2: {"n_feats": 16, "inner": 32, "n_blocks": 2},
             4: {"n_feats": 16, "inner": 32, "n_blocks": 2}},
    builder=build_testnet,
    family="testnet",
)


class L2Test(ScoreCriterion):
    """Score = L2 norm of the producer weights of each channel (all producers together)."""

    def score(self, unit: Unit, ctx: Context) -> torch.Tensor:
        total = torch.zeros(unit.width, dtype=torch.float64)
        for _name, module, index in unit.producer_modules():
            rows = module.weight.detach().double().flatten(1).pow(2).sum(1)  # one per out channel
            total += rows[index].sum(1)  # the channels each unit channel stands for
        return total.sqrt()


class ScanTest(Strategy):
    """The largest keep fraction k/64 whose uniform plan removes >= ``ratio`` of the params."""

    def __init__(self, grid: int = 64) -> None:
        self.grid = int(grid)

    def plan(self, units: Sequence[Unit], ratio: float, ctx: Context, cost: CostModel) -> Plan:
        plan = {u.name: u.width for u in units}
        for k in range(self.grid, -1, -1):
            plan = {u.name: max(1, round(u.width * k / self.grid)) for u in units}
            if cost.reduction(plan) >= ratio:
                break
        return plan
