"""Dual-regression training and fine-tuning for any SR model (loss: ``training.loss``).

Each net (primal, every dual) has its own Adam optimiser; the learning rate follows a cosine
schedule per step. Checkpoints hold tensors and plain data only, so resuming reproduces the
seeded loss trajectory exactly. Ctrl-C loses no finished step: :meth:`Trainer.run` stops at the
last whole step, saves a checkpoint there and raises :class:`TrainingInterrupted`.

Under ``torchrun`` (``training.distributed``) every rank runs a :class:`Trainer` on its share
of the global batch; gradients and losses are averaged across ranks in one all-reduce per
step, and rank 0 alone writes checkpoints. Optional extras: distillation from a teacher
(``training.distill``), bf16 autocast and channels-last memory on CUDA.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import Interrupted, SrpruneError
from srprune.io.checkpoint import check_writable, read_checkpoint, save_checkpoint
from srprune.models.srmodel import SRModel
from srprune.training import distributed
from srprune.training.distill import Distiller, check_weights
from srprune.training.loss import dr_loss, ensure_duals

CHECKPOINT_FORMAT = "srprune-train-checkpoint"
#: The settings that make up a run; ``srprune train --resume`` continues with the checkpoint's.
RUN_SETTINGS = ("batch", "patch", "seed", "lr", "lr_min", "dual_weight", "betas")
#: Those :meth:`Trainer.resume` insists on (``lr``, ``lr_min``, ``betas`` only steer later steps).
STRICT_SETTINGS = ("batch", "patch", "seed", "dual_weight")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_train_settings(*, steps: Any, batch: Any, patch: Any, lr: Any, dual_weight: Any,
                         seed: Any = 0, flags: bool = False) -> None:
    """One-line ``SrpruneError`` naming the first invalid setting (as ``--flag`` with ``flags``)."""
    def name(key: str) -> str:
        return f"--{key.replace('_', '-')}" if flags else key

    for key, value, low in (("steps", steps, 1), ("batch", batch, 1), ("patch", patch, 1),
                            ("seed", seed, 0)):
        if not _is_int(value) or value < low:
            raise SrpruneError(f"{name(key)} must be an integer >= {low}, got {value!r}")
    if not _is_real(lr) or not math.isfinite(lr) or lr <= 0:
        raise SrpruneError(f"{name('lr')} must be a finite number > 0, got {lr!r}")
    if not _is_real(dual_weight) or not math.isfinite(dual_weight) or dual_weight < 0:
        raise SrpruneError(f"{name('dual_weight')} must be a finite number >= 0, "
                           f"got {dual_weight!r}")


def check_gpu_options(device: str, *, bf16: bool, channels_last: bool) -> None:
    """``--bf16`` and ``--channels-last`` are for CUDA devices; asked for on CPU, one line."""
    for flag, asked in (("--bf16", bf16), ("--channels-last", channels_last)):
        if asked and not str(device).startswith("cuda"):
            raise SrpruneError(f"{flag} is for CUDA devices; this run is on {device} (add "
                               "--device cuda on a machine with a GPU, or drop the flag)")


def check_target(path: str | Path) -> Path:
    """An output file path that can be written now (see ``io.checkpoint.check_writable``);
    whether an existing file may be replaced is the caller's rule."""
    return check_writable(path, force=True)


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
    warmup: int = 0  # steps of linear learning-rate warm-up before the cosine decay
    distill_weight: float = 0.0  # L1 to the teacher's SR output (needs a teacher)
    distill_features: float = 0.0  # L1 to the teacher's features at unit consumers
    bf16: bool = False  # bf16 autocast of forward and loss (CUDA only)
    channels_last: bool = False  # channels-last memory format (CUDA only)

    def __post_init__(self) -> None:
        check_train_settings(steps=self.steps, batch=self.batch, patch=self.patch, lr=self.lr,
                             dual_weight=self.dual_weight, seed=self.seed)
        if not _is_int(self.checkpoint_every) or self.checkpoint_every < 1:
            raise SrpruneError(f"checkpoint_every must be an integer >= 1, "
                               f"got {self.checkpoint_every!r}")
        check_weights(self.distill_weight, self.distill_features, flags=False)
        check_gpu_options(self.device, bf16=self.bf16, channels_last=self.channels_last)

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr_min``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (min(step, self.steps) - self.warmup) / max(1, self.steps - self.warmup)
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


