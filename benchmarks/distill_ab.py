"""A/B: fine-tuning a pruned model with and without distillation from the unpruned one.

Every cell (criterion x ratio x seed) is pruned once per arm with the same seed, so the two
arms start from the same pruned weights and differ only in the fine-tuning loss; the budget
(steps, batch, patch) is equal. The score is Y-PSNR on the built-in evaluation photos after
fine-tuning (keep-best on the validation patches, the default). Per cell the table gives
the paired gain (distilled - plain, same seed), its mean and standard deviation, and the seed
spread (standard deviation over seeds of the plain arm). "Helps" is decided per cell: the mean
gain is positive and larger than the seed spread ("strict"), or at least larger than the
spread of the paired gains and positive in every seed ("paired"; the seed also changes the
pruning of seeded criteria such as ``dr``, which both arms share).

Results are appended to --out after each run, and runs already there are skipped, so an
interrupted A/B continues where it stopped.

Example (the figures recorded in RESULTS.md):
    OMP_NUM_THREADS=1 python benchmarks/distill_ab.py --data ../shared/data/train \
        --ratios 0.5 0.7 --criteria l1 --seeds 0 1 2 --steps 100 --batch 8 --patch 24 \
        --distill-weight 1.0 --out benchmarks/results/distill-ab-drn-t.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def run_one(args: argparse.Namespace, criterion: str, ratio: float, seed: int,
            distill: float, features: float) -> dict:
    from srprune.api import compress_model
    from srprune.models import build_model

    t0 = time.perf_counter()
    result = compress_model(
        build_model(args.model, 4), ratio, criterion=criterion, data=args.data,
        preset=args.preset, seed=seed, evaluate="builtin", finetune_steps=args.steps,
        finetune_batch=args.batch, finetune_patch=args.patch, distill_weight=distill,
        distill_features=features)
    s = result.summary()
    return {"criterion": criterion, "ratio": ratio, "seed": seed, "distill_weight": distill,
            "distill_features": features, "ratio_achieved": s["ratio_achieved"],
            "psnr_before": s["quality_before"]["psnr"], "psnr_pruned": s["quality_pruned"]["psnr"],
            "psnr_after": s["quality_after"]["psnr"], "ssim_after": s["quality_after"]["ssim"],
            "validation": s["finetune"]["validation"], "wall_seconds":
                round(time.perf_counter() - t0, 1)}


def key(row: dict) -> tuple:
    return (row["criterion"], row["ratio"], row["seed"], row["distill_weight"],
            row["distill_features"])


def table(rows: list[dict], arms: list[tuple[float, float]]) -> tuple[str, list[str]]:
    """Markdown table of the A/B and one verdict line per cell (module docstring)."""
    head = ("| criterion | ratio | arm (w_out, w_feat) | PSNR after, per seed | mean | std | "
            "paired gain vs plain, per seed | mean gain | std of gains |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines, verdicts = [], []
    cells = sorted({(r["criterion"], r["ratio"]) for r in rows})
    for criterion, ratio in cells:
        by_arm = {}
        for arm in arms:
            got = sorted((r for r in rows if (r["criterion"], r["ratio"]) == (criterion, ratio)
                          and (r["distill_weight"], r["distill_features"]) == arm),
                         key=lambda r: r["seed"])
            by_arm[arm] = {r["seed"]: r["psnr_after"] for r in got}
        plain = by_arm[arms[0]]
        spread = statistics.stdev(plain.values()) if len(plain) > 1 else float("nan")
        for arm in arms:
            psnr = by_arm[arm]
            if not psnr:
                continue
            seeds = sorted(psnr)
            gains = [psnr[s] - plain[s] for s in seeds if s in plain]
            std = statistics.stdev(psnr.values()) if len(psnr) > 1 else float("nan")
            mean_gain = statistics.mean(gains) if gains else float("nan")
            gain_std = statistics.stdev(gains) if len(gains) > 1 else float("nan")
            if arm != arms[0]:
                strict = mean_gain > 0 and mean_gain > spread
                paired = all(g > 0 for g in gains) and mean_gain > gain_std
                verdicts.append(f"{criterion} {ratio:.1f} {arm}: mean gain {mean_gain:+.3f} dB, "
                                f"seed spread {spread:.3f}, std of gains {gain_std:.3f} -> "
                                f"strict {'yes' if strict else 'no'}, paired "
                                f"{'yes' if paired else 'no'}")
            lines.append(
                f"| {criterion} | {ratio:.1f} | {arm} | "
                + ", ".join(f"{psnr[s]:.3f}" for s in seeds)
                + f" | {statistics.mean(psnr.values()):.3f} | {std:.3f} | "
                + ("-" if arm == arms[0] else ", ".join(f"{g:+.3f}" for g in gains))
                + f" | {'-' if arm == arms[0] else f'{mean_gain:+.3f}'}"
                + f" | {'-' if arm == arms[0] else f'{gain_std:.3f}'} |")
    return head + "\n".join(lines), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drn-t")
    parser.add_argument("--data", required=True)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--criteria", nargs="+", default=["l1"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=24)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--distill-weight", type=float, default=1.0)
    parser.add_argument("--distill-features", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report-only", action="store_true",
                        help="Print the table of --out without running anything.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    arms = [(0.0, 0.0), (args.distill_weight, args.distill_features)]
    done = {key(r) for r in rows}
    start = time.perf_counter()
    for criterion in args.criteria:
        for ratio in args.ratios:
            for seed in args.seeds:
                for distill, features in arms:
                    if args.report_only or (criterion, ratio, seed, distill, features) in done:
                        continue
                    row = run_one(args, criterion, ratio, seed, distill, features)
                    rows.append(row)
                    args.out.write_text(json.dumps({"settings": {
                        k: v for k, v in vars(args).items() if k not in ("out", "report_only")},
                        "runs": rows}, indent=1))
                    print(json.dumps({k: row[k] for k in ("criterion", "ratio", "seed",
                                                          "distill_weight", "psnr_pruned",
                                                          "psnr_after", "wall_seconds")}),
                          flush=True)
    text, verdicts = table(rows, arms)
    print(text)
    print("\n" + "\n".join(verdicts))
    walls = {arm: [r["wall_seconds"] for r in rows
                   if (r["distill_weight"], r["distill_features"]) == arm] for arm in arms}
    print("mean wall time per run: " + ", ".join(
        f"{arm} {statistics.mean(w):.0f} s" for arm, w in walls.items() if w)
        + f"; this invocation ran {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
