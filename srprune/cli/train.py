"""``srprune train``: dual-regression training (or fine-tuning) of any SR model."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from srprune.cli.common import console, err_console, json_option, print_json


@click.command("train")
@click.argument("model")
@click.option("--data", required=True, type=click.Path(), help="Folder of HR training images.")
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
              help="Resumable checkpoint (default: OUT.ckpt).")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint if it exists.")
@click.option("--out", required=True, type=click.Path(), help="Weights (or artifact) to write.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@json_option
def command(model: str, data: str, scale: int | None, steps: int, weights: str | None,
            dual_weight: float, patch: int, batch: int, lr: float, seed: int, device: str,
            checkpoint: str | None, resume: bool, out: str, force: bool, as_json: bool) -> None:
    """Train MODEL (name or artifact) with the dual-regression loss on HR images in --data."""
    from srprune.api import train_model
    from srprune.errors import SrpruneError
    from srprune.io.checkpoint import check_writable

    check_writable(out, force)
    if steps < 1:
        raise SrpruneError("--steps must be >= 1")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SrpruneError("--device cuda asked, but no CUDA device is available")
    checkpoint = checkpoint or f"{out}.ckpt"
    with Progress(TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, disable=as_json) as bar:
        task = bar.add_task("train", total=steps, loss=float("nan"))

        def on_step(step: int, losses: dict) -> None:
            bar.update(task, completed=step, loss=losses["loss"])

        result = train_model(model, data, scale=scale, steps=steps, weights=weights,
                             dual_weight=dual_weight, patch=patch, batch=batch, lr=lr, seed=seed,
                             device=device, checkpoint=checkpoint,
                             resume=resume and Path(checkpoint).exists(), out=out, force=force,
                             on_step=on_step)
    if as_json:
        print_json(result)
    else:
        console.print(f"trained {result['steps']} steps in {result['seconds']:.0f} s; "
                      f"final loss {result['final_loss']:.3f}; wrote {out}")
