"""Where ONNX Runtime CPU spends its time in SR models: a per-operator profile.

Each model is exported to ONNX (as ``srprune bench`` does), run in a session with the
latency protocol's settings (graph optimizations on: ORT rewrites aligned convolutions to
its blocked NCHWc layout and inserts layout reorders) and ORT's own profiler on, for
``--warmup`` + ``--runs`` runs. The per-node kernel times of the timed runs are summed by
the operator ORT ran (``NchwcConv``: blocked conv; ``Conv``/``FusedConv``: plain NCHW conv;
``ReorderInput``/``ReorderOutput``: layout changes; ...), and every conv node is listed
with its channel counts, whether it ran blocked, its time and its achieved GFLOP/s.

  python benchmarks/ort_profile.py drn-s /tmp/s50.srp --scale 4 --threads 1 \
      --input-size 96 96 --runs 3 --out benchmarks/results/ort-profile.json
  python benchmarks/ort_profile.py --report benchmarks/results/ort-profile.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from saved_run import run_or_report

from srprune.measure.export import export_onnx
from srprune.measure.latency_table import cpu_model
from srprune.measure.profile import CONV_OPS, kernel_events, op_name
from srprune.models import resolve_model


def conv_macs(event: dict) -> tuple[int, int, int, float]:
    """(c_in, c_out, groups-free kernel area, MACs) of a conv event from its shapes."""
    args = event.get("args", {})
    inputs = args.get("input_type_shape", [])
    outputs = args.get("output_type_shape", [])
    x = next(iter(inputs[0].values())) if inputs else []
    w = next(iter(inputs[1].values())) if len(inputs) > 1 else []
    y = next(iter(outputs[0].values())) if outputs else []
    if len(w) < 4 or len(y) < 4:
        return 0, 0, 0, 0.0
    c_out, c_in_per_group, kh, kw = w[:4]
    c_in = x[1] if len(x) > 1 else c_in_per_group
    spatial = int(np.prod(y[2:4]))  # ORT reports blocked tensors by their NCHW shape
    return int(c_in), int(c_out), int(kh * kw), float(c_out * c_in_per_group * kh * kw
                                                        * spatial)


def summarise(label: str, events: list[dict], runs: int) -> dict:
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    convs: dict[str, dict] = {}
    for e in events:
        op = op_name(e)
        by_op[op] += e["dur"] / 1000.0 / runs
        count[op] += 1
        if op in CONV_OPS:
            node = e["name"][: -len("_kernel_time")]
            c_in, c_out, k, macs = conv_macs(e)
            row = convs.setdefault(node, {"node": node, "op": op, "c_in": c_in, "c_out": c_out,
                                          "k": k, "macs": macs, "ms": 0.0})
            row["ms"] += e["dur"] / 1000.0 / runs
    total = sum(by_op.values())
    for row in convs.values():
        row["gflops"] = 2 * row["macs"] / (row["ms"] * 1e6) if row["ms"] > 0 else None
    return {"model": label, "total_ms": total,
            "ops": {op: {"ms": ms, "share": ms / total, "nodes": count[op] // runs}
                    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "convs": sorted(convs.values(), key=lambda r: -r["ms"])}


def run(args: argparse.Namespace) -> dict:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for i, spec in enumerate(args.models):
            model = resolve_model(spec, args.scale)
            path = export_onnx(model, Path(folder) / f"m{i}.onnx", tuple(args.input_size)).path
            onnx.checker.check_model(str(path))
            events = kernel_events(path, tuple(args.input_size), args.threads, args.runs,
                                   args.warmup)
            results.append(summarise(spec, events, args.runs))
            print(f"{spec}: {results[-1]['total_ms']:.1f} ms of kernels per run", flush=True)
    return {"command": shlex.join([sys.executable, *sys.argv]),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "onnxruntime": ort.__version__,
                        "load_average": os.getloadavg()},
            "threads": args.threads, "input_size": list(args.input_size), "runs": args.runs,
            "results": results}


def report(data: dict) -> None:
    ops = sorted({op for r in data["results"] for op in r["ops"]},
                 key=lambda op: -max(r["ops"].get(op, {}).get("share", 0)
                                     for r in data["results"]))
    print("| model | kernels ms | " + " | ".join(ops) + " |")
    print("|---|---:|" + "---:|" * len(ops))
    for r in data["results"]:
        cells = []
        for op in ops:
            o = r["ops"].get(op)
            cells.append(f"{o['ms']:.1f} ({100 * o['share']:.1f} %, {o['nodes']})" if o else "-")
        print(f"| {r['model']} | {r['total_ms']:.1f} | " + " | ".join(cells) + " |")
    print()
    print("| model | conv op | convs | MACs G | ms | GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in data["results"]:
        groups: dict[str, list[dict]] = defaultdict(list)
        for c in r["convs"]:
            groups[c["op"]].append(c)
        for op, rows in sorted(groups.items()):
            macs = sum(c["macs"] for c in rows)
            ms = sum(c["ms"] for c in rows)
            print(f"| {r['model']} | {op} | {len(rows)} | {macs / 1e9:.2f} | {ms:.1f} | "
                  f"{2 * macs / (ms * 1e6):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input-size", type=int, nargs=2, default=(96, 96))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", type=Path, help="Print the tables of a saved run.")
    args = parser.parse_args()
    run_or_report(args.report, args.out, lambda: run(args), report)


if __name__ == "__main__":
    main()
