"""``srprune upscale``: run a model (any form the front door takes) on your own pictures."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from srprune.cli.common import (
    available_memory,
    check_device,
    console,
    load_model_arg,
    note_work_size,
    scale_option,
)
from srprune.cli.progress import ProgressReporter
from srprune.errors import SrpruneError

PAGE = "compare.html"


def _tile(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """``auto`` (None), ``0`` (no tiling: -1) or a side in LR pixels."""
    if value == "auto":
        return None
    try:
        side = int(value)
    except ValueError:
        raise click.BadParameter(f"expected auto, 0 or a side in pixels, got {value!r}") \
            from None
    if side < 0:
        raise click.BadParameter(f"must be auto, 0 or a positive side, got {side}")
    return -1 if side == 0 else side


@click.command("upscale")
@click.argument("args", nargs=-1, required=True, metavar="MODEL_OR_FILE... INPUT...")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Folder for the results (made if missing).")
@scale_option
@click.option("--weights", type=click.Path(), default=None,
              help="Checkpoint for a registered model name.")
@click.option("--runtime", type=click.Choice(["torch", "ort"]), default=None,
              help="torch, or ort (ONNX Runtime CPU on srprune's own export, as bench times "
                   "it). Default: torch; ort for .onnx files.")
@click.option("--tile", default="auto", show_default=True, callback=_tile, metavar="N|auto|0",
              help="Tile side in LR pixels; auto: from the memory available; 0: whole images.")
@click.option("--tile-pad", type=click.IntRange(min=0), default=16, show_default=True,
              help="LR pixels of overlap around each tile (context the model sees).")
@click.option("--recursive", "-r", is_flag=True, help="Images in subfolders too (mirrored).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "webp"]), default="png",
              show_default=True, help="Output format (png keeps 16 bits and alpha).")
@click.option("--compare", is_flag=True,
              help="Several models: each one's results in OUT/<model>/, and OUT/compare.html "
                   "with side-by-side crops where they differ most.")
@click.option("--threads", "-t", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch or ONNX Runtime threads.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing results.")
def command(args: tuple[str, ...], out: str, scale: int | None, weights: str | None,
            runtime: str | None, tile: int | None, tile_pad: int, recursive: bool, fmt: str,
            compare: bool, threads: int, device: str, force: bool) -> None:
    """Upscale INPUT images (files or folders) with MODEL_OR_FILE into --out.

    MODEL_OR_FILE is anything the other commands take: a registered name, an artifact
    (.srp), a checkpoint, an import path, an .onnx file or an ncnn .param file. With
    --compare, give two or more models first (the first is the reference the others are
    scored against), then the inputs.

    \b
    Exit status: 0 every image written; 2 bad input (one "error:" line; nothing written),
    or some images could not be read (one "error:" line each, the others were written).
    """
    from srprune.upscale.inputs import check_targets, find_jobs

    check_device(device)
    models, inputs = _split(args, compare)
    if compare and weights is not None:
        raise SrpruneError("--weights with --compare would give every model the same "
                           "weights; give each model as its own file instead")
    out_dir = Path(out)
    per_model = [out_dir / _folder_name(m) for m in models] if compare else [out_dir]
    jobs = [find_jobs(inputs, folder, fmt, recursive) for folder in per_model]
    for folder, model_jobs in zip(per_model, jobs, strict=True):
        check_targets(model_jobs, folder, force)
    if compare:
        check_targets([], out_dir, force)
        page = out_dir / PAGE
        if page.exists() and not force:
            raise SrpruneError(f"{page} already exists; pass --force to overwrite")
    loaded = [(_folder_name(m), _load(m, scale, weights, runtime)) for m in models]
    _check_scales(loaded)
    from srprune.upscale.runner import opened

    with opened(loaded, _runtime_name(runtime), threads, device) as ups:
        _check_tile(ups, tile)
        tile_side = _auto_tile(ups, tile, tile_pad)
        made = _make_folder(out_dir)
        try:
            stats = _run_all(ups, jobs, tile_side, tile_pad, fmt, force, compare)
            if compare and stats.done:
                _write_page(out_dir / PAGE, ups, stats, force)
        finally:
            _remove_if_empty(made)
    _summary(stats, ups, tile_side, tile_pad, auto=tile is None)
    if stats.failed:  # each was one "error:" line already
        sys.exit(2)


# ------------------------------------------------------------------ arguments


def _split(args: tuple[str, ...], compare: bool) -> tuple[list[str], list[str]]:
    """Models first, then inputs: without --compare the first argument is the model; with
    it, the leading arguments that are not images or folders."""
    from srprune.upscale.image_io import is_image_path

    if not compare:
        if len(args) < 2:
            raise SrpruneError("give a model and at least one image or folder: "
                               "srprune upscale MODEL INPUT... --out DIR")
        return [args[0]], list(args[1:])
    split = next((i for i, a in enumerate(args) if Path(a).is_dir() or is_image_path(a)),
                 len(args))
    models, inputs = list(args[:split]), list(args[split:])
    if len(models) < 2:
        raise SrpruneError(f"--compare needs two or more models before the inputs, got "
                           f"{len(models)} ({', '.join(models) or 'none'})")
    if not inputs:
        raise SrpruneError("--compare: give images or folders after the models")
    if len(set(map(_folder_name, models))) < len(models):
        raise SrpruneError("--compare: two models have the same name; give them distinct "
                           "file names")
    return models, inputs


def _folder_name(spec: str) -> str:
    """A model's label and its results folder under --compare: the file stem or the name."""
    from srprune.models import is_ncnn_path

    path = Path(spec)
    if path.suffix and (path.is_file() or is_ncnn_path(spec)):
        return path.stem
    return spec.replace(":", "-").replace("/", "-")


