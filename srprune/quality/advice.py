"""What to try when a compressed model lost visible quality on the run's own evaluation."""

from __future__ import annotations

from typing import Any

#: Y-PSNR lost (dB, before -> after on ``--eval``) from which ``compress`` warns. Half a
#: decibel is where SR papers start to see differences in crops; the pruned SPAN x4 of
#: benchmarks/RESULTS.md lost 1-19 dB depending on the criterion.
LARGE_DROP_DB = 0.5

DATA_BLIND = ("l1", "random")


def quality_drop_advice(summary: dict[str, Any], limit: float = LARGE_DROP_DB) -> str | None:
    """One line naming the drop and what to try, or None when the drop is below ``limit``.

    ``summary`` is a compress report (``CompressResult.summary()``): it needs
    ``quality_before`` and ``quality_after`` (an ``--eval`` run) to say anything.
    """
    before, after = summary.get("quality_before"), summary.get("quality_after")
    if not before or not after:
        return None
    drop = float(before["psnr"]) - float(after["psnr"])
    if not drop >= limit:
        return None
    tips = []
    tune = summary.get("finetune") or {}
    criterion = summary.get("criterion")
    if criterion in DATA_BLIND:
        tips.append("--criterion cp with --data DIR (a ranking that sees the data refits the "
                    "kept channels)")
    if not tune:
        tips.append("fine-tuning: --data DIR --finetune-steps 500")
    elif (tune.get("validation") or {}).get("kept") == "start":
        tips.append(f"fine-tuning did not beat the pruned weights at lr {tune.get('lr'):g}: "
                    "a lower --finetune-lr or more --finetune-steps")
    else:
        tips.append("more --finetune-steps")
    tips.append("a smaller --ratio (or --speedup)")
    return (f"PSNR fell by {drop:.2f} dB on the evaluation images ({before['psnr']:.2f} -> "
            f"{after['psnr']:.2f} dB); try " + "; ".join(tips))
