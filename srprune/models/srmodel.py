"""`SRModel`: a primal SR network plus what the pipeline needs to know about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class SRModel:
    """A super-resolution model as the toolkit sees it.

    ``net`` maps an LR batch (N, 3, H, W) in [0, ``rgb_range``] to either one image
    (N, 3, sH, sW) or a list of images at increasing scales whose last item is the final
    output (DRN's multi-scale outputs). ``duals`` holds the dual nets of dual regression
    (one per x2 step, ``duals[k]`` maps the 2^(k+1) output down to 2^k), or None.
    ``arch`` is the builder family and ``config`` its keyword arguments (the unpruned
    architecture); ``name`` is the registered model name that rebuilds it (artifacts use it,
    so plugin models load back); ``plan`` is the pruning plan applied, ``meta`` free-form
    information carried by artifacts (report, source); ``removed_blocks`` names the
    residual blocks depth pruning replaced with ``nn.Identity`` (artifacts replay it).
    """

    net: nn.Module
    scale: int
    arch: str
    config: dict[str, Any] = field(default_factory=dict)
    duals: nn.ModuleList | None = None
    rgb_range: float = 255.0
    plan: dict[str, Any] | None = None
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    removed_blocks: list[str] = field(default_factory=list)

    def outputs(self, lr: torch.Tensor) -> list[torch.Tensor]:
        """All outputs of the primal net as a list (one item for single-output nets)."""
        out = self.net(lr)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        """The final SR image."""
        return self.outputs(lr)[-1]

    def final_output_module(self) -> nn.Module:
        """An ``nn.Module`` returning only the final image (for export and latency)."""
        return FinalOutput(self.net)

    def eval(self) -> SRModel:
        self.net.eval()
        if self.duals is not None:
            self.duals.eval()
        return self

    def to(self, device: str | torch.device) -> SRModel:
        self.net.to(device)
        if self.duals is not None:
            self.duals.to(device)
        return self

    @property
    def n_params(self) -> int:
        """Parameters of the primal net (dual nets excluded, as the paper counts)."""
        return sum(p.numel() for p in self.net.parameters())


class FinalOutput(nn.Module):
    """Wraps a net and returns its last output when it returns several."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[-1] if isinstance(out, (list, tuple)) else out
