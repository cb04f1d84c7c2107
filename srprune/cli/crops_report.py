"""``srprune compress --report FILE``: the run's numbers and side-by-side crops in one page.

The page shows params, MACs and quality before and after, then, for the first evaluation
images, crops of HR, bicubic, the unpruned and the compressed model at the regions where the
two models differ most, each with its PSNR (Y) against HR. Self-contained: every picture is a
base64 PNG inside the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srprune.errors import SrpruneError

IMAGES = 3  # evaluation images shown
REGIONS = 2  # crops per image


def check_report(path: str, eval_data: str | None, force: bool) -> None:
    """Before any work: --report needs --eval (the ground truth) and a writable file."""
    from srprune.io.checkpoint import check_writable

    if eval_data is None:
        raise SrpruneError("--report shows crops of evaluation images: pass --eval builtin "
                           "or --eval DIR with it")
    check_writable(path, force)


def compress_report(path: str, summary: dict[str, Any], unpruned: Any, pruned: Any,
                    eval_data: str, device: str, force: bool,
                    progress: Any = None) -> Path:
    """Write the page for a finished ``compress`` run (atomic, no overwrite unless
    ``force``)."""
    from srprune.data.images import open_image_set
    from srprune.io.checkpoint import write_atomic
    from srprune.quality.crops import crops_section, image_set_crops, page
    from srprune.quality.evaluate import sr_function

    images = open_image_set(None if eval_data == "builtin" else eval_data, pruned.scale)
    if progress is not None:
        progress("crops", 0, 1)
    runs = []
    for label, model in (("unpruned", unpruned), ("compressed", pruned)):
        model.net.eval()
        runs.append((label, sr_function(model.to(device), device)))
    sets = image_set_crops(runs, images, pruned.scale, IMAGES, REGIONS)
    if progress is not None:
        progress("crops", 1, 1)
    title = f"srprune compress: {summary['model']} -> {summary['out']}"
    note = (f"{summary['criterion']}, {summary['strategy']}, scope {summary['scope']}; "
            f"evaluation images: {eval_data}. Crops where the unpruned and compressed models "
            "differ most; PSNR on Y against HR. Click a picture to enlarge it.")
    body = [_numbers(summary), crops_section(sets, "Side by side", note)]
    text = page(title, body)
    return write_atomic(path, lambda tmp: tmp.write_text(text), force)


def _numbers(s: dict[str, Any]) -> str:
    from srprune.quality.crops import table_html

    rows = []
    for label, key in (("params", "params"), ("MACs", "macs")):
        b, a = s[f"{key}_before"], s[f"{key}_after"]
        rows.append([label, f"{b:,}", f"{a:,}", f"{a / b:.3f}"])
    qb, qa = s.get("quality_before"), s.get("quality_after")
    if qb and qa:
        for key in ("psnr", "ssim"):
            rows.append([f"{key.upper()} (Y)", f"{qb[key]:.4f}", f"{qa[key]:.4f}",
                         f"{qa[key] - qb[key]:+.4f}"])
        rows.append(["bicubic PSNR", f"{qb['bicubic_psnr']:.4f}", "", ""])
    return table_html(["", "before", "after", "after/before"], rows)
