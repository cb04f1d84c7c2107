"""The scriptable front door: ``srprune.compress``, ``srprune.load``, ``srprune.train``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from srprune.config import FineTune, RunConfig
from srprune.data.images import ImageSet, PatchSampler, open_image_set
from srprune.errors import SrpruneError
from srprune.io.checkpoint import check_writable, save_checkpoint
from srprune.models import SRModel, build_model, resolve_model
from srprune.models.artifacts import is_artifact_path, load_artifact, save_artifact
from srprune.prune.contracts import Batch
from srprune.prune.engine import CompressResult, ProgressFn, compress
from srprune.quality.evaluate import evaluate_model
from srprune.training.trainer import TrainConfig, Trainer, weights_payload


def load(path: str | Path) -> SRModel:
    """Load a compressed-model artifact (``weights_only``; no code is unpickled)."""
    return load_artifact(path)


def calibration_batches(data: str | Path | None, scale: int, n_batches: int, batch: int,
                        patch: int, seed: int) -> list[Batch]:
    """``n_batches`` seeded batches of aligned LR-pyramid/HR patches from a folder (or [])."""
    if data is None:
        return []
    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    sampler = PatchSampler(open_image_set(data, scale), scale, patch, batch, seed=seed)
    return [sampler.next_batch() for _ in range(n_batches)]


def compress_model(model: SRModel | str, ratio: float | None = None, *,
                   scale: int | None = None, weights: str | None = None,
                   source: str | None = None, progress: ProgressFn | None = None,
                   config: RunConfig | None = None, **settings: Any) -> CompressResult:
    """Compress a model (an ``SRModel``, a registered name or an artifact path).

    The run is ``config`` or the flat settings of :meth:`srprune.config.RunConfig.build`
    (``criterion``, ``strategy``, ``scope``, ``data``, ``calib_*``, ``preset``,
    ``criterion_options``, ``strategy_options``, ``seed``, ``device``, ``input_size``,
    ``finetune_*``, ``dual_weight``, ``evaluate``, ``out``, ``force``). ``ratio`` is the
    fraction of the primal net's parameters to remove. ``data`` is an image folder for
    calibration and fine-tuning; ``finetune_steps`` > 0 fine-tunes the pruned model with the
    dual-regression loss on it. ``evaluate`` ("builtin" or an image folder) measures PSNR/SSIM
    before pruning and after fine-tuning. With ``out`` the pruned model is written as an
    artifact (refusing to overwrite without ``force``).

    ``preset`` ("fast", "default", "thorough": the CLI's ``--preset``) fills in the calibration
    budget and the criterion/strategy effort; explicit values win. Without a preset: 4
    calibration batches of 8 LR patches 24x24 and the classes' own option defaults.
    """
    if config is None:
        config = RunConfig.build(ratio=ratio, **settings)
    elif ratio is not None or settings:
        raise TypeError("pass either config= or flat settings, not both")
    out, force = config.output.path, config.output.force
    if out is not None:
        check_writable(out, force)
    if isinstance(model, str):
        source = source or model
        model = resolve_model(model, scale, weights=weights)
    calib, tune = config.calibration, config.finetune
    if tune.steps and calib.data is None:
        raise SrpruneError("fine-tuning needs training images: pass --data DIR")
    batches = calibration_batches(calib.data, model.scale, calib.batches, calib.batch,
                                  calib.patch, config.seed)
    eval_set = _eval_set(config.evaluate, model.scale)
    quality_before = _quality(model, eval_set, config.device)
    result = compress(model, batches=batches, config=config, progress=progress)
    result.quality_before = quality_before
    if tune.steps:
        t0 = time.perf_counter()
        result.quality_pruned = _quality(model, eval_set, config.device)
        result.finetune = _finetune(model, calib.data, tune, config, progress)
        result.seconds["finetune"] = time.perf_counter() - t0
    result.quality_after = _quality(model, eval_set, config.device)
    if out is not None:
        save_artifact(model.to("cpu"), out, meta={"source": source, **result.summary()},
                      force=force)
    return result


def _training_model(model: SRModel | str, scale: int | None, weights: str | None) -> SRModel:
    if not isinstance(model, str):
        return model
    if is_artifact_path(model):
        return resolve_model(model, scale, weights=weights)
    return build_model(model, scale, weights=weights, pretrained=False)


def train_model(model: SRModel | str, data: str | Path, scale: int | None = None,
                steps: int = 1000, weights: str | None = None, dual_weight: float = 0.1,
                patch: int = 32, batch: int = 16, lr: float = 2e-3, seed: int = 1,
                device: str = "cpu", checkpoint: str | None = None, resume: bool = False,
                out: str | Path | None = None, force: bool = False,
                on_step: Any = None) -> dict[str, Any]:
    """Dual-regression training of a model (name, artifact or ``SRModel``) on an HR folder.

    Registered names start from random weights unless ``weights`` is given; artifacts (pruned
    models) are fine-tuned from their own weights and written back as artifacts.
    """
    if out is not None:
        check_writable(out, force)
    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    is_artifact = isinstance(model, str) and is_artifact_path(model)
    sr = _training_model(model, scale, weights)
    sampler = PatchSampler(open_image_set(data, sr.scale), sr.scale, patch, batch, seed=seed)
    config = TrainConfig(steps=steps, batch=batch, patch=patch, lr=lr, dual_weight=dual_weight,
                         seed=seed, device=device)
    trainer = Trainer(sr, sampler, config)
    if resume and checkpoint:
        trainer.resume(checkpoint)
    log = trainer.run(checkpoint=checkpoint, on_step=on_step)
    summary = {"steps": trainer.step, "seconds": round(trainer.elapsed, 2),
               "final_loss": log.loss[-1] if log.loss else float("nan"),
               "config": {k: v for k, v in vars(config).items()}}
    if out is not None:
        if is_artifact:
            save_artifact(sr.to("cpu"), out, meta={"trained": summary}, force=force)
        else:
            save_checkpoint(weights_payload(sr.to("cpu"), {"trained": summary}), out, force=force)
    return summary


def _eval_set(evaluate: str | Path | None, scale: int) -> ImageSet | None:
    if evaluate is None:
        return None

    return open_image_set(None if str(evaluate) == "builtin" else evaluate, scale)


def _quality(model: SRModel, eval_set: ImageSet | None, device: str) -> dict[str, Any] | None:
    if eval_set is None:
        return None

    return evaluate_model(model, eval_set, device=device)


def _finetune(model: SRModel, data: str, tune: FineTune, config: RunConfig,
              progress: ProgressFn | None) -> dict[str, Any]:
    """Dual-regression fine-tuning of the pruned model (cosine schedule from ``tune.lr``)."""
    sampler = PatchSampler(open_image_set(data, model.scale), model.scale, tune.patch,
                           tune.batch, seed=config.seed + 1)
    train_config = TrainConfig(steps=tune.steps, batch=tune.batch, patch=tune.patch,
                               lr=tune.lr, dual_weight=config.dual_weight, seed=config.seed,
                               device=config.device)
    trainer = Trainer(model, sampler, train_config)
    log = trainer.run(on_step=(lambda step, _: progress("finetune", step, tune.steps))
                      if progress else None)
    model.net.eval()
    return {"steps": tune.steps, "lr": tune.lr, "batch": tune.batch, "patch": tune.patch,
            "dual_weight": config.dual_weight, "final_loss": round(log.loss[-1], 4),
            "seconds": round(trainer.elapsed, 1)}
