"""Wall time of compression on DRN-S x4 (or any model): l1, dr and dr-search at one ratio.

Example (the figures in RESULTS.md):
    python benchmarks/compress_speed.py --model drn-s --scale 4 --ratio 0.5 \
        --data ../shared/data/train --threads 2 --preset default --profile out/profile.txt
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import sys
import time
from datetime import datetime, timezone

import torch

RUNS = (("l1", "uniform"), ("dr", "uniform"), ("l1", "dr-search"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="drn-s")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--data", required=True)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="subset: l1 dr dr-search")
    ap.add_argument("--profile", default=None, help="write the dr run's cProfile top 30 here")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from srprune.api import compress_model
    from srprune.models import build_model

    rows = []
    for criterion, strategy in RUNS:
        label = strategy if strategy == "dr-search" else criterion
        if args.only and label not in args.only:
            continue
        model = build_model(args.model, args.scale)
        profiler = cProfile.Profile() if args.profile and criterion == "dr" else None
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        result = compress_model(
            model, args.ratio, criterion=criterion, strategy=strategy, data=args.data,
            preset=args.preset)
        if profiler:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
            with open(args.profile, "w") as f:
                f.write(text.getvalue())
        wall = time.perf_counter() - t0
        rows.append({"run": label, "criterion": criterion, "strategy": strategy,
                     "wall_s": round(wall, 1), **{f"{k}_s": round(v, 1)
                                                   for k, v in result.seconds.items()},
                     "ratio_achieved": round(result.ratio_achieved, 4)})
        print(json.dumps(rows[-1]), flush=True)
    meta = {"command": " ".join(sys.argv), "date": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "machine": platform.processor() or platform.machine(),
        "threads": args.threads, "preset": args.preset, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=1)
    print("| run | wall s | graph s | search s | prune s | ratio achieved |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['wall_s']} | {r.get('graph_s', 0)} | {r.get('search_s', 0)} | "
              f"{r.get('prune_s', 0)} | {r['ratio_achieved']} |")


if __name__ == "__main__":
    main()