def _runtime_name(runtime: str | None) -> str:
    return runtime or "torch"


def _load(spec: str, scale: int | None, weights: str | None, runtime: str | None) -> Any:
    """An OnnxModel for .onnx files (unless --runtime torch), else an SRModel."""
    from srprune.measure.onnx_file import is_onnx_path, open_onnx

    if is_onnx_path(spec) and runtime != "torch":
        if weights is not None:
            raise SrpruneError(f"--weights applies to torch models, not to the ONNX file {spec}")
        model = open_onnx(spec)
        if scale is not None and scale != model.scale:
            raise SrpruneError(f"{spec} is a x{model.scale} model, but --scale {scale} was given")
        return model
    return load_model_arg(spec, scale, weights)


def _check_scales(loaded: list[tuple[str, Any]]) -> None:
    scales = {label: model.scale for label, model in loaded}
    if len(set(scales.values())) > 1:
        listed = ", ".join(f"{k} x{v}" for k, v in scales.items())
        raise SrpruneError(f"--compare needs models of one scale, got {listed}")


def _check_tile(ups: list, tile: int | None) -> None:
    if tile is None or tile == -1:
        return
    for up in ups:
        if tile < up.minimum:
            raise SrpruneError(f"--tile {tile} is smaller than the smallest input {up.label} "
                               f"takes ({up.minimum} pixels)")


def _auto_tile(ups: list, tile: int | None, pad: int) -> int | None:
    """The tile side: as given, None for 0 (whole images), or from the memory available."""
    from srprune.upscale.tiling import auto_tile

    if tile == -1:
        return None
    if tile is not None:
        return tile
    memory = available_memory()
    return min(auto_tile(up.bytes_per_pixel, memory, pad, up.minimum) for up in ups)


def _make_folder(folder: Path) -> list[Path]:
    """Make ``folder`` (and its missing parents) and prove it takes files; the folders made,
    so that a run that wrote nothing leaves nothing behind."""
    import os
    import tempfile

    made = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".srprune-", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        _remove_if_empty(made)
        raise SrpruneError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    return made


def _remove_if_empty(made: list[Path]) -> None:
    """Remove the folders :func:`_make_folder` made that are still empty (deepest first)."""
    for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):
        for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


# ------------------------------------------------------------------ the run


class _Stats:
    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.pixels_in = 0
        self.pixels_out = 0
        self.seconds = 0.0
        self.model_seconds = 0.0
        self.results: list[tuple[str, Any, list[Any]]] = []  # (name, LR picture, outputs)


