"""The grid's side-by-side crops: HR, bicubic, the unpruned model and every compressed one.

One model per method and ratio (the first seed that finished) on the first images of the
first evaluation set; regions where the models differ most (:mod:`srprune.quality.crops`).
A model that cannot be loaded or run leaves the crops out with a note, never the report.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srprune.data.images import ImageSet
from srprune.models.artifacts import load_artifact
from srprune.models.srmodel import SRModel
from srprune.quality.crops import crops_section, image_set_crops
from srprune.quality.evaluate import sr_function

IMAGES = 3
REGIONS = 2


def grid_crops(model: SRModel, rows: Sequence[dict[str, Any]], images: ImageSet,
               eval_name: str, trusted_imports: Sequence[str] = (),
               progress: Callable[..., None] | None = None) -> str:
    """The HTML section of crops (an explanatory paragraph when there is nothing to show)."""
    chosen: dict[tuple[float, str], dict[str, Any]] = {}
    for row in rows:
        if row.get("status") == "ok" and row.get("artifact") and Path(row["artifact"]).is_file():
            chosen.setdefault((float(row["ratio"]), row["method"]), row)
    report = progress or (lambda *_a, **_k: None)
    report("crops", 0, len(chosen) + 1)
    try:
        model.net.eval()
        runs = [("unpruned", sr_function(model))]
        for i, ((ratio, method), row) in enumerate(sorted(chosen.items()), 1):
            pruned = load_artifact(row["artifact"], trust_import=tuple(trusted_imports))
            pruned.net.eval()
            runs.append((f"{method} @ {ratio:g} (seed {row['seed']})", sr_function(pruned)))
            report("crops", i, len(chosen) + 1)
        sets = image_set_crops(runs, images, model.scale, IMAGES, REGIONS)
    except Exception as exc:  # the crops are an extra: the tables and plots still go out
        from srprune.compare.cell import error_line

        report("crops", len(chosen) + 1, len(chosen) + 1)
        return (f'<h2>Side by side</h2><p class="note">Crops not shown: '
                f"{html.escape(error_line(exc))}</p>")
    report("crops", len(chosen) + 1, len(chosen) + 1)
    note = (f"The first {min(IMAGES, len(images))} images of {eval_name}: HR, bicubic, the "
            "unpruned model and one compressed model per method and ratio, at the regions "
            "where the models differ most; PSNR on Y against HR. Click a picture to enlarge it.")
    return crops_section(sets, "Side by side", note)
