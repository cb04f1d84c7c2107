"""One cell's work: compress the frozen model, fine-tune, evaluate per image, save the artifact.

The same function runs in the command's own process, in a local worker process or in a Ray
task; it returns the cell's row (a JSON-ready dict) and never raises for a failing cell: the
row then says ``status: failed`` with the one-line error, and the grid goes on. Ctrl-C and a
killed process are not caught: such a cell leaves no row and is redone on the next run.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from srprune.api import compress_model
from srprune.compare.grid import BUILTIN, Cell, GridSpec
from srprune.config import RunConfig
from srprune.data.images import ImageSet, open_image_set
from srprune.errors import SrpruneError
from srprune.measure.cost import model_cost
from srprune.models.artifacts import load_artifact
from srprune.models.srmodel import SRModel
from srprune.quality.evaluate import evaluate_model


def open_eval_set(path: str, scale: int) -> ImageSet:
    """An evaluation set: ``builtin`` (the six built-in photos) or a folder in any layout
    :func:`~srprune.data.images.open_image_set` reads (LR files are checked against the
    scale here, before any work)."""
    if path != BUILTIN and not Path(path).is_dir():
        raise SrpruneError(f"evaluation folder not found: {path}")
    return open_image_set(None if path == BUILTIN else path, scale)


def quality_of(model: SRModel, images: ImageSet, device: str) -> dict[str, Any]:
    """Means and per-image PSNR/SSIM on Y (bicubic beside them)."""
    q = evaluate_model(model, images, device=device)
    keys = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
    return {**{k: float(q[k]) for k in keys},
            "per_image": [{"name": r["name"], **{k: float(r[k]) for k in keys}}
                          for r in q["per_image"]]}


def reference_row(spec: GridSpec, model: SRModel, eval_sets: Sequence[ImageSet]) -> dict:
    """The unpruned model: its cost and its quality on every evaluation set."""
    cost = model_cost(model, spec.input_size)
    model.to(spec.device)
    quality = {name: quality_of(model, images, spec.device)
               for name, images in zip(spec.eval_names(), eval_sets)}
    model.to("cpu")
    return {"method": "unpruned", "params": cost.params, "macs": cost.macs,
            "paper_macs": cost.paper_macs, "quality": quality}


def run_cell(spec: GridSpec, cell: Cell, model_file: str | Path, artifact: str | Path,
             threads: int, source: str | None = None) -> dict[str, Any]:
    """Run ``cell`` with ``threads`` torch threads; its row, ``status`` ok or failed.

    ``source`` is what the artifact records as its origin (default: ``model_file``).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        row = _run(spec, cell, Path(model_file), Path(artifact), source or str(model_file))
    except Exception as exc:  # the grid goes on; the row carries the one-line reason
        row = failed_row(cell, error_line(exc))
    finally:
        torch.set_num_threads(previous)
    row["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    row.update(threads=threads, host=platform.node(), torch=torch.__version__)
    return row


def failed_row(cell: Cell, error: str) -> dict[str, Any]:
    return {"key": cell.key, **cell.as_dict(), "method": cell.method, "status": "failed",
            "error": error, "seconds": {}}


def error_line(exc: BaseException) -> str:
    """One line: a user error's own message, else the exception type and its first line."""
    text = " ".join(str(exc).split())
    if isinstance(exc, SrpruneError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run(spec: GridSpec, cell: Cell, model_file: Path, artifact: Path,
         source: str) -> dict[str, Any]:
    model = load_artifact(model_file, trust_import=spec.trusted_imports)
    config = RunConfig.build(**spec.run_settings(cell, artifact))
    eval_sets = [open_eval_set(path, model.scale) for path in spec.evals]
    pruned: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int, *_: Any, **__: Any) -> None:
        # fine-tuning starts on the freshly pruned model: score it then (first set only)
        if spec.eval_pruned and stage == "finetune" and done == 0 and not pruned:
            pruned.update(quality_of(model, eval_sets[0], spec.device))

    result = compress_model(model, config=config, progress=progress, source=source)
    t0 = time.perf_counter()
    model.to(spec.device)
    quality = {name: quality_of(model, images, spec.device)
               for name, images in zip(spec.eval_names(), eval_sets)}
    model.to("cpu")
    first = quality[spec.eval_names()[0]]
    no_tuning = spec.eval_pruned and not spec.finetune_steps  # then pruned = final
    summary = result.summary()
    plan_units = result.plan["units"]
    plan_original = result.plan.get("original", {})
    finetune = summary.get("finetune")
    if finetune is not None:
        finetune = {k: v for k, v in finetune.items() if k != "validation"}
        finetune["validation"] = {k: v for k, v in summary["finetune"]["validation"].items()
                                  if k != "evals"}
    return {
        "key": cell.key, **cell.as_dict(), "method": cell.method, "status": "ok",
        "error": None, "params": result.after.params, "params_before": result.before.params,
        "macs": result.after.macs, "macs_before": result.before.macs,
        "paper_macs": result.after.paper_macs, "ratio_achieved": result.ratio_achieved,
        "quality": quality,
        "psnr_pruned": pruned.get("psnr", first["psnr"] if no_tuning else None),
        "ssim_pruned": pruned.get("ssim", first["ssim"] if no_tuning else None),
        "finetune": finetune,
        "widths": {"units": list(plan_units), "kept": [int(plan_units[u]) for u in plan_units],
                   "original": [int(plan_original.get(u, plan_units[u])) for u in plan_units]},
        "seconds": {**summary["seconds"], "eval": round(time.perf_counter() - t0, 2)},
    }