def _run_all(ups: list, jobs: list[list], tile: int | None, pad: int, fmt: str, force: bool,
             compare: bool) -> _Stats:
    from srprune.upscale.image_io import read_picture

    stats = _Stats()
    sources = [job.source for job in jobs[0]]
    start = time.perf_counter()
    with ProgressReporter() as progress:
        progress("images", 0, len(sources))
        for i, source in enumerate(sources):
            try:
                picture = read_picture(source)
            except SrpruneError as exc:
                click.echo(f"error: {exc}", err=True)
                stats.failed += 1
                progress("images", i + 1, len(sources))
                continue
            note_work_size(f"image {source.name}", picture.size)
            outputs = []
            try:
                for up, model_jobs in zip(ups, jobs, strict=True):
                    outputs.append(_one(up, picture, model_jobs[i].target, tile, pad, fmt,
                                        force, progress, stats))
            except SrpruneError as exc:
                click.echo(f"error: {source}: {exc}", err=True)
                stats.failed += 1
                progress("images", i + 1, len(sources))
                continue
            stats.done += 1
            h, w = picture.size
            stats.pixels_in += h * w * len(ups)
            stats.pixels_out += h * w * ups[0].scale ** 2 * len(ups)
            if compare and len(stats.results) < COMPARE_IMAGES:
                stats.results.append((source.name, picture, outputs))
            progress("images", i + 1, len(sources))
    stats.seconds = time.perf_counter() - start
    return stats


COMPARE_IMAGES = 6  # pictures on the comparison page


def _one(up: Any, picture: Any, target: Path, tile: int | None, pad: int, fmt: str,
         force: bool, progress: Any, stats: _Stats) -> Any:
    from srprune.io.checkpoint import write_atomic
    from srprune.upscale.image_io import encode_samples
    from srprune.upscale.runner import upscale_picture

    stage = f"{up.label}: {target.name}"[:40]
    started = time.perf_counter()
    result = upscale_picture(up, picture, tile, pad,
                             lambda done, total: progress("tiles", done, total, note=stage),
                             depth=picture.depth if fmt == "png" else 8)
    stats.model_seconds += time.perf_counter() - started
    data = encode_samples(result, fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, lambda tmp: tmp.write_bytes(data), force)
    return result


def _write_page(path: Path, ups: list, stats: _Stats, force: bool) -> None:
    from srprune.io.checkpoint import write_atomic
    from srprune.quality.crops import crop_sets, crops_section, page
    from srprune.quality.metrics import bicubic_upscale

    sets = []
    for name, picture, outputs in stats.results:
        bicubic = bicubic_upscale(picture.rgb, ups[0].scale)
        sets += crop_sets(name, [(up.label, out.rgb()) for up, out in zip(ups, outputs,
                                                                            strict=True)],
                          bicubic=bicubic)
    labels = ", ".join(up.label for up in ups)
    note = (f"Models: {labels} (x{ups[0].scale}, {ups[0].runtime}). No ground truth: each "
            f"crop's PSNR (Y) is against {ups[0].label}'s output. Regions are where the "
            "models differ most. Click a picture to enlarge it.")
    html_text = page(f"srprune upscale --compare: {labels}",
                     [crops_section(sets, "Side by side", note)])
    write_atomic(path, lambda tmp: tmp.write_text(html_text), force)


def _summary(stats: _Stats, ups: list, tile: int | None, pad: int, auto: bool) -> None:
    rate_out = stats.pixels_out / 1e6 / stats.seconds if stats.seconds else 0.0
    rate_in = stats.pixels_in / 1e6 / stats.seconds if stats.seconds else 0.0
    tiling = (f"tiles of up to {tile} px{' (auto)' if auto else ''} + {pad} px overlap"
              if tile else "whole images")
    runtime = ups[0].runtime if ups else "?"
    line = (f"{stats.done} image(s) upscaled x{ups[0].scale if ups else '?'} ({runtime}, "
            f"{tiling}): {stats.pixels_in / 1e6:.2f} MP in, {stats.pixels_out / 1e6:.2f} MP "
            f"out in {stats.seconds:.1f} s: {rate_out:.2f} MP/s out ({rate_in:.3f} MP/s in)")
    if stats.failed:
        line += f"; {stats.failed} could not be upscaled (see the error lines)"
    console.print(line, markup=False, highlight=False, soft_wrap=True)
