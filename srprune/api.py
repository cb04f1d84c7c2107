"""The scriptable front door: ``srprune.compress`` and ``srprune.load``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srprune.errors import SrpruneError
from srprune.models import SRModel, resolve_model
from srprune.prune.engine import CompressResult, ProgressFn, check_ratio, compress


def load(path: str | Path) -> SRModel:
    """Load a compressed-model artifact (``weights_only``; no code is unpickled)."""
    from srprune.io.artifact import load_artifact

    return load_artifact(path)


def calibration_batches(data: str | Path | None, scale: int, n_batches: int, batch: int,
                        patch: int, seed: int) -> list:
    """``n_batches`` seeded batches of aligned LR-pyramid/HR patches from a folder (or [])."""
    if data is None:
        return []
    from srprune.data.images import PatchSampler, open_image_set

    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    sampler = PatchSampler(open_image_set(data, scale), scale, patch, batch, seed=seed)
    return [sampler.next_batch() for _ in range(n_batches)]


API_CALIBRATION = {"calib_batches": 4, "calib_batch": 8, "calib_patch": 24}


def apply_preset(name: str | None, criterion: str, strategy: str, calib_batches: int | None,
                 calib_batch: int | None, calib_patch: int | None,
                 criterion_options: dict[str, Any] | None,
                 strategy_options: dict[str, Any] | None) -> tuple:
    """Calibration sizes and options after filling the unset ones from a preset (or defaults)."""
    budget = dict(API_CALIBRATION)
    criterion_options = dict(criterion_options or {})
    strategy_options = dict(strategy_options or {})
    if name is not None:
        from srprune.config import criterion_defaults, preset, strategy_defaults
        from srprune.registry import CRITERIA, STRATEGIES

        budget = preset(name)
        criterion_options = {**criterion_defaults(name, CRITERIA.get(criterion)),
                             **criterion_options}
        strategy_options = {**strategy_defaults(name, STRATEGIES.get(strategy)),
                            **strategy_options}
    return (budget["calib_batches"] if calib_batches is None else calib_batches,
            budget["calib_batch"] if calib_batch is None else calib_batch,
            budget["calib_patch"] if calib_patch is None else calib_patch,
            criterion_options, strategy_options)


def compress_model(
    model: SRModel | str,
    ratio: float,
    criterion: str = "l1",
    strategy: str = "uniform",
    scope: str = "internal",
    scale: int | None = None,
    weights: str | None = None,
    data: str | Path | None = None,
    calib_batches: int | None = None,
    calib_batch: int | None = None,
    calib_patch: int | None = None,
    preset: str | None = None,
    criterion_options: dict[str, Any] | None = None,
    strategy_options: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    input_size: tuple[int, int] = (96, 96),
    out: str | Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    source: str | None = None,
    finetune_steps: int = 0,
    finetune_lr: float = 5e-4,
    finetune_batch: int = 16,
    finetune_patch: int = 32,
    dual_weight: float = 0.1,
    evaluate: str | Path | None = None,
) -> CompressResult:
    """Compress a model (an ``SRModel``, a registered name or an artifact path).

    ``ratio`` is the fraction of the primal net's parameters to remove. ``data`` is an image
    folder for calibration and fine-tuning. ``finetune_steps`` > 0 fine-tunes the pruned
    model with the dual-regression loss on ``data``. ``evaluate`` ("builtin" or an image
    folder) measures PSNR/SSIM before pruning and after fine-tuning. With ``out`` the pruned
    model is written as an artifact (refusing to overwrite without ``force``).

    ``preset`` ("fast", "default", "thorough": the CLI's ``--preset``) fills in the calibration
    budget and the criterion/strategy effort; explicit ``calib_*`` and option values win.
    Without a preset: 4 calibration batches of 8 LR patches 24x24 and the classes' defaults.
    """
    from srprune.io.checkpoint import check_writable

    check_ratio(ratio)
    calib_batches, calib_batch, calib_patch, criterion_options, strategy_options = (
        apply_preset(preset, criterion, strategy, calib_batches, calib_batch, calib_patch,
                     criterion_options, strategy_options))
    if out is not None:
        check_writable(out, force)
    if isinstance(model, str):
        source = source or model
        model = resolve_model(model, scale, weights=weights)
    if finetune_steps and data is None:
        raise SrpruneError("fine-tuning needs training images: pass --data DIR")
    batches = calibration_batches(data, model.scale, calib_batches, calib_batch, calib_patch,
                                  seed)
    eval_set = _eval_set(evaluate, model.scale)
    quality_before = _quality(model, eval_set, device)
    result = compress(model, ratio, criterion=criterion, strategy=strategy, scope=scope,
                      batches=batches, criterion_options=criterion_options,
                      strategy_options=strategy_options, seed=seed, device=device,
                      input_size=input_size, progress=progress,
                      dual_weight=dual_weight)
    result.quality_before = quality_before
    if finetune_steps:
        import time

        t0 = time.perf_counter()
        result.quality_pruned = _quality(model, eval_set, device)
        result.finetune = _finetune(model, data, finetune_steps, finetune_lr, finetune_batch,
                                    finetune_patch, dual_weight, seed, device, progress)
        result.seconds["finetune"] = time.perf_counter() - t0
    result.quality_after = _quality(model, eval_set, device)
    if out is not None:
        from srprune.io.artifact import save_artifact

        save_artifact(model.to("cpu"), out, meta={"source": source, **result.summary()},
                      force=force)
    return result


def _training_model(model: SRModel | str, scale: int | None, weights: str | None) -> SRModel:
    if not isinstance(model, str):
        return model
    from srprune.io.artifact import is_artifact_path
    from srprune.models import build_model

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
    from srprune.data.images import PatchSampler, open_image_set
    from srprune.io.checkpoint import check_writable, save_checkpoint
    from srprune.training.trainer import TrainConfig, Trainer, weights_payload

    if out is not None:
        check_writable(out, force)
    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    is_artifact = isinstance(model, str) and _is_artifact(model)
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
            from srprune.io.artifact import save_artifact

            save_artifact(sr.to("cpu"), out, meta={"trained": summary}, force=force)
        else:
            save_checkpoint(weights_payload(sr.to("cpu"), {"trained": summary}), out, force=force)
    return summary


def _is_artifact(spec: str) -> bool:
    from srprune.io.artifact import is_artifact_path

    return is_artifact_path(spec)


def _eval_set(evaluate: str | Path | None, scale: int) -> Any:
    if evaluate is None:
        return None
    from srprune.data.images import open_image_set

    return open_image_set(None if str(evaluate) == "builtin" else evaluate, scale)


def _quality(model: SRModel, eval_set: Any, device: str) -> dict[str, Any] | None:
    if eval_set is None:
        return None
    from srprune.quality.evaluate import evaluate_model

    return evaluate_model(model, eval_set, device=device)


def _finetune(model: SRModel, data: str | Path, steps: int, lr: float, batch: int, patch: int,
              dual_weight: float, seed: int, device: str,
              progress: ProgressFn | None) -> dict[str, Any]:
    """Dual-regression fine-tuning of the pruned model (cosine schedule from ``lr``)."""
    from srprune.data.images import PatchSampler, open_image_set
    from srprune.training.trainer import TrainConfig, Trainer

    sampler = PatchSampler(open_image_set(data, model.scale), model.scale, patch, batch,
                           seed=seed + 1)
    config = TrainConfig(steps=steps, batch=batch, patch=patch, lr=lr, dual_weight=dual_weight,
                         seed=seed, device=device)
    trainer = Trainer(model, sampler, config)
    log = trainer.run(on_step=(lambda step, _: progress("finetune", step, steps))
                      if progress else None)
    model.net.eval()
    return {"steps": steps, "lr": lr, "batch": batch, "patch": patch,
            "dual_weight": dual_weight, "final_loss": round(log.loss[-1], 4),
            "seconds": round(trainer.elapsed, 1)}
