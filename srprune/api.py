"""The scriptable front door: ``srprune.compress``, ``srprune.load``, ``srprune.train``."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from srprune.config import AUTO_LEARNING_RATES, DISTILL_WEIGHT, FineTune, RunConfig
from srprune.data.images import ImageSet, PatchSampler, check_patch_fits, open_image_set
from srprune.errors import SrpruneError
from srprune.io.checkpoint import check_writable, save_checkpoint
from srprune.models import SRModel, build_model, resolve_model
from srprune.models.artifacts import is_artifact_path, load_artifact, save_artifact
from srprune.models.trust import TrustImport
from srprune.prune.contracts import Batch
from srprune.prune.engine import (
    CompressResult,
    ProgressFn,
    compress,
    make_criterion,
    make_strategy,
)
from srprune.quality.evaluate import evaluate_model
from srprune.search.base import round_to_option
from srprune.training import distributed
from srprune.training.loss import ensure_duals, fit_new_duals
from srprune.training.trainer import TrainConfig, Trainer, weights_payload
from srprune.training.validation import (
    MIN_IMAGES_TO_HOLD_OUT,
    split_holdout,
    validation_patches,
)


def load(path: str | Path, trust_import: TrustImport = False) -> SRModel:
    """Load a compressed-model artifact (``weights_only``; no code is unpickled).

    An artifact of a model built from an import path rebuilds only with ``trust_import``:
    ``True`` (any ``nn.Module`` class or ``@srprune_factory`` function it names) or the
    import paths you allow (``{"my_pkg.nets:MyNet"}``); see :mod:`srprune.models.trust`.
    """
    return load_artifact(path, trust_import)


def calibration_batches(data: str | Path | None, scale: int, n_batches: int, batch: int,
                        patch: int, seed: int,
                        progress: ProgressFn | None = None,
                        lr_dir: str | Path | None = None) -> list[Batch]:
    """``n_batches`` seeded batches of aligned LR-pyramid/HR patches from a folder (or []).

    ``progress("calibration", done, n_batches)`` is called before and after each batch.
    ``lr_dir`` holds the LR files ``X{f}/<name>x{f}.png`` for the HR images in ``data``.
    """
    if data is None:
        return []
    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    report = progress or (lambda _stage, _done, _total: None)
    report("calibration", 0, n_batches)
    sampler = PatchSampler(open_image_set(data, scale, lr_dir), scale, patch, batch, seed=seed)
    batches = []
    for _ in range(n_batches):
        batches.append(sampler.next_batch())
        report("calibration", len(batches), n_batches)
    return batches


def check_plugins(config: RunConfig) -> None:
    """Build the run's criterion and strategy once, so bad names or options (and a strategy's
    unwritable outputs) fail before any data is read."""
    make_criterion(config.selection.criterion, config.selection.criterion_options)
    make_strategy(config.selection.strategy, config.selection.strategy_options)


def compress_model(model: SRModel | str, ratio: float | None = None, *,
                   scale: int | None = None, weights: str | None = None,
                   source: str | None = None, progress: ProgressFn | None = None,
                   config: RunConfig | None = None, trust_import: TrustImport = None,
                   round_to: int | None = None, **settings: Any) -> CompressResult:
    """Compress a model (an ``SRModel``, a registered name or an artifact path).

    ``round_to`` (the CLI's ``--round-to``): kept widths are multiples of it (1: exact
    widths); None (the default) leaves the strategy's own default, "auto": multiples of ONNX
    Runtime's NCHWc channel block on this CPU (``result.strategy_report["round_to"]`` says
    what was used). An explicit ``strategy_options`` entry wins.

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

    ``progress(stage, done, total)`` hears about every long stage, with ``done=0`` at its
    start: "calibration", "eval: before", "search" (and the strategy's own loop, e.g.
    "dr-search"), "prune", "eval: pruned", "dual nets" (fitting new ones before fine-tuning
    a model that brings none), "finetune", "eval: after".
    """
    if config is None:
        if round_to is not None:
            options = dict(settings.get("strategy_options") or {})
            round_to_option(settings.get("strategy", "uniform"), round_to, options)
            settings["strategy_options"] = options
        config = RunConfig.build(ratio=ratio, **settings)
    elif ratio is not None or settings or round_to is not None:
        raise TypeError("pass either config= or flat settings, not both")
    check_plugins(config)
    out, force = config.output.path, config.output.force
    if out is not None:
        check_writable(out, force)
    if isinstance(model, str):
        source = source or model
        model = resolve_model(model, scale, weights=weights, trust_import=trust_import)
    calib, tune = config.calibration, config.finetune
    if tune.steps and calib.data is None:
        raise SrpruneError("fine-tuning needs training images: pass --data DIR")
    if calib.lr_dir is not None and calib.data is None:
        raise SrpruneError("--lr-dir needs --data (the HR folder its LR files belong to)")
    tune_images = None
    if tune.steps:  # a fine-tuning patch that cannot fit fails now, not after the pruning
        tune_images = open_image_set(calib.data, model.scale, calib.lr_dir)
        check_patch_fits(tune_images, tune.patch)
    batches = calibration_batches(calib.data, model.scale, calib.batches, calib.batch,
                                  calib.patch, config.seed, progress, lr_dir=calib.lr_dir)
    eval_set = _eval_set(config.evaluate, model.scale)
    quality_before = _quality(model, eval_set, config.device, progress, "eval: before")
    teacher = (copy.deepcopy(model) if tune.steps and (tune.distill_weight
                                                       or tune.distill_features) else None)
    result = compress(model, batches=batches, config=config, progress=progress)
    result.quality_before = quality_before
    if tune.steps:
        t0 = time.perf_counter()
        result.quality_pruned = _quality(model, eval_set, config.device, progress,
                                         "eval: pruned")
        if progress is not None:
            progress("finetune", 0, tune.steps)
        result.finetune = _finetune(model, calib.data, tune, config, progress, teacher,
                                    tune_images)
        result.seconds["finetune"] = time.perf_counter() - t0
    result.quality_after = _quality(model, eval_set, config.device, progress, "eval: after")
    if out is not None and distributed.is_main():  # under torchrun, rank 0 alone writes
        save_artifact(model.to("cpu"), out, meta={"source": source, **result.summary()},
                      force=force)
    return result


def _training_model(model: SRModel | str, scale: int | None, weights: str | None,
                    trust_import: TrustImport = None) -> SRModel:
    if not isinstance(model, str):
        return model
    if is_artifact_path(model):
        return resolve_model(model, scale, weights=weights, trust_import=trust_import)
    return build_model(model, scale, weights=weights, pretrained=False)


def train_model(model: SRModel | str, data: str | Path, scale: int | None = None,
                steps: int = 1000, weights: str | None = None, dual_weight: float = 0.1,
                patch: int = 32, batch: int = 16, lr: float = 2e-3, seed: int = 1,
                device: str = "cpu", checkpoint: str | None = None, resume: bool = False,
                out: str | Path | None = None, force: bool = False,
                on_step: Any = None, pinned: tuple[str, ...] = (),
                on_start: Callable[[int], None] | None = None,
                lr_dir: str | Path | None = None, checkpoint_every: int = 500,
                teacher: SRModel | str | None = None, distill_weight: float | None = None,
                distill_features: float = 0.0, bf16: bool = False,
                channels_last: bool = False,
                trust_import: TrustImport = None) -> dict[str, Any]:
    """Dual-regression training of a model (name, artifact or ``SRModel``) on an HR folder.

    ``lr_dir`` holds LR files ``X{f}/<name>x{f}.png`` for the HR images in ``data`` (else
    the folder's layout decides, see :func:`srprune.data.images.open_image_set`).

    Registered names start from random weights unless ``weights`` is given; artifacts (pruned
    models) are fine-tuned from their own weights and written back as artifacts. ``teacher``
    (a model or anything :func:`~srprune.models.resolve_model` takes, e.g. the unpruned
    model's name) is distilled from with ``distill_weight`` (SR output; default
    :data:`srprune.config.DISTILL_WEIGHT` with a teacher, else 0) and ``distill_features``
    (features at unit consumers), see :mod:`srprune.training.distill`.
    ``bf16`` and ``channels_last`` apply on CUDA only. ``trust_import`` says which import
    paths the model's or teacher's artifacts may rebuild from (:mod:`srprune.models.trust`).

    Nothing is replaced by surprise and nothing is lost. Settings and every output target are
    checked before any work: ``out`` may replace a file only with ``force``; ``checkpoint``
    (the resumable state, saved every ``checkpoint_every`` steps, at the end and on Ctrl-C)
    may name an existing file only with ``resume`` (continue that run) or ``force`` (start
    over). With ``resume`` the run continues the checkpoint's run with its settings
    (``batch``, ``patch``, ``seed``, ``lr``, ``dual_weight``; ``summary["resumed"]["adopted"]``
    lists those that differ from the arguments), except that settings named in ``pinned``
    must match it; ``steps`` is where the run ends. Ctrl-C raises
    :class:`~srprune.errors.Interrupted` (a ``TrainingInterrupted``) once the checkpoint is
    saved.

    Under ``torchrun`` the process group is started here (unless the caller started one),
    ``batch`` is the global batch, and rank 0 alone writes ``out`` and the checkpoint.
    """
    with distributed.session(device):
        return _train(model, data, scale=scale, steps=steps, weights=weights,
                      dual_weight=dual_weight, patch=patch, batch=batch, lr=lr, seed=seed,
                      device=device, checkpoint=checkpoint, resume=resume, out=out,
                      force=force, on_step=on_step, pinned=pinned, on_start=on_start,
                      lr_dir=lr_dir, checkpoint_every=checkpoint_every, teacher=teacher,
                      distill_weight=distill_weight, distill_features=distill_features,
                      bf16=bf16, channels_last=channels_last, trust_import=trust_import)


def _train(model: SRModel | str, data: str | Path, *, scale: int | None, steps: int,
           weights: str | None, dual_weight: float, patch: int, batch: int, lr: float,
           seed: int, device: str, checkpoint: str | None, resume: bool,
           out: str | Path | None, force: bool, on_step: Any, pinned: tuple[str, ...],
           on_start: Callable[[int], None] | None, lr_dir: str | Path | None,
           checkpoint_every: int, teacher: SRModel | str | None,
           distill_weight: float | None, distill_features: float, bf16: bool,
           channels_last: bool, trust_import: TrustImport = None) -> dict[str, Any]:
    """:func:`train_model` inside its process-group session."""
    import torch

    from srprune.training.distill import check_weights
    from srprune.training.trainer import (
        check_gpu_options,
        check_model_fits,
        check_target,
        check_train_settings,
        read_train_checkpoint,
        same_setting,
    )

    check_train_settings(steps=steps, batch=batch, patch=patch, lr=lr, dual_weight=dual_weight,
                         seed=seed)
    if distill_weight is None:
        distill_weight = DISTILL_WEIGHT if teacher is not None else 0.0
    check_weights(distill_weight, distill_features)
    check_gpu_options(device, bf16=bf16, channels_last=channels_last)
    if (distill_weight or distill_features) and teacher is None:
        raise SrpruneError("--distill-weight and --distill-features need --teacher MODEL (the "
                           "unpruned model to distil from)")
    world = distributed.world()
    distributed.check_batch(batch, "--batch", world)
    device = distributed.local_device(device)
    if out is not None:
        check_writable(out, force)
        check_target(out)
    if checkpoint is not None:
        if out is not None and Path(checkpoint).resolve() == Path(out).resolve():
            raise SrpruneError(f"the checkpoint and the output are the same file ({out}); "
                               "give the checkpoint another path")
        check_target(checkpoint)
        if Path(checkpoint).exists() and not resume and not force:
            raise SrpruneError(f"{checkpoint} already exists; pass --resume to continue that "
                               "run or --force to overwrite it")
    if str(data) != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    if lr_dir is not None and not Path(lr_dir).is_dir():
        raise SrpruneError(f"LR folder not found: {lr_dir}")
    is_artifact = isinstance(model, str) and is_artifact_path(model)
    torch.manual_seed(seed)  # random initial weights (and new dual nets) follow the seed
    sr = _training_model(model, scale, weights, trust_import)
    fresh_duals = sr.duals is None  # a resumed run loads them, a new one fits them below
    if isinstance(teacher, str):
        teacher = resolve_model(teacher, sr.scale, trust_import=trust_import)
    run = {"batch": batch, "patch": patch, "seed": seed, "lr": lr, "dual_weight": dual_weight}
    state, adopted, extra = None, {}, {}
    if resume and checkpoint is not None:
        state = read_train_checkpoint(checkpoint)
        check_model_fits(ensure_duals(sr), state, checkpoint)
        saved = state["config"]
        for key, given in run.items():
            if same_setting(saved[key], given):
                continue
            if key in pinned:
                flag = "--" + key.replace("_", "-")
                raise SrpruneError(f"{checkpoint} was made with {flag} {saved[key]}, but {flag} "
                                   f"{given} was given; drop {flag} to continue that run with "
                                   "its settings, or start over with --force instead of "
                                   "--resume")
            adopted[key] = saved[key]
        run.update(adopted)
        distributed.check_batch(run["batch"], f"{checkpoint}'s batch", world)
        extra = {"lr_min": float(saved["lr_min"]), "betas": tuple(map(float, saved["betas"])),
                 "warmup": int(saved.get("warmup", 0))}
    images = open_image_set(data, sr.scale, lr_dir)
    if fresh_duals and state is None and run["dual_weight"]:
        _fit_new_duals(sr, images, run["patch"], run["batch"], run["seed"], device)
    sampler = PatchSampler(images, sr.scale, run["patch"], run["batch"], seed=run["seed"],
                           rank=world.rank, ranks=world.size)
    config = TrainConfig(steps=steps, **run, **extra, device=device,
                         checkpoint_every=checkpoint_every, distill_weight=distill_weight,
                         distill_features=distill_features, bf16=bf16,
                         channels_last=channels_last)
    trainer = Trainer(sr, sampler, config, teacher=teacher)
    if state is not None:
        trainer.resume(checkpoint, state)
    if on_start is not None:  # every check passed: the training itself starts here
        on_start(trainer.step)
    log = trainer.run(checkpoint=checkpoint, on_step=on_step)
    summary = {"steps": trainer.step, "seconds": round(trainer.elapsed, 2),
               "final_loss": log.loss[-1] if log.loss else float("nan"),
               "processes": world.size,
               "config": {k: v for k, v in vars(config).items()}}
    if state is not None:
        summary["resumed"] = {"checkpoint": str(checkpoint), "step": state["step"],
                              "adopted": adopted}
    if out is not None and world.main:
        if is_artifact:
            save_artifact(sr.to("cpu"), out, meta={"trained": summary}, force=force)
        else:
            save_checkpoint(weights_payload(sr.to("cpu"), {"trained": summary}), out, force=force)
    return summary


def _eval_set(evaluate: str | Path | None, scale: int) -> ImageSet | None:
    if evaluate is None:
        return None

    return open_image_set(None if str(evaluate) == "builtin" else evaluate, scale)


def _quality(model: SRModel, eval_set: ImageSet | None, device: str,
             progress: ProgressFn | None = None, stage: str = "eval") -> dict[str, Any] | None:
    if eval_set is None:
        return None

    return evaluate_model(model, eval_set, device=device, progress=progress, stage=stage)


def _finetune(model: SRModel, data: str, tune: FineTune, config: RunConfig,
              progress: ProgressFn | None, teacher: SRModel | None = None,
              images: ImageSet | None = None) -> dict[str, Any]:
    """Dual-regression fine-tuning of the pruned model (cosine schedule from ``tune.lr``),
    distilling from ``teacher`` (the unpruned model) when ``tune`` asks for it.

    On Ctrl-C the pruned model is saved as it is to the run's ``out`` (when there is one),
    with a training checkpoint beside it (``OUT.ckpt``, or ``OUT.<n>.ckpt`` when that exists
    and ``force`` is off) and, when distilling, the teacher as an artifact
    (``OUT.teacher.srp``, numbered alike), and ``Interrupted`` says how ``srprune train``
    continues the run.
    Under torchrun (a process group is started here if none is running) the batch is
    global, validation scores come from rank 0, and rank 0 alone writes.
    """
    with distributed.session(config.device) as world:
        distributed.check_batch(tune.batch, "--finetune-batch", world)
        return _finetune_run(model, data, tune, config, progress, teacher, world, images)


def _fit_new_duals(model: SRModel, images: ImageSet, patch: int, batch: int, seed: int,
                   device: str) -> dict[str, Any] | None:
    """Dual nets fitted to ``model`` when it brings none (:func:`fit_new_duals`), on training
    patches drawn with their own seed."""
    return fit_new_duals(model, PatchSampler(images, model.scale, patch, batch, seed=seed + 2),
                         device)


def _free_path(out: str, suffix: str, force: bool) -> Path:
    """``OUT<suffix>``, or ``OUT.<n><suffix>`` for the first n free when it exists (no force)."""
    path, n = Path(f"{out}{suffix}"), 1
    while path.exists() and not force:
        path, n = Path(f"{out}.{n}{suffix}"), n + 1
    return path


def _finetune_run(model: SRModel, data: str, tune: FineTune, config: RunConfig,
                  progress: ProgressFn | None, teacher: SRModel | None,
                  world: distributed.World, opened: ImageSet | None = None) -> dict[str, Any]:
    import shlex

    from srprune.errors import Interrupted
    from srprune.training.trainer import TrainingDiverged, TrainingInterrupted

    device = distributed.local_device(config.device)
    lr_dir = config.calibration.lr_dir
    if opened is None:
        opened = open_image_set(data, model.scale, lr_dir)
    images, held_out = split_holdout(opened, config.seed)
    judged = held_out or images
    smallest = min(min(pair.hr.shape[:2]) for pair in judged) // model.scale
    validation = validation_patches(judged, model.scale,
                                    min(max(tune.patch, VALIDATION_PATCH), smallest),
                                    VALIDATION_PATCHES, config.seed)
    duals = None
    if config.dual_weight and model.duals is None:  # fitted to the model, not random
        if progress is not None:
            progress("dual nets", 0, 1)
        duals = _fit_new_duals(model, images, tune.patch, tune.batch, config.seed, device)
        if progress is not None:
            progress("dual nets", 1, 1)
    ensure_duals(model)
    best = _Best(model, distributed.from_main(lambda: validation.psnr(model, device)))
    every = tune.eval_every or max(1, tune.steps // 10)
    rates = list(AUTO_LEARNING_RATES) if tune.lr == "auto" else [float(tune.lr)]
    tried: list[tuple[float, float]] = []
    trainer: Trainer | None = None

    def evaluate(m: SRModel) -> dict[str, float]:
        psnr = distributed.from_main(lambda: validation.psnr(m, device))
        best.offer(trainer.step if trainer else 0, psnr)
        return {"psnr": round(psnr, 4)}

    train_config = None
    try:
        for attempt, rate in enumerate(rates):
            sampler = PatchSampler(images, model.scale, tune.patch, tune.batch,
                                   seed=config.seed + 1, rank=world.rank, ranks=world.size)
            train_config = TrainConfig(steps=tune.steps, batch=tune.batch, patch=tune.patch,
                                       lr=rate, dual_weight=config.dual_weight,
                                       seed=config.seed, device=device,
                                       warmup=tune.steps // 20,
                                       distill_weight=tune.distill_weight,
                                       distill_features=tune.distill_features,
                                       bf16=tune.bf16, channels_last=tune.channels_last)
            trainer = Trainer(model, sampler, train_config, teacher=teacher)
            on_step = ((lambda step, _: progress("finetune", step, tune.steps))
                       if progress else None)
            if attempt < len(rates) - 1:
                # the back-off: the first validation must not fall below the pruned model
                try:
                    log = trainer.run(until=every, on_step=on_step, evaluate=evaluate,
                                      eval_every=every)
                    first = log.evals[-1]["psnr"] if log.evals else best.start
                except TrainingDiverged:
                    first = float("nan")
                if not first >= best.start:  # lower, or diverged
                    tried.append((rate, first))
                    best.restore()
                    continue
            log = trainer.run(on_step=on_step, evaluate=evaluate, eval_every=every)
            tried.append((rate, log.evals[0]["psnr"] if log.evals else best.start))
            break
    except TrainingInterrupted:
        where = f"interrupted at fine-tuning step {trainer.step}/{tune.steps}"
        out, force = config.output.path, config.output.force
        if out is None:
            raise Interrupted(f"{where}; nothing saved (no output path was given)") from None
        if not world.main:
            raise Interrupted(f"{where} (rank {world.rank}: rank 0 saves the model)") from None
        ckpt = _free_path(out, ".ckpt", force)
        trainer.save(ckpt)
        model.net.eval()
        save_artifact(model.to("cpu"), out, force=force,
                      meta={"source": model.name, "interrupted": {
                          "finetune_step": trainer.step, "finetune_steps": tune.steps,
                          "checkpoint": str(ckpt)}})
        quote = shlex.quote
        saved, distil = f"a training checkpoint to {ckpt}", ""
        if teacher is not None:
            teacher_path = _free_path(out, ".teacher.srp", force)
            save_artifact(teacher.to("cpu"), teacher_path, force=force,
                          meta={"teacher_of": str(out)})
            saved += f" and the unpruned teacher to {teacher_path}"
            distil = (f" --teacher {quote(str(teacher_path))} --distill-weight "
                      f"{tune.distill_weight} --distill-features {tune.distill_features}")
        raise Interrupted(
            f"{where}; saved the pruned model as it is to {out} and {saved}; continue with: "
            f"srprune train {quote(str(out))} --data "
            f"{quote(str(data))}"
            + (f" --lr-dir {quote(str(lr_dir))}" if lr_dir is not None else "")
            + f" --steps {tune.steps} --checkpoint {quote(str(ckpt))}{distil} "
            "--resume --out NEW.srp") from None
    assert trainer is not None and train_config is not None
    last = log.evals[-1]["psnr"] if log.evals else best.start
    kept = "last"
    if tune.keep == "best":
        model.net.load_state_dict(best.state)
        kept = "best" if best.step else "start"
    model.net.eval()
    return {"steps": tune.steps, "lr": train_config.lr, "warmup": train_config.warmup,
            "lr_auto": ({"tried": [[r, round(p, 4) if math.isfinite(p) else None]
                                   for r, p in tried],
                         "rule": "first validation not below the pruned model",
                         "extra_steps": every * (len(tried) - 1)}
                        if tune.lr == "auto" else None),
            "batch": tune.batch, "patch": tune.patch, "dual_weight": config.dual_weight,
            "new_duals": duals,
            "distill_weight": tune.distill_weight, "distill_features": tune.distill_features,
            "processes": world.size,
            "final_loss": round(log.loss[-1], 4), "seconds": round(trainer.elapsed, 1),
            "validation": {"patches": validation.size, "every": every,
                           "images": (f"held out: {', '.join(held_out.names)}" if held_out
                                      else "the training images (fewer than "
                                      f"{MIN_IMAGES_TO_HOLD_OUT}: none held out)"),
                           "start_psnr": round(best.start, 4),
                           "best_psnr": round(best.psnr, 4), "best_step": best.step,
                           "last_psnr": round(last, 4), "kept": kept,
                           "evals": [(e["step"], e["psnr"]) for e in log.evals]}}


VALIDATION_PATCHES = 16
VALIDATION_PATCH = 48  # LR side of a validation patch: larger than training patches


class _Best:
    """The best validation score of a fine-tuning run so far and the weights that made it."""

    def __init__(self, model: SRModel, start: float) -> None:
        self.model, self.start, self.psnr, self.step = model, start, start, 0
        self.state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        self.start_state = self.state
        self.duals = ({k: v.detach().clone() for k, v in model.duals.state_dict().items()}
                      if model.duals is not None else None)

    def restore(self) -> None:
        """Back to the weights the run started from (net and dual nets)."""
        self.model.net.load_state_dict(self.start_state)
        if self.duals is not None:
            self.model.duals.load_state_dict(self.duals)

    def offer(self, step: int, psnr: float) -> None:
        if psnr > self.psnr:
            self.psnr, self.step = psnr, step
            self.state = {k: v.detach().clone() for k, v in self.model.net.state_dict().items()}
