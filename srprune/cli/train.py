"""``srprune train``: dual-regression training (or fine-tuning) of any SR model."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from srprune.cli.common import check_device, console, json_option, lr_dir_option, print_json
from srprune.cli.progress import ProgressReporter
from srprune.config import DISTILL_WEIGHT

#: flags of the run's settings; given explicitly, a resumed checkpoint must match them
RUN_FLAGS = ("batch", "patch", "seed", "lr", "dual_weight")


@click.command("train")
@click.argument("model")
@click.option("--data", required=True, type=click.Path(), help="Folder of HR training images.")
@lr_dir_option
@click.option("--scale", "-s", type=int, default=None, help="Upscaling factor.")
@click.option("--steps", type=int, required=True, help="Optimisation steps.")
@click.option("--weights", type=click.Path(), default=None, help="Start from these weights.")
@click.option("--dual-weight", type=float, default=0.1, show_default=True,
              help="lambda of the dual-regression loss (0 disables the dual term).")
@click.option("--patch", type=int, default=32, show_default=True, help="LR patch size.")
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak learning rate.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Resumable checkpoint, saved every 500 steps, at the end and on Ctrl-C "
                   "(default: OUT.ckpt). An existing one needs --resume or --force.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --checkpoint if it exists, with that run's batch, "
                   "patch, seed, lr and dual weight (flags given explicitly must match).")
@click.option("--checkpoint-every", type=int, default=500, show_default=True,
              help="Steps between checkpoints.")
@click.option("--teacher", default=None, metavar="MODEL",
              help="Distil from this model (name, artifact or checkpoint): the unpruned model "
                   "a pruned MODEL came from.")
@click.option("--trust-import", is_flag=True,
              help="Allow MODEL's or --teacher's artifact, when built from an import path, "
                   "to import and call that code.")
@click.option("--distill-weight", type=float, default=None,
              help=f"Weight of the L1 to the teacher's SR output (0: off; default "
                   f"{DISTILL_WEIGHT} with --teacher, else 0).")
@click.option("--distill-features", type=float, default=0.0, show_default=True,
              help="Weight of the L1 to the teacher's features at unit consumers (0: off).")
@click.option("--threads", type=int, default=None,
              help="CPU threads of this process (default: torch's, one per core). On a "
                   "machine other jobs share, 1 can be several times faster.")
@click.option("--bf16", is_flag=True, help="bf16 autocast (CUDA only).")
@click.option("--channels-last", is_flag=True, help="channels-last memory format (CUDA only).")
@click.option("--out", required=True, type=click.Path(), help="Weights (or artifact) to write.")
@click.option("--force", is_flag=True, help="Overwrite --out and --checkpoint if they exist.")
@json_option
@click.pass_context
def command(ctx: click.Context, model: str, data: str, lr_dir: str | None, scale: int | None,
            steps: int,
            weights: str | None, dual_weight: float, patch: int, batch: int, lr: float,
            seed: int, device: str, checkpoint: str | None, resume: bool,
            checkpoint_every: int, teacher: str | None, trust_import: bool,
            distill_weight: float | None,
            distill_features: float, threads: int | None, bf16: bool, channels_last: bool,
            out: str, force: bool, as_json: bool) -> None:
    """Train MODEL (name or artifact) with the dual-regression loss on HR images in --data.

    Ctrl-C saves the checkpoint at the last whole step; the same command plus --resume
    continues exactly where it stopped. Under torchrun (--nproc_per_node N) --batch is the
    global batch and rank 0 alone writes.
    """
    from srprune.api import train_model
    from srprune.errors import Interrupted, SrpruneError
    from srprune.training import distributed
    from srprune.training.distill import check_weights
    from srprune.training.trainer import (
        TrainingInterrupted,
        check_gpu_options,
        check_train_settings,
    )

    check_train_settings(steps=steps, batch=batch, patch=patch, lr=lr, dual_weight=dual_weight,
                         seed=seed, flags=True)
    if checkpoint_every < 1:
        raise SrpruneError(f"--checkpoint-every must be an integer >= 1, got {checkpoint_every}")
    if threads is not None:
        if threads < 1:
            raise SrpruneError(f"--threads must be an integer >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    check_weights(0.0 if distill_weight is None else distill_weight, distill_features)
    check_device(device)
    check_gpu_options(device, bf16=bf16, channels_last=channels_last)
    checkpoint = checkpoint or f"{out}.ckpt"
    pinned = tuple(key for key in RUN_FLAGS if ctx.get_parameter_source(key)
                   not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP))
    try:
        with distributed.session(device) as world, \
                ProgressReporter(quiet=as_json or not world.main) as reporter:
            report = reporter if world.main else _silent

            def on_step(step: int, losses: dict) -> None:
                report("train", step, steps, note=f"loss {losses['loss']:.3f}")

            result = train_model(model, data, scale=scale, steps=steps, weights=weights,
                                 dual_weight=dual_weight, patch=patch, batch=batch, lr=lr,
                                 seed=seed, device=device, checkpoint=checkpoint,
                                 resume=resume and Path(checkpoint).exists(), out=out,
                                 force=force, on_step=on_step, pinned=pinned,
                                 on_start=lambda step: report("train", step, steps),
                                 lr_dir=lr_dir, checkpoint_every=checkpoint_every,
                                 teacher=teacher, distill_weight=distill_weight,
                                 distill_features=distill_features, bf16=bf16,
                                 channels_last=channels_last,
                                 trust_import=_trust(trust_import, model, teacher))
    except TrainingInterrupted as exc:
        if exc.checkpoint is None:
            raise
        again = "the same command" if resume else "the same command plus --resume"
        raise Interrupted(f"{exc}; continue with {again}") from None
    if not world.main:  # rank 0 reports
        return
    if as_json:
        print_json(result)
        return
    resumed = result.get("resumed")
    note = ""
    if resumed:
        note = f"resumed {resumed['checkpoint']} at step {resumed['step']}"
        if resumed["adopted"]:
            note += " with that run's " + ", ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in resumed["adopted"].items())
        note += "; "
    console.print(f"{note}trained {result['steps']} steps in {result['seconds']:.0f} s; "
                  f"final loss {result['final_loss']:.3f}; wrote {out}", markup=False,
                  highlight=False)


def _trust(flag: bool, *specs: str | None) -> bool | frozenset[str]:
    """``--trust-import``, else the import paths typed as MODEL or --teacher."""
    from srprune.models.trust import command_line_imports

    return True if flag else command_line_imports(s for s in specs if s)


def _silent(_stage: str, _done: int, _total: int, note: str = "") -> None:
    """The progress function of ranks other than 0: they report nothing."""
