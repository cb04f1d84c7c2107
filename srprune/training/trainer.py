"""Dual-regression training and fine-tuning for any SR model (loss: ``training.loss``).

Each net (primal, every dual) has its own Adam optimiser; the learning rate follows a cosine
schedule per step. Checkpoints hold tensors and plain data only, so resuming reproduces the
seeded loss trajectory exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.io.checkpoint import read_checkpoint, save_checkpoint
from srprune.models.srmodel import SRModel
from srprune.training.loss import dr_loss, ensure_duals


@dataclass
class TrainConfig:
    """Hyper-parameters of a (fine-)tuning run. ``patch`` is the LR patch size."""

    steps: int
    batch: int = 16
    patch: int = 32
    lr: float = 1e-3
    lr_min: float = 1e-6
    dual_weight: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 1
    device: str = "cpu"
    checkpoint_every: int = 500

    def lr_at(self, step: int) -> float:
        """Cosine schedule from ``lr`` to ``lr_min`` over ``steps``."""
        t = min(step, self.steps) / max(1, self.steps)
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * t))


@dataclass
class TrainLog:
    """Per-step losses plus any evaluations made during the run."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    primal: list[float] = field(default_factory=list)
    dual: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Runs the DR objective on batches from a sampler; checkpoint and resume exactly."""

    def __init__(self, model: SRModel, sampler: Any, config: TrainConfig) -> None:
        self.model = ensure_duals(model).to(config.device)
        self.sampler = sampler
        self.config = config
        self.step = 0
        self.log = TrainLog()
        self.elapsed = 0.0
        torch.manual_seed(config.seed)
        self.optimizers = [self._adam(model.net)]
        if config.dual_weight:
            self.optimizers += [self._adam(d) for d in model.duals]

    def _adam(self, net: nn.Module) -> torch.optim.Adam:
        return torch.optim.Adam(net.parameters(), lr=self.config.lr, betas=self.config.betas)

    def train_step(self) -> dict[str, float]:
        """One optimisation step on the next batch."""
        cfg = self.config
        lr_pyr, hr = self.sampler.next_batch()
        lr_pyr = [t.to(cfg.device) for t in lr_pyr]
        hr = hr.to(cfg.device)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(self.step)
            opt.zero_grad(set_to_none=True)
        self.model.net.train()
        total, primal, dual = dr_loss(self.model, lr_pyr, hr, cfg.dual_weight)
        if not torch.isfinite(total):
            raise SrpruneError(f"training diverged at step {self.step} (loss {total.item()}); "
                               "lower the learning rate")
        total.backward()
        for opt in self.optimizers:
            opt.step()
        self.step += 1
        return {"loss": total.item(), "primal": primal.item(), "dual": dual.item()}

    def run(self, until: int | None = None, checkpoint: str | Path | None = None,
            on_step: Callable[[int, dict[str, float]], None] | None = None,
            evaluate: Callable[[SRModel], dict[str, float]] | None = None,
            eval_every: int = 0) -> TrainLog:
        """Train up to step ``until`` (default: all), checkpointing every few hundred steps."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        start = time.perf_counter() - self.elapsed
        while self.step < until:
            losses = self.train_step()
            self.elapsed = time.perf_counter() - start
            self._record(losses)
            if on_step is not None:
                on_step(self.step, losses)
            if evaluate is not None and eval_every and (self.step % eval_every == 0
                                                        or self.step == until):
                self._evaluate(evaluate)
                start = time.perf_counter() - self.elapsed  # evaluation time is not training
            if checkpoint and (self.step % self.config.checkpoint_every == 0
                               or self.step == until):
                self.save(checkpoint)
        self.model.net.eval()
        return self.log

    def _record(self, losses: dict[str, float]) -> None:
        self.log.steps.append(self.step)
        self.log.loss.append(losses["loss"])
        self.log.primal.append(losses["primal"])
        self.log.dual.append(losses["dual"])
        self.log.seconds.append(round(self.elapsed, 3))

    def _evaluate(self, evaluate: Callable[[SRModel], dict[str, float]]) -> None:
        self.model.net.eval()
        with torch.no_grad():
            result = evaluate(self.model)
        self.log.evals.append({"step": self.step, "seconds": round(self.elapsed, 1), **result})

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "srprune-train-checkpoint",
            "step": self.step,
            "elapsed": self.elapsed,
            "config": asdict(self.config),
            "net": self.model.net.state_dict(),
            "duals": [d.state_dict() for d in self.model.duals],
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "log": asdict(self.log),
        }

    def save(self, path: str | Path) -> None:
        save_checkpoint(self.state_dict(), path, force=True)

    def resume(self, path: str | Path) -> None:
        """Restore everything saved by :meth:`save`, so training continues identically."""
        data = read_checkpoint(path)
        if not isinstance(data, dict) or data.get("format") != "srprune-train-checkpoint":
            raise SrpruneError(f"{path} is not an srprune training checkpoint")
        self.model.net.load_state_dict(data["net"])
        for dual, state in zip(self.model.duals, data["duals"]):
            dual.load_state_dict(state)
        for opt, state in zip(self.optimizers, data["optimizers"]):
            opt.load_state_dict(state)
        self.sampler.load_state_dict(data["sampler"])
        torch.set_rng_state(data["torch_rng"])
        self.step, self.elapsed = int(data["step"]), float(data["elapsed"])
        log = data["log"]
        self.log = TrainLog(**{k: list(v) for k, v in log.items()})


def weights_payload(model: SRModel, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``--out`` weights file: primal and dual state_dicts plus plain metadata."""
    return {
        "net": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "duals": ([{k: v.detach().cpu() for k, v in d.state_dict().items()}
                   for d in model.duals] if model.duals is not None else None),
        "meta": meta or {},
    }


