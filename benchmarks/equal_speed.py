"""Quality at equal speed: the ``latency`` strategy against ``uniform`` after equal fine-tuning.

1. ``srprune compress`` with ``--strategy latency --speedup X`` (criterion ``l1``, no
   fine-tuning yet): the latency model.
2. ``uniform`` plans (``l1``, scope internal) at ``--ratios``, pruned without fine-tuning,
   timed in ONE interleaved ``srprune bench`` run together with the unpruned and the latency
   model; the uniform ratio whose median latency is closest to the latency model's is the
   one compared ("the same measured latency").
3. Both plans are pruned again and fine-tuned with the same recipe for every seed
   (``srprune compress --finetune-steps N --seed S``; the latency plan through
   ``--strategy from-file``, so every seed gets the architecture measured in step 1), scored
   on ``--eval``. A plan that removes whole residual blocks (``--latency-opt depth=true``)
   is replayed with its removed blocks.

  python benchmarks/equal_speed.py drn-t --weights srprune/weights/drn-t-x4.pt \
      --data ../shared/data/train --speedup 2.0 --seeds 0 1 2 --steps 100 \
      --out benchmarks/results/equal-speed-drn-t.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from saved_run import run_or_report

SRPRUNE = [str(Path(sys.executable).with_name("srprune"))]


def srprune(*args: str) -> dict | list:
    """Run the CLI with --json; its parsed output (stderr passes through on failure)."""
    done = subprocess.run([*SRPRUNE, *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"srprune {shlex.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def plan_of(artifact: Path) -> dict:
    """The widths plan stored in an artifact (``--strategy from-file`` reads it back)."""
    from srprune.models import resolve_model

    return resolve_model(str(artifact)).plan


def model_args(a: argparse.Namespace) -> list[str]:
    return [a.model, "--scale", str(a.scale), *(["--weights", a.weights] if a.weights else [])]


def recipe(a: argparse.Namespace, seed: int) -> list[str]:
    return ["--data", a.data, "--preset", "fast", "--eval", a.eval, "--seed", str(seed),
            "--finetune-steps", str(a.steps), "--finetune-batch", str(a.batch),
            "--finetune-patch", str(a.patch)]


def latency_args(a: argparse.Namespace) -> list[str]:
    return ["--strategy", "latency", "--speedup", str(a.speedup), "--scope", a.latency_scope,
            "--threads", str(a.threads), "--input-size", *map(str, a.input_size),
            *[arg for opt in a.latency_opt for arg in ("--strategy-opt", opt)],
            "--allow-miss"]  # a missed target is reported in the row, not an abort


def run(a: argparse.Namespace) -> dict:
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    lat_path = work / "latency.srp"
    lat = srprune("compress", *model_args(a), *latency_args(a), "--data", a.data, "--preset",
                  "fast", "--out", str(lat_path), "--force")
    uniform_paths = []
    for ratio in a.ratios:
        path = work / f"uniform-{ratio}.srp"
        srprune("compress", *model_args(a), "--ratio", str(ratio), "--data", a.data,
                "--preset", "fast", "--out", str(path), "--force")
        uniform_paths.append(path)
    bench = srprune("bench", a.model, str(lat_path), *map(str, uniform_paths), "--scale",
                    str(a.scale), "--threads", str(a.threads), "--input-size",
                    *map(str, a.input_size), "--runs", str(a.runs), "--roofline")
    medians = [b["latency_ms"]["median"] for b in bench]
    lat_ms = medians[1]
    pick = int(np.argmin([abs(m - lat_ms) for m in medians[2:]]))
    ratio = a.ratios[pick]
    arms = [("uniform", ratio)]
    if a.uniform == "bracket":  # the nearest uniform model slower and the nearest faster
        timed = list(zip(medians[2:], a.ratios, strict=True))
        slower = [r for m, r in sorted(timed) if m >= lat_ms][:1]
        faster = [r for m, r in sorted(timed, reverse=True) if m < lat_ms][:1]
        arms = [(f"uniform {r}", r) for r in slower + faster]
    # the latency plan is measured once: every seed fine-tunes that same architecture
    plan = work / "latency-plan.json"
    plan.write_text(json.dumps(plan_of(lat_path)))
    latency_arm = ["--strategy", "from-file", "--plan", str(plan), "--scope", a.latency_scope]
    rows = []
    for seed in a.seeds:
        for arm, extra in [("latency", latency_arm),
                           *[(label, ["--ratio", str(r)]) for label, r in arms]]:
            path = work / f"{arm.replace(' ', '-')}-tuned-s{seed}.srp"
            out = srprune("compress", *model_args(a), *extra, *recipe(a, seed), "--out",
                          str(path), "--force")
            rows.append({"arm": arm, "seed": seed, "psnr": out["quality_after"]["psnr"],
                         "artifact": str(path),
                         "ssim": out["quality_after"]["ssim"],
                         "params": out["params_after"], "macs": out["macs_after"],
                         "strategy_report": out.get("strategy_report")})
            print(f"{arm} seed {seed}: {rows[-1]['psnr']:.3f} dB", flush=True)
    return {"command": shlex.join([sys.executable, *sys.argv]),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "load_average": os.getloadavg()},
            "latency_compress": lat, "bench": bench,
            "bench_labels": ["unpruned", "latency", *[f"uniform {r}" for r in a.ratios]],
            "matched_ratio": ratio, "uniform_arms": [label for label, _ in arms], "rows": rows}


def report(data: dict) -> None:
    print("| model | params | GMACs | median ms | speed-up | efficiency |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, b in zip(data["bench_labels"], data["bench"], strict=True):
        eff = b.get("roofline", {}).get("efficiency")
        print(f"| {label} | {b['params']:,} | {b['macs'] / 1e9:.2f} | "
              f"{b['latency_ms']['median']:.1f} | {b['speedup']:.2f}x | "
              f"{'-' if eff is None else f'{100 * eff:.1f} %'} |")
    print(f"\nuniform ratio matched to the latency model: {data['matched_ratio']}\n")
    print("| arm | params | PSNR per seed | mean | std |")
    print("|---|---:|---|---:|---:|")
    arms = list(dict.fromkeys(r["arm"] for r in data["rows"]))
    for arm in arms:
        rows = [r for r in data["rows"] if r["arm"] == arm]
        if not rows:
            continue
        psnr = np.array([r["psnr"] for r in rows])
        print(f"| {arm} | {rows[0]['params']:,} | {', '.join(f'{p:.3f}' for p in psnr)} | "
              f"{psnr.mean():.3f} | {psnr.std(ddof=1) if len(psnr) > 1 else 0:.3f} |")
    lat = {r["seed"]: r["psnr"] for r in data["rows"] if r["arm"] == "latency"}
    for arm in arms[1:]:
        uni = {r["seed"]: r["psnr"] for r in data["rows"] if r["arm"] == arm}
        gains = [lat[s] - uni[s] for s in lat if s in uni]
        if gains:
            print(f"\npaired gain latency - {arm}: {', '.join(f'{g:+.3f}' for g in gains)} "
                  f"(mean {np.mean(gains):+.3f} dB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="drn-t")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--weights")
    parser.add_argument("--data", default="../shared/data/train")
    parser.add_argument("--eval", default="builtin")
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--latency-scope", choices=["internal", "all"], default="all")
    parser.add_argument("--latency-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="An option of the latency strategy (e.g. depth=true).")
    parser.add_argument("--ratios", type=float, nargs="+",
                        default=[0.5, 0.6, 0.65, 0.7, 0.75, 0.8])
    parser.add_argument("--uniform", choices=["matched", "bracket"], default="matched",
                        help="Fine-tune the uniform ratio closest in latency, or the nearest "
                             "slower and the nearest faster one.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input-size", type=int, nargs=2, default=(96, 96))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/equal-speed"),
                        help="Folder for the artifacts (kept: fine-tuned ones are reused).")
    parser.add_argument("--report", type=Path, help="Print the tables of a saved run.")
    a = parser.parse_args()
    run_or_report(a.report, a.out, lambda: run(a), report)


if __name__ == "__main__":
    main()