LOG_FIELDS = frozenset(f.name for f in fields(TrainLog))


class TrainingDiverged(SrpruneError):
    """The loss became NaN or infinite: the learning rate is too high for this model."""


class TrainingInterrupted(Interrupted):
    """Ctrl-C stopped :meth:`Trainer.run` at step ``step`` of ``steps`` (a whole step: the
    trainer is exactly resumable there); ``checkpoint`` is where it was saved, or None."""

    def __init__(self, message: str, step: int, steps: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step, self.steps, self.checkpoint = step, steps, checkpoint


class Trainer:
    """Runs the DR objective on batches from a sampler; checkpoint and resume exactly.

    ``teacher``: the unpruned model to distil from (``config.distill_weight`` and
    ``distill_features``). Under torchrun the sampler must yield this rank's share of the
    global ``config.batch`` (``PatchSampler(rank=, ranks=)``); the model's weights are taken
    from rank 0 at the start.
    """

    def __init__(self, model: SRModel, sampler: Any, config: TrainConfig,
                 teacher: SRModel | None = None) -> None:
        self.world = distributed.world()
        if self.world.size > 1 and not self.world.active:
            raise SrpruneError(f"WORLD_SIZE={self.world.size} but no process group is running; "
                               "train inside srprune.training.distributed.session()")
        share = getattr(sampler, "local", None)
        if self.world.size > 1 and share is not None and len(share) * self.world.size != (
                config.batch):
            raise SrpruneError(f"the sampler yields {len(share)} samples per rank, not "
                               f"{config.batch} / {self.world.size}; build it with rank= and "
                               "ranks=")
        self.model = ensure_duals(model).to(config.device)
        if config.channels_last:
            self.model.net.to(memory_format=torch.channels_last)
        self.sampler = sampler
        self.config = config
        self.step = 0
        self.log = TrainLog()
        self.elapsed = 0.0
        self._pending_interrupt = False
        self.distiller = None
        if config.distill_weight or config.distill_features:
            if teacher is None:
                raise SrpruneError("distillation asked (distill_weight or distill_features > "
                                   "0) without a teacher model")
            self.distiller = Distiller(teacher, self.model, config.distill_weight,
                                       config.distill_features).to(config.device)
        distributed.sync_modules([self.model.net, *(self.model.duals or [])])
        torch.manual_seed(config.seed)
        self.optimizers = [self._adam(model.net)]
        if config.dual_weight:
            self.optimizers += [self._adam(d) for d in model.duals]

    def _adam(self, net: nn.Module) -> torch.optim.Adam:
        return torch.optim.Adam(net.parameters(), lr=self.config.lr, betas=self.config.betas)

    def train_step(self) -> dict[str, float]:
        """One optimisation step on the next batch.

        A ``KeyboardInterrupt`` before the weight update leaves the trainer as it was (the batch
        is put back); one during the update is raised once the update is complete.
        """
        losses = self._forward_backward()
        with self._interrupts_held():
            self._update()
        self._raise_held_interrupt()
        return losses

    def _forward_backward(self) -> dict[str, float]:
        cfg = self.config
        sampler_state, rng_state = self.sampler.state_dict(), torch.get_rng_state()
        try:
            lr_pyr, hr = self.sampler.next_batch()
            memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
            lr_pyr = [t.to(cfg.device).contiguous(memory_format=memory) for t in lr_pyr]
            hr = hr.to(cfg.device)
            for opt in self.optimizers:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr_at(self.step)
                opt.zero_grad(set_to_none=True)
            self.model.net.train()
            autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16
                        else contextlib.nullcontext())
            with autocast:
                if self.distiller is None:
                    total, primal, dual = dr_loss(self.model, lr_pyr, hr, cfg.dual_weight)
                    distill = total.new_zeros(())
                else:
                    with self.distiller.watch():
                        total, primal, dual = dr_loss(self.model, lr_pyr, hr, cfg.dual_weight)
                    distill = self.distiller.loss(lr_pyr[0])
                    total = total + distill
            total.backward()
            values = distributed.average_gradients(
                self._parameters(), torch.stack([total, primal, dual, distill]).detach().float())
            loss, primal_v, dual_v, distill_v = values.tolist()
            if not math.isfinite(loss):
                raise TrainingDiverged(f"training diverged at step {self.step} "
                                   f"(loss {loss}); lower the learning rate")
            return {"loss": loss, "primal": primal_v, "dual": dual_v, "distill": distill_v}
        except KeyboardInterrupt:  # nothing of this step is kept: put its batch back
            self.sampler.load_state_dict(sampler_state)
            torch.set_rng_state(rng_state)
            raise

    def _parameters(self) -> list[nn.Parameter]:
        """Every parameter an optimiser steps, in one fixed order (the same on every rank)."""
        return [p for opt in self.optimizers for g in opt.param_groups for p in g["params"]]

    def _update(self) -> None:
        for opt in self.optimizers:
            opt.step()
        self.step += 1

    @contextlib.contextmanager
    def _interrupts_held(self) -> Iterator[None]:
        """Hold Ctrl-C (SIGINT) until the block ends, so a step is taken whole or not at all.

        Only in the main thread with Python's default SIGINT handler; elsewhere a no-op.
        """
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return

        def hold(_signum: int, _frame: Any) -> None:
            self._pending_interrupt = True

        signal.signal(signal.SIGINT, hold)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _raise_held_interrupt(self) -> None:
        if self._pending_interrupt:
            self._pending_interrupt = False
            raise KeyboardInterrupt

    def run(self, until: int | None = None, checkpoint: str | Path | None = None,
            on_step: Callable[[int, dict[str, float]], None] | None = None,
            evaluate: Callable[[SRModel], dict[str, float]] | None = None,
            eval_every: int = 0) -> TrainLog:
        """Train up to step ``until`` (default: all), checkpointing every few hundred steps.

        On Ctrl-C (``KeyboardInterrupt``, also one raised by ``on_step`` or ``evaluate``) the
        run stops at the last whole step, saves a checkpoint there (when ``checkpoint`` is
        given) and raises :class:`TrainingInterrupted` saying so.

        Under torchrun only rank 0 writes the checkpoint, and ``on_step`` and ``evaluate`` run
        on every rank: an ``evaluate`` that steers decisions must give every rank the same
        result (compute it with :func:`srprune.training.distributed.from_main`).
        """
        until = self.config.steps if until is None else min(until, self.config.steps)
        start = time.perf_counter() - self.elapsed
        saved_at = None
        try:
            while self.step < until:
                losses = self._forward_backward()
                with self._interrupts_held():
                    self._update()
                    self.elapsed = time.perf_counter() - start
                    self._record(losses)
                self._raise_held_interrupt()
                if on_step is not None:
                    on_step(self.step, losses)
                if evaluate is not None and eval_every and (self.step % eval_every == 0
                                                            or self.step == until):
                    self._evaluate(evaluate)
                    start = time.perf_counter() - self.elapsed  # evaluation is not training
                if checkpoint and (self.step % self.config.checkpoint_every == 0
                                   or self.step == until):
                    if self.world.main:
                        self.save(checkpoint)
                    saved_at = self.step
        except KeyboardInterrupt:
            self._pending_interrupt = False
            raise self._interrupted(checkpoint, saved_at) from None
        self.model.net.eval()
        return self.log

    def _interrupted(self, checkpoint: str | Path | None,
                     saved_at: int | None) -> TrainingInterrupted:
        """Save what the run has so far (when it has a checkpoint path) and say so."""
        where = f"interrupted at step {self.step}/{self.config.steps}"
        if not self.world.main:
            return TrainingInterrupted(f"{where} (rank {self.world.rank}: rank 0 writes the "
                                       "checkpoint)", self.step, self.config.steps, None)
        if not checkpoint:
            return TrainingInterrupted(f"{where}; no checkpoint path was given, nothing saved",
                                       self.step, self.config.steps, None)
        if saved_at != self.step:
            try:
                self.save(checkpoint)
            except (OSError, SrpruneError) as exc:
                return TrainingInterrupted(f"{where}; saving the checkpoint to {checkpoint} "
                                           f"failed ({exc})", self.step, self.config.steps, None)
        return TrainingInterrupted(f"{where}; checkpoint saved to {checkpoint}", self.step,
                                   self.config.steps, Path(checkpoint))

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
            "format": CHECKPOINT_FORMAT,
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
        """Write :meth:`state_dict` atomically (replacing ``path``: callers decide whether it
        may be replaced)."""
        save_checkpoint(self.state_dict(), path, force=True)

    def resume(self, path: str | Path, data: dict[str, Any] | None = None) -> None:
        """Restore everything saved by :meth:`save`, so training continues identically.

        Everything is checked before anything changes, each failure one ``SrpruneError`` line:
        the checkpoint's format and layout, that its primal and dual weights have the model's
        keys and shapes, that its step lies within 0..steps, that it was made with this run's
        batch, patch, seed and dual weight, and with as many training images. ``lr``,
        ``lr_min`` and ``betas`` come from this trainer's config. ``data``: the checkpoint as
        already read by :func:`read_train_checkpoint`.
        """
        data = read_train_checkpoint(path) if data is None else data
        check_model_fits(self.model, data, path)
        step = data["step"]
        if step > self.config.steps:
            raise SrpruneError(f"{path} is at step {step}, beyond the {self.config.steps} steps "
                               f"of this run; ask for {step} steps or more to continue it")
        theirs = data["config"]
        for key in STRICT_SETTINGS:
            ours = getattr(self.config, key)
            if not same_setting(theirs[key], ours):
                raise SrpruneError(f"{path} was made with {key} {theirs[key]}, this run has "
                                   f"{key} {ours}; resume with the checkpoint's settings")
        self._check_sampler(data["sampler"], path)
        self._check_optimizers(data["optimizers"], path)
        if data["torch_rng"].shape != torch.get_rng_state().shape:
            raise _damaged(path, "'torch_rng' has the wrong size")
        try:
            self.sampler.load_state_dict(data["sampler"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _damaged(path, f"bad sampler state ({exc})") from None
        self.model.net.load_state_dict(data["net"])
        for dual, state in zip(self.model.duals or [], data["duals"]):
            dual.load_state_dict(state)
        for n, (opt, state) in enumerate(zip(self.optimizers, data["optimizers"])):
            try:
                opt.load_state_dict(state)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise _damaged(path, f"optimiser {n} state does not load ({exc})") from None
        torch.set_rng_state(data["torch_rng"])
        self.step, self.elapsed = int(step), float(data["elapsed"])
        self.log = TrainLog(**{k: list(v) for k, v in data["log"].items()})

    def _check_sampler(self, saved: dict[str, Any], path: str | Path) -> None:
        ours = self.sampler.state_dict()
        for key in ("scale", "lr_patch", "batch", "num_images"):
            if key in ours and saved.get(key) != ours[key]:
                if key == "num_images":
                    raise SrpruneError(f"{path} was made on {saved.get(key)} training images, "
                                       f"this run has {ours[key]}; use the same training data")
                raise SrpruneError(f"{path} was made with sampler {key} {saved.get(key)}, this "
                                   f"run has {ours[key]}")

    def _check_optimizers(self, states: list[Any], path: str | Path) -> None:
        if len(states) != len(self.optimizers):
            raise _damaged(path, f"{len(states)} optimiser states for "
                                 f"{len(self.optimizers)} optimisers")
        for n, (opt, state) in enumerate(zip(self.optimizers, states)):
            groups = state["param_groups"]
            ok = all(isinstance(g, dict) and isinstance(g.get("params"), list)
                     and {"lr", "betas", "eps", "weight_decay"} <= set(g) for g in groups)
            if not ok or [len(g["params"]) for g in groups] != [len(g["params"])
                                                                 for g in opt.param_groups]:
                raise _damaged(path, f"optimiser {n} does not match the model's parameters")
            params = dict(zip([i for g in groups for i in g["params"]],
                              [p for g in opt.param_groups for p in g["params"]]))
            for i, entry in state["state"].items():
                if i not in params or not isinstance(entry, dict):
                    raise _damaged(path, f"optimiser {n} has state for an unknown tensor {i!r}")
                for name, value in entry.items():
                    if not isinstance(value, torch.Tensor) and not _is_real(value):
                        raise _damaged(path, f"optimiser {n} {name} of tensor {i} is not a "
                                             "number or tensor")
                    if (isinstance(value, torch.Tensor) and value.dim() > 0
                            and value.shape != params[i].shape):
                        raise _damaged(path, f"optimiser {n} {name} of tensor {i} is "
                                             f"{tuple(value.shape)}, its parameter "
                                             f"{tuple(params[i].shape)}")


def same_setting(theirs: Any, ours: Any) -> bool:
    """Equal run settings, whatever their number types (``betas``: pairs)."""
    if isinstance(ours, (tuple, list)):
        return [float(v) for v in theirs] == [float(v) for v in ours]
    return float(theirs) == float(ours)


def _damaged(path: str | Path, what: str) -> SrpruneError:
    return SrpruneError(f"{path} is a damaged training checkpoint: {what}")


def _is_state(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


_LAYOUT: dict[str, Callable[[Any], bool]] = {
    "step": lambda v: _is_int(v) and v >= 0,
    "elapsed": _is_real,
    "config": lambda v: isinstance(v, dict),
    "net": _is_state,
    "duals": lambda v: isinstance(v, list) and all(_is_state(d) for d in v),
    "optimizers": lambda v: isinstance(v, list) and all(
        isinstance(o, dict) and isinstance(o.get("state"), dict)
        and isinstance(o.get("param_groups"), list) for o in v),
    "sampler": lambda v: isinstance(v, dict),
    "torch_rng": lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8,
    "log": lambda v: isinstance(v, dict) and set(v) == LOG_FIELDS
    and all(isinstance(x, list) for x in v.values()),
}


def _setting_ok(key: str, value: Any) -> bool:
    if key == "betas":
        return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_real, value))
    if key in ("lr", "lr_min", "dual_weight"):
        return _is_real(value) and math.isfinite(value)
    return _is_int(value)


def read_train_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :meth:`Trainer.save`, its layout and value types checked (a
    one-line ``SrpruneError`` for anything missing or of the wrong type)."""
    data = read_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise SrpruneError(f"{path} is not an srprune training checkpoint")
    for key, ok in _LAYOUT.items():
        if key not in data:
            raise _damaged(path, f"'{key}' is missing")
        if not ok(data[key]):
            raise _damaged(path, f"'{key}' has the wrong type or layout")
    for key in ("steps", *RUN_SETTINGS):
        if not _setting_ok(key, data["config"].get(key)):
            raise _damaged(path, f"config '{key}' is missing or of the wrong type")
    return data


def check_model_fits(model: SRModel, data: dict[str, Any], path: str | Path) -> None:
    """The checkpoint's primal and dual weights have the model's keys and shapes; the first
    mismatch is named with both shapes."""
    _match_state(model.net.state_dict(), data["net"], "net", path)
    duals = list(model.duals or [])
    if len(data["duals"]) != len(duals):
        raise SrpruneError(f"{path} does not fit this model: it holds {len(data['duals'])} "
                           f"dual nets, the model has {len(duals)}")
    for i, (dual, state) in enumerate(zip(duals, data["duals"])):
        _match_state(dual.state_dict(), state, f"duals.{i}", path)


def _match_state(own: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], prefix: str,
                 path: str | Path) -> None:
    head = f"{path} does not fit this model:"
    for key, tensor in own.items():
        if key not in saved:
            raise SrpruneError(f"{head} it lacks {prefix}.{key} (model shape "
                               f"{tuple(tensor.shape)})")
        if saved[key].shape != tensor.shape:
            raise SrpruneError(f"{head} {prefix}.{key} is {tuple(saved[key].shape)} in the "
                               f"checkpoint but {tuple(tensor.shape)} in the model")
    for key, tensor in saved.items():
        if key not in own:
            raise SrpruneError(f"{head} it has {prefix}.{key} {tuple(tensor.shape)}, which the "
                               "model lacks")


def weights_payload(model: SRModel, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``--out`` weights file: primal and dual state_dicts plus plain metadata."""
    return {
        "net": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "duals": ([{k: v.detach().cpu() for k, v in d.state_dict().items()}
                   for d in model.duals] if model.duals is not None else None),
        "meta": meta or {},
    }


