"""Criteria and strategies compared on a trained model after the same fine-tuning budget.

Each run: prune the model (criterion x strategy x ratio, calibration from --data), evaluate,
fine-tune with the DR loss for --finetune-steps on --data, evaluate again (built-in photos).

Example (the figures in RESULTS.md):
    python benchmarks/compare_criteria.py --model drn-t --data ../shared/data/train \
        --ratios 0.3 0.5 0.7 --criteria dr l1 random --search-at 0.3 \
        --baselines-at 0.5 --finetune-steps 500 --workers 4 --device cuda --out out/compare.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch


def run_one(job: dict) -> dict:
    """One compress + fine-tune + evaluate run (own process, own seed)."""
    torch.set_num_threads(job["threads"])
    from srprune.api import compress_model
    from srprune.models import build_model

    model = build_model(job["model"], job["scale"]).to(job["device"])
    t0 = time.perf_counter()
    result = compress_model(
        model, job["ratio"], criterion=job["criterion"], strategy=job["strategy"],
        data=job["data"], preset=job["preset"], criterion_options=job.get("criterion_options"),
        seed=job["seed"], device=job["device"], finetune_steps=job["finetune_steps"],
        finetune_lr=job["finetune_lr"], evaluate="builtin",
    )
    summary = result.summary()
    summary.update({k: job[k] for k in ("model", "scale", "preset", "seed", "device")})
    summary["criterion_options"] = job.get("criterion_options", {})
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({k: summary[k] for k in ("criterion", "strategy", "ratio_requested",
                                              "ratio_achieved", "wall_seconds")}), flush=True)
    return summary


def markdown(rows: list[dict]) -> str:
    head = ("| ratio | strategy | criterion | params | achieved | PSNR pruned | PSNR tuned | "
            "SSIM tuned | prune s |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in sorted(rows, key=lambda r: (r["ratio_requested"], r["strategy"], r["criterion"])):
        qp, qa = r.get("quality_pruned", r["quality_after"]), r["quality_after"]
        lines.append(
            f"| {r['ratio_requested']:.1f} | {r['strategy']} | {r['criterion']} | "
            f"{r['params_after']:,} | {r['ratio_achieved']:.3f} | {qp['psnr']:.3f} | "
            f"{qa['psnr']:.3f} | {qa['ssim']:.4f} | {r['seconds'].get('prune', 0):.0f} |")
    first = rows[0]["quality_before"] if rows else None
    base = (f"Unpruned: PSNR {first['psnr']:.3f}, SSIM {first['ssim']:.4f}; bicubic PSNR "
            f"{first['bicubic_psnr']:.3f}.\n\n") if first else ""
    return base + head + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="drn-t")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--criteria", nargs="+", default=["dr", "l1", "random"])
    ap.add_argument("--search-at", type=float, nargs="*", default=[0.3],
                    help="ratios at which dr-search + dr is compared with uniform + dr")
    ap.add_argument("--baselines", nargs="*", default=["cp", "thinet", "dcp"])
    ap.add_argument("--baselines-at", type=float, nargs="*", default=[0.5])
    ap.add_argument("--finetune-steps", type=int, default=500)
    ap.add_argument("--finetune-lr", type=float, default=5e-4)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--criterion-options", type=json.loads, default={},
                    help='JSON options for the --criteria runs, e.g. \'{"sgd_steps": 0}\'')
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from srprune.registry import CRITERIA

    base = {k: getattr(args, k) for k in ("model", "scale", "data", "finetune_steps",
                                          "finetune_lr", "preset", "seed", "device",
                                          "threads")}
    jobs = [{**base, "ratio": r, "criterion": c, "strategy": "uniform",
             "criterion_options": args.criterion_options}
            for r in args.ratios for c in args.criteria]
    jobs += [{**base, "ratio": r, "criterion": c, "strategy": "uniform"}
             for r in args.baselines_at for c in args.baselines if c in CRITERIA.names()]
    jobs += [{**base, "ratio": r, "criterion": "dr", "strategy": "dr-search"}
             for r in args.search_at]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".rows.jsonl")  # one line per finished run, kept if cut short
    partial.write_text("")
    rows: list[dict] = []

    def keep(row: dict) -> None:
        rows.append(row)
        with partial.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for row in pool.imap_unordered(run_one, jobs):
                keep(row)
    else:
        for job in jobs:
            keep(run_one(job))
    report = {"command": " ".join(sys.argv), "started": started,
              "machine": f"{platform.machine()} {platform.processor()}",
              "device": args.device, "torch": torch.__version__, "rows": rows}
    out.write_text(json.dumps(report, indent=1))
    print(markdown(rows))


if __name__ == "__main__":
    main()
