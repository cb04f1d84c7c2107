"""The table of issue 14's goal figure from the grids `benchmarks/goal_figure.sh` wrote.

  python benchmarks/goal_report.py benchmarks/results/goal-drn-t-100 [--goal 0.15]

Reads PREFIX-unpruned/, PREFIX-plain/, PREFIX-distilled/ and PREFIX-features/ (each a
`srprune compare` ``results.json``): per ratio, criterion and arm the fine-tuned PSNR per
seed, its mean and std, and the gap to the unpruned model fine-tuned for the same steps (mean
over its seeds); a cell meets the goal when its mean is within ``--goal`` dB of that.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ARMS = ("plain", "distilled", "features")


def rows(path: Path) -> list[dict]:
    data = json.loads((path / "results.json").read_text())
    return [r for r in data["rows"] if r.get("status") == "ok"]


def psnr(row: dict, evalset: str) -> float:
    return float(row["quality"][evalset]["psnr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", type=Path)
    parser.add_argument("--goal", type=float, default=0.15)
    parser.add_argument("--eval", default="builtin")
    a = parser.parse_args()
    base_rows = rows(Path(f"{a.prefix}-unpruned"))
    base = np.array([psnr(r, a.eval) for r in base_rows])
    steps = base_rows[0]["finetune"]["steps"]
    print(f"unpruned drn-t fine-tuned for {steps} steps (plain), seeds "
          f"{', '.join(str(r['seed']) for r in base_rows)}: "
          f"{', '.join(f'{p:.3f}' for p in base)}; mean {base.mean():.3f} dB\n")
    table = {arm: rows(Path(f"{a.prefix}-{arm}")) for arm in ARMS
             if Path(f"{a.prefix}-{arm}").is_dir()}
    print("| ratio | criterion | arm | PSNR per seed | mean ± std | gap to unpruned | goal |")
    print("|---|---|---|---|---:|---:|---|")
    ratios = sorted({r["ratio"] for arm in table for r in table[arm]})
    criteria = list(dict.fromkeys(r["criterion"] for arm in table for r in table[arm]))
    best: dict[float, tuple[float, str]] = {}
    for ratio in ratios:
        for criterion in criteria:
            for arm in table:
                cells = sorted((r for r in table[arm] if r["ratio"] == ratio
                                and r["criterion"] == criterion), key=lambda r: r["seed"])
                if not cells:
                    continue
                values = np.array([psnr(r, a.eval) for r in cells])
                mean = values.mean()
                std = values.std(ddof=1) if len(values) > 1 else 0.0
                gap = base.mean() - mean
                if ratio not in best or mean > best[ratio][0]:
                    best[ratio] = (mean, f"{criterion} {arm}")
                print(f"| {ratio:g} | {criterion} | {arm} | "
                      f"{', '.join(f'{v:.3f}' for v in values)} | {mean:.3f} ± {std:.3f} | "
                      f"{gap:.3f} | {'met' if gap <= a.goal else 'not met'} |")
    print()
    for ratio, (mean, what) in best.items():
        print(f"ratio {ratio:g}: best {what} {mean:.3f} dB, {base.mean() - mean:.3f} dB below "
              f"the unpruned model fine-tuned alike (goal: {a.goal} dB)")


if __name__ == "__main__":
    main()
