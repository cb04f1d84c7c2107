"""``srprune eval``: PSNR/SSIM on Y of a model against ground truth, with bicubic beside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from srprune.cli.common import (
    check_device,
    console,
    json_option,
    load_model_arg,
    lr_dir_option,
    note_work_size,
    print_json,
    scale_option,
)
from srprune.cli.progress import ProgressReporter


@click.command("eval")
@click.argument("model")
@scale_option
@click.option("--weights", type=click.Path(), default=None, help="Checkpoint to load.")
@click.option("--data", type=click.Path(), default=None,
              help="HR folder, EDSR benchmark folder or DIV2K *_HR folder (its *_LR_bicubic "
                   "sibling is used); 'builtin' (the default): the built-in evaluation photos.")
@lr_dir_option
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", "-t", type=click.IntRange(min=1), default=1, show_default=True,
              help="ONNX Runtime threads, for a MODEL given as an .onnx file.")
@json_option
def command(model: str, scale: int | None, weights: str | None, data: str | None,
            lr_dir: str | None, device: str, threads: int, as_json: bool) -> None:
    """Evaluate MODEL (name, artifact, checkpoint or .onnx file) on --data (or the built-in
    photos). An .onnx file runs on ONNX Runtime CPU."""
    from srprune.data.images import open_image_set
    from srprune.errors import SrpruneError
    from srprune.measure.onnx_file import is_onnx_path, open_onnx
    from srprune.quality.evaluate import evaluate_function, evaluate_model

    check_device(device)
    if data == "builtin":  # the built-in evaluation photos, as with compress --eval builtin
        data = None
    if data is not None and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    if lr_dir is not None and data is None:
        raise SrpruneError("--lr-dir needs --data (the HR folder its LR files belong to)")
    if lr_dir is not None and not Path(lr_dir).is_dir():
        raise SrpruneError(f"LR folder not found: {lr_dir}")
    if is_onnx_path(model):
        if weights is not None or device != "cpu":
            raise SrpruneError("--weights and --device apply to torch models, not to the ONNX "
                               f"file {model}")
        sr = open_onnx(model, threads)
        if scale is not None and scale != sr.scale:
            raise SrpruneError(f"{model} is a x{sr.scale} model, but --scale {scale} was given")
    else:
        sr = load_model_arg(model, scale, weights)
    images = open_image_set(data, sr.scale, lr_dir)
    with ProgressReporter(quiet=as_json) as reporter:
        progress = _noting_sizes(images, reporter)
        if is_onnx_path(model):
            result = evaluate_function(sr.upscaler(threads), images, sr.scale, progress)
        else:
            result = evaluate_model(sr.to(device), images, device=device, progress=progress)
    result["model"], result["scale"] = model, sr.scale
    if images.notes:
        result["data_notes"] = images.notes
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{model} x{sr.scale} on {data or 'built-in evaluation photos'} "
                        f"(Y channel, {sr.scale}-px border crop)")
    for col in ("image", "PSNR", "SSIM", "bicubic PSNR", "bicubic SSIM", "gain dB"):
        table.add_column(col, justify="right")
    for row in [*result["per_image"], {"name": "mean", **result}]:
        table.add_row(row["name"], f"{row['psnr']:.3f}", f"{row['ssim']:.4f}",
                      f"{row['bicubic_psnr']:.3f}", f"{row['bicubic_ssim']:.4f}",
                      f"{row['psnr'] - row['bicubic_psnr']:+.3f}")
    console.print(table)
    for note in images.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


def _noting_sizes(images: Any, progress: Callable[[str, int, int], None]
                  ) -> Callable[[str, int, int], None]:
    """``progress``, telling the out-of-memory line which image runs next and its LR size
    (the evaluation reports ``done`` images before it takes the next one)."""

    def report(stage: str, done: int, total: int) -> None:
        if done < total:
            pair = images[done]  # decoded now or a moment later by the evaluation: cached
            note_work_size(f"image {pair.name}", pair.lr[0].shape[:2])
        progress(stage, done, total)

    return report
