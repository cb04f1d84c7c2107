"""ONNX Runtime CPU latency of DRN-S and its compressed versions; prints markdown tables.

Groups (each timed interleaved in one process, speed-ups against the group's first model):
  ratio     DRN-S x4 vs the authors' drn-s30 / drn-s50 / drn-s70: do MACs savings become speed?
  rounding  drn-s50 as published vs every pruned width rounded up to a multiple of 8 / of 16
            (capped at the original width): do aligned widths buy speed on ORT CPU?

  python benchmarks/latency.py run --group all --threads 1 --runs 10 --warmup 2 --json a.json
  python benchmarks/latency.py spread a.json b.json      # run-to-run spread of two runs
  python benchmarks/latency.py table a.json              # re-print a saved run's tables
Latency does not depend on the weights, so models are built without pretrained weights.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import onnxruntime as ort
import torch

from srprune.measure.bench import add_roofline, benchmark
from srprune.measure.cost import model_cost
from srprune.measure.latency_table import cpu_model
from srprune.measure.roofline import available_cpus, measure_roofline
from srprune.models import build_model
from srprune.models.channel_config import CONFIG_DIR, read_widths
from srprune.models.drn import full_widths
from srprune.models.srmodel import SRModel
from srprune.models.zoo import build_drn

DRN_S = {"n_feats": 16, "n_blocks": 30}


def round_up(widths: list[int], full: list[int], multiple: int) -> list[int]:
    """Each width rounded up to ``multiple``, never above the original width."""
    return [min(math.ceil(w / multiple) * multiple, f) for w, f in zip(widths, full, strict=True)]


def group_models(group: str) -> list[tuple[str, SRModel]]:
    """The (label, model) pairs of one benchmark group, all x4."""
    if group == "ratio":
        return [(n, build_model(n, 4, pretrained=False))
                for n in ("drn-s", "drn-s30", "drn-s50", "drn-s70")]
    published = read_widths(CONFIG_DIR / "search_x4p05.txt", 4, **DRN_S).as_lines()
    full = full_widths(4, **DRN_S).as_lines()
    models = [("drn-s50", build_model("drn-s50", 4, pretrained=False))]
    for m in (8, 16):
        widths = round_up(published, full, m)
        models.append((f"drn-s50 round-up {m}", build_model("drn-s", 4, pretrained=False,
                                                            widths=widths)))
    return models


def machine() -> dict:
    """Where and when the numbers were taken."""
    cpu = cpu_model()
    return {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu, "logical_cpus": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
            "loadavg_start": list(os.getloadavg()), "onnxruntime": ort.__version__,
            "torch": torch.__version__, "python": platform.python_version(),
            "command": "python " + shlex.join(sys.argv)}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}"


def padded_macs(model: SRModel, input_size: tuple[int, int], multiple: int = 16) -> int:
    """MACs with every pruned inner width rounded up to ``multiple``.

    On AVX-512 machines ONNX Runtime's NCHWc convolutions pad output channels to blocks of 16
    (MLAS ``NchwcBlockSize``), so this is closer to the arithmetic ORT really does.
    """
    cfg = model.config
    if "widths" not in cfg:
        return model_cost(model, input_size).macs
    full = full_widths(model.scale, cfg["n_feats"], cfg["n_blocks"]).as_lines()
    padded = build_drn(model.scale, cfg["n_feats"], cfg["n_blocks"],
                       widths=round_up(list(cfg["widths"]), full, multiple), duals=False)
    return model_cost(padded, input_size).macs


def markdown(group: str, rows: list[dict]) -> str:
    """One markdown table: costs and latencies relative to the group's first model."""
    base = rows[0]
    has_roof = "roofline" in base
    head = ["model", "params", "GMACs", "MACs ratio", "MACs ratio, widths padded to 16",
            "median ms", "p10-p90 ms", "latency ratio", "speed-up", "GFLOP/s", "CPU/wall",
            "CPU-time median ms"]
    head += ["efficiency"] if has_roof else []
    lines = [f"**{group}**, {base['threads']} thread(s), {base['input_size'][0]}x"
             f"{base['input_size'][1]} LR, {base['runs']} runs + {base['warmup']} warm-up",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lat = r["latency_ms"]
        cells = [r["model"], f"{r['params']:,}", f"{r['macs'] / 1e9:.2f}",
                 ratio(r["macs"], base["macs"]), ratio(r["padded16_macs"], base["padded16_macs"]),
                 f"{lat['median']:.1f}", f"{lat['p10']:.1f}-{lat['p90']:.1f}",
                 ratio(lat["median"], base["latency_ms"]["median"]), f"{r['speedup']:.2f}x",
                 f"{r['gflops']:.1f}", f"{r['cpu_per_wall']:.2f}",
                 f"{r['cpu_time_ms']['median']:.1f}"]
        if has_roof:
            cells.append(f"{r['roofline']['efficiency']:.1%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_padded_macs(group: str, rows: list[dict]) -> None:
    """Fill ``padded16_macs`` in saved rows (older JSON files lack it)."""
    if all("padded16_macs" in r for r in rows):
        return
    size = tuple(rows[0]["input_size"])
    models = dict(group_models(group))
    for r in rows:
        r["padded16_macs"] = padded_macs(models[r["model"]], size)


def run(args: argparse.Namespace) -> dict:
    meta = machine()
    groups = ["ratio", "rounding"] if args.group == "all" else [args.group]
    roof = measure_roofline(sorted({1, available_cpus(), *args.threads})) if args.roofline else None
    results: dict[str, dict[str, list[dict]]] = {}
    for threads in args.threads:
        for group in groups:
            records = benchmark(group_models(group), tuple(args.input_size), threads=threads,
                                runs=args.runs, warmup=args.warmup, roofline=args.roofline)
            if roof is not None:
                add_roofline(records, roof)
            rows = [r.as_dict() for r in records]
            add_padded_macs(group, rows)
            results.setdefault(str(threads), {})[group] = rows
            print(markdown(group, rows) + "\n", flush=True)
    meta["loadavg_end"] = list(os.getloadavg())
    if roof is not None:
        meta["sgemm_gflops"] = roof.as_dict()["sgemm_gflops"]
        meta["sgemm_cpu_per_wall"] = roof.as_dict()["sgemm_cpu_per_wall"]
    print("```\n" + json.dumps(meta, indent=1) + "\n```")
    return {"meta": meta, "results": results}


def tables(paths: list[str]) -> None:
    """Re-print the markdown tables of saved runs."""
    for path in paths:
        data = json.loads(Path(path).read_text())
        for groups in data["results"].values():
            for group, rows in groups.items():
                add_padded_macs(group, rows)
                print(markdown(group, rows) + "\n")
        meta = data["meta"]
        print(f"{meta['date']}, {meta['cpu']}, CPUs {meta['affinity']} of "
              f"{meta['logical_cpus']}, load {meta['loadavg_start'][0]:.2f}, ORT "
              f"{meta['onnxruntime']}, SGEMM GFLOP/s {meta.get('sgemm_gflops')}\n"
              f"`{meta['command']}`\n")


def spread(paths: list[str]) -> None:
    """Wall and CPU-time medians of the same models across runs; spread = max/min - 1."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    n = range(1, len(runs) + 1)
    head = ["threads", "group", "model", *(f"run {i} ms" for i in n), "spread",
            *(f"run {i} CPU ms" for i in n), "CPU spread", "min CPU/wall"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for threads, groups in runs[0]["results"].items():
        for group, rows in groups.items():
            for i, row in enumerate(rows):
                same = [r["results"][threads][group][i] for r in runs]
                wall = [r["latency_ms"]["median"] for r in same]
                cpu = [r["cpu_time_ms"]["median"] for r in same]
                cells = [threads, group, row["model"], *(f"{m:.1f}" for m in wall),
                         f"{max(wall) / min(wall) - 1:.1%}", *(f"{m:.1f}" for m in cpu),
                         f"{max(cpu) / min(cpu) - 1:.1%}",
                         f"{min(r['cpu_per_wall'] for r in same):.2f}"]
                print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="time a group of models")
    p_run.add_argument("--group", choices=["ratio", "rounding", "all"], default="all")
    p_run.add_argument("--threads", type=int, nargs="+", default=[1])
    p_run.add_argument("--input-size", type=int, nargs=2, default=[96, 96], metavar=("H", "W"))
    p_run.add_argument("--runs", type=int, default=10)
    p_run.add_argument("--warmup", type=int, default=2)
    p_run.add_argument("--roofline", action="store_true", help="measure SGEMM peak too")
    p_run.add_argument("--json", type=Path, default=None, help="write all records here")
    p_spread = sub.add_parser("spread", help="compare medians of saved runs")
    p_spread.add_argument("files", nargs="+")
    p_table = sub.add_parser("table", help="re-print the tables of saved runs")
    p_table.add_argument("files", nargs="+")
    args = parser.parse_args()
    if args.cmd in ("spread", "table"):
        (spread if args.cmd == "spread" else tables)(args.files)
        return
    data = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
