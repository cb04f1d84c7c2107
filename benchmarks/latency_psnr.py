"""Latency against PSNR of deployable files: FP32 and INT8 ONNX of pruned, fine-tuned models.

For each MODEL (name or artifact) with a LABEL: ``srprune export`` to FP32 ONNX and to INT8
(``--int8 --data --eval``: PTQ with sensitivity-guided mixed precision, its report gives
the PSNR of both), then every file in ONE interleaved ``srprune bench`` run; a markdown
table and a plot (``--plot``).

  python benchmarks/latency_psnr.py drn-t=unpruned /tmp/cp50.srp="cp 50 %" ... \
      --data ../shared/data/train --out benchmarks/results/latency-psnr-drn-t.json \
      --plot benchmarks/results/latency-psnr-drn-t.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from saved_run import run_or_report

SRPRUNE = str(Path(sys.executable).with_name("srprune"))


def srprune(*args: str) -> dict | list:
    done = subprocess.run([SRPRUNE, *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"srprune {shlex.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def run(a: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="latency-psnr-"))
    rows, files = [], []
    for i, spec in enumerate(a.models):
        model, _, label = spec.partition("=")
        fp32, int8 = work / f"m{i}-fp32.onnx", work / f"m{i}-int8.onnx"
        srprune("export", model, "--scale", str(a.scale), "--onnx", str(fp32))
        rep = srprune("export", model, "--scale", str(a.scale), "--onnx", str(int8), "--int8",
                      "--data", a.data, "--eval", a.eval, "--max-drop", str(a.max_drop),
                      "--max-float", str(a.max_float), "--runs", "2")
        for kind, path, quality in (("FP32", fp32, rep["fp32_quality"]),
                                    ("INT8", int8, rep["int8_quality"])):
            rows.append({"label": label or model, "model": model, "kind": kind,
                         "psnr": quality["psnr"], "ssim": quality["ssim"],
                         "float_layers": rep["float_layers"] if kind == "INT8" else None})
            files.append(str(path))
        print(f"{label or model}: FP32 {rep['fp32_quality']['psnr']:.3f}, INT8 "
              f"{rep['int8_quality']['psnr']:.3f} dB", flush=True)
    bench = srprune("bench", *files, "--scale", str(a.scale), "--threads", str(a.threads),
                    "--input-size", *map(str, a.input_size), "--runs", str(a.runs))
    for row, b in zip(rows, bench, strict=True):
        row.update(latency_ms=b["latency_ms"]["median"], p10=b["latency_ms"]["p10"],
                   p90=b["latency_ms"]["p90"], cpu_per_wall=b["cpu_per_wall"])
    return {"command": shlex.join([sys.executable, *sys.argv]),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "threads": a.threads, "input_size": list(a.input_size), "runs": a.runs,
            "rows": rows}


def report(data: dict) -> None:
    base = data["rows"][0]["latency_ms"]
    print("| model | format | Y-PSNR dB | SSIM | median ms | p10–p90 ms | speed-up vs first |"
          " FP32 layers |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in data["rows"]:
        layers = "-" if r["float_layers"] is None else (len(r["float_layers"]))
        print(f"| {r['label']} | {r['kind']} | {r['psnr']:.3f} | {r['ssim']:.4f} | "
              f"{r['latency_ms']:.1f} | {r['p10']:.1f}–{r['p90']:.1f} | "
              f"{base / r['latency_ms']:.2f}x | {layers} |")


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker in (("FP32", "o"), ("INT8", "s")):
        rows = [r for r in data["rows"] if r["kind"] == kind]
        ax.scatter([r["latency_ms"] for r in rows], [r["psnr"] for r in rows], marker=marker,
                   label=kind, zorder=3)
        for r in rows:
            ax.annotate(r["label"], (r["latency_ms"], r["psnr"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    labels = dict.fromkeys(r["label"] for r in data["rows"])
    for label in labels:
        pair = [r for r in data["rows"] if r["label"] == label]
        ax.plot([r["latency_ms"] for r in pair], [r["psnr"] for r in pair], color="0.7",
                lw=0.8, zorder=1)
    ax.set_xlabel(f"ONNX Runtime CPU latency, ms ({data['threads']} thread, "
                  f"{data['input_size'][0]}x{data['input_size'][1]} LR)")
    ax.set_ylabel("Y-PSNR on the built-in photos, dB")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="MODEL[=LABEL]")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--data", default="../shared/data/train")
    parser.add_argument("--eval", default="builtin")
    parser.add_argument("--max-drop", type=float, default=0.1)
    parser.add_argument("--max-float", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input-size", type=int, nargs=2, default=(96, 96))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--report", type=Path, help="Tables (and --plot) of a saved run.")
    a = parser.parse_args()
    data = run_or_report(a.report, a.out, lambda: run(a), report)
    if a.plot:
        plot(data, a.plot)


if __name__ == "__main__":
    main()
