"""Pruned models as fast as their MACs say: exact widths against widths on ORT's NCHWc block.

For every zoo architecture (the README zoo table's rows: x4 where it has one, random weights at
the published configuration), prune by ``l1`` at ``--ratio`` (default scope) twice: with exact
widths (``round_to=1``) and with the default widths (``round_to="auto"``: multiples of ONNX
Runtime's NCHWc channel block on this CPU). Export the unpruned and both pruned models to ONNX
and time the three interleaved in one run (srprune's latency protocol:
:func:`srprune.measure.latency.ort_latency`, ``--threads`` threads, ``--size`` LR input),
medians. A row whose timing looks disturbed (the process got less than ``--min-cpu`` of a core
while timing, or a spread p90/p10 above ``--max-spread``) is timed again, up to ``--retries``
times, and the quietest attempt is kept (all attempts are in the JSON).

Reported per model and variant: MACs ratio (pruned / unpruned at the input size), latency
ratio, speed-up, and efficiency = speed-up x MACs ratio (1.0: as fast as the MACs say; the
unpruned model's GMAC/s is 1.0). Goal (issue 26, item 4): the default widths' latency ratio is
at most the MACs ratio / 0.9 (efficiency >= 0.9), and ESRGAN at least 1.7x faster. Wall-clock
medians decide; process-CPU-time medians are reported beside them (less sensitive to a shared
machine at one thread).

    python benchmarks/aligned_speed.py                       # all, JSON + docs/speed.md
    python benchmarks/aligned_speed.py --only esrgan span    # some (merged into the JSON)
    python benchmarks/aligned_speed.py --retime              # time the --work ONNX files again
    python benchmarks/aligned_speed.py --render              # the page from the JSON only
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch

from srprune.measure.cost import model_cost
from srprune.measure.export import export_onnx
from srprune.measure.latency import ort_latency
from srprune.measure.latency_table import cpu_model
from srprune.measure.nchwc import nchwc_alignment, nchwc_block
from srprune.models import model_spec
from srprune.prune.engine import compress
from srprune.registry import MODELS

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "benchmarks" / "results" / "aligned-speed.json"
DOCS_OUT = ROOT / "docs" / "speed.md"
VARIANTS = {"exact": {"round_to": 1}, "aligned": {}}  # aligned: the default (auto)
GOAL_EFFICIENCY = 0.9
ESRGAN_SPEEDUP = 1.7


def zoo_names() -> list[str]:
    """The zoo table's architectures (the compressed DRN-S configs share DRN-S's structure)."""
    return [n for n in MODELS.names()
            if not (n.startswith("drn-s") and n != "drn-s") and n != "testnet"]


def prepare(name: str, ratio: float, size: int, folder: Path) -> dict[str, Any]:
    """Build, prune both ways and export; the row without timings."""
    spec = model_spec(name)
    scale = 4 if 4 in spec.scales else spec.scales[0]
    torch.manual_seed(0)
    base = spec.build(spec.config_for(scale)).eval()
    before = model_cost(base, (size, size))
    row: dict[str, Any] = {"name": name, "scale": scale, "params": before.params,
                           "macs": before.macs, "variants": {}}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"unpruned": str(export_onnx(base, folder / f"{name}-unpruned.onnx",
                                         (size, size)).path)}
    for variant, options in VARIANTS.items():
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = compress(model, ratio, criterion="l1", strategy_options=dict(options),
                              input_size=(size, size))
        seconds = time.perf_counter() - t0
        report = result.strategy_report or {}
        widths = Counter(result.plan["units"].values())
        row["variants"][variant] = {
            "ratio_achieved": round(result.ratio_achieved, 4), "scope": result.scope,
            "macs": result.after.macs, "macs_ratio": result.after.macs / before.macs,
            "round_to": report.get("round_to", options.get("round_to")),
            "widths": {str(w): c for w, c in sorted(widths.items(), reverse=True)},
            "compress_s": round(seconds, 1)}
        paths[variant] = str(export_onnx(model, folder / f"{name}-{variant}.onnx",
                                         (size, size)).path)
    row["paths"] = paths
    return row


def quietness(results: list[Any]) -> float:
    """The least CPU share any of the models got while timed (1.0: a core each call)."""
    return min(r.stats.cpu_per_wall or 0.0 for r in results)


def spread(results: list[Any]) -> float:
    return max(r.stats.p90 / r.stats.p10 for r in results)


def time_row(row: dict[str, Any], size: int, threads: int, budget_s: float, min_runs: int,
             retries: int, min_cpu: float, max_spread: float) -> None:
    """Time unpruned, exact and aligned interleaved; retry a disturbed run, keep the quietest."""
    names = ["unpruned", *VARIANTS]
    paths = [row["paths"][n] for n in names]
    probe = ort_latency(paths[:1], (size, size), threads=threads, runs=1, warmup=1)
    one_ms = probe[0].stats.median
    runs = max(min_runs, min(31, int(budget_s * 1e3 / (2.2 * one_ms))))
    attempts = []
    best = None
    for _ in range(1 + retries):
        results = ort_latency(paths, (size, size), names=names, threads=threads, runs=runs,
                              warmup=1)
        attempt = {"runs": runs, "cpu_per_wall": round(quietness(results), 3),
                   "spread": round(spread(results), 3),
                   "median_ms": {r.name: round(r.stats.median, 3) for r in results},
                   "cpu_median_ms": {r.name: round(r.cpu_stats.median, 3) for r in results}}
        attempts.append(attempt)
        if best is None or attempt["cpu_per_wall"] > best[0]["cpu_per_wall"]:
            best = (attempt, results)
        if attempt["cpu_per_wall"] >= min_cpu and attempt["spread"] <= max_spread:
            break
    assert best is not None
    chosen, results = best
    by = {r.name: r for r in results}
    row["timing"] = {"runs": runs, "attempts": attempts, "kept": attempts.index(chosen),
                     "cpu_per_wall": chosen["cpu_per_wall"], "spread": chosen["spread"]}
    row["unpruned_ms"] = round(by["unpruned"].stats.median, 3)
    row["unpruned_cpu_ms"] = round(by["unpruned"].cpu_stats.median, 3)
    for variant in VARIANTS:
        v = row["variants"][variant]
        for key, base, mine in (
                ("", by["unpruned"].stats.median, by[variant].stats.median),
                ("cpu_", by["unpruned"].cpu_stats.median, by[variant].cpu_stats.median)):
            v[f"{key}ms"] = round(mine, 3)
            v[f"{key}latency_ratio"] = round(mine / base, 4)
            v[f"{key}speedup"] = round(base / mine, 4)
            v[f"{key}efficiency"] = round(base / mine * v["macs_ratio"], 4)
        v["macs_ratio"] = round(v["macs_ratio"], 4)
    aligned = row["variants"]["aligned"]
    row["goal"] = aligned["efficiency"] >= GOAL_EFFICIENCY and (
        row["name"] != "esrgan" or aligned["speedup"] >= ESRGAN_SPEEDUP)
    row["goal_cpu"] = aligned["cpu_efficiency"] >= GOAL_EFFICIENCY and (
        row["name"] != "esrgan" or aligned["cpu_speedup"] >= ESRGAN_SPEEDUP)


def cpu_flags() -> str:
    """The widest x86 vector extension /proc/cpuinfo lists (what sets ORT's NCHWc block)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"


def machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "vector": cpu_flags(), "cores": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__, "nchwc_block": nchwc_block(),
            "nchwc_alignment": nchwc_alignment(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def markdown(data: dict[str, Any], split: dict[str, Any] | None = None) -> str:
    """The docs page: how it was measured, the table, the verdict; ``split`` (the JSON of
    ``efficiency_split.py``) adds where the misses lose their time."""
    m, rows = data["machine"], [r for r in data["rows"] if "timing" in r]
    met = [r["name"] for r in rows if r["goal"]]
    lines = [
        "# Pruned models as fast as their MACs say", "",
        "A pruned model is only worth its MACs if the runtime runs its narrower layers as fast "
        "per MAC as the unpruned ones. ONNX Runtime's CPU convolutions work on channel blocks "
        f"(NCHWc; {m['nchwc_block']} channels on this CPU): a width off the block is padded up "
        "to it, and a conv reading a width the blocked kernels refuse (here: above 16 and not "
        f"a multiple of {m['nchwc_alignment']}) falls back to the slower NCHW path, together "
        "with every conv after it. So `srprune compress` keeps widths on the block by default "
        "(`--round-to` auto; `--round-to 1`: exact widths). Units no wider than the block stay "
        "whole; the rounding error is carried from unit to unit of the same width, so the "
        "achieved ratio stays within 0.02 of `--ratio`; where the block cannot get there, "
        "halved multiples down to the accepted width are tried, then exact widths (the "
        "`round to` column says what was used).", "",
        f"Measured {data['date']} on **{m['cpu']}** ({m.get('vector', '?')}, {m['cores']} "
        "cores, shared with other "
        f"jobs: load average {m['load_average'][0]} when the run started), ONNX Runtime "
        f"{m['onnxruntime']}, torch {m['torch']}; {data['threads']} thread, "
        f"{data['size']}x{data['size']} LR input, every architecture x4 where it has one, "
        f"random weights at its published configuration, `l1` at {data['ratio']:g} (default "
        "scope). Unpruned, exact and aligned models timed interleaved in one run per model "
        "(srprune's latency protocol, medians); a disturbed run was repeated and the quietest "
        "kept. Command:", "", f"    {data['command']}", "",
        "MACs and latency are pruned / unpruned; efficiency = speed-up x MACs ratio (1.0: as "
        "fast as the MACs say). Goal: aligned efficiency >= 0.9, and ESRGAN >= 1.7x. "
        "`cpu eff.`: the same from process CPU time (less sensitive to other jobs).", "",
        "| model | unpruned ms | round to | ratio | MACs | exact: latency | exact: eff. | "
        "aligned: latency | speed-up | eff. | cpu eff. | goal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        e, a = r["variants"]["exact"], r["variants"]["aligned"]
        lines.append(
            f"| {r['name']} x{r['scale']} | {r['unpruned_ms']:.1f} | {a['round_to']} | "
            f"{a['ratio_achieved']:.3f} | {a['macs_ratio']:.3f} | {e['latency_ratio']:.3f} | "
            f"{e['efficiency']:.3f} | {a['latency_ratio']:.3f} | {a['speedup']:.2f}x | "
            f"{a['efficiency']:.3f} | {a['cpu_efficiency']:.3f} | "
            f"{'met' if r['goal'] else '**missed**'} |")
    missing = [r["name"] for r in data["rows"] if "timing" not in r]
    esrgan = next((r for r in rows if r["name"] == "esrgan"), None)
    lines += ["", f"Goal met by {len(met)} of {len(rows)} architectures"
              + (f"; not measured: {', '.join(missing)}" if missing else "") + "."
              + (f" ESRGAN: {esrgan['variants']['aligned']['speedup']:.2f}x faster (exact "
                 f"widths: {esrgan['variants']['exact']['speedup']:.2f}x), efficiency "
                 f"{esrgan['variants']['aligned']['efficiency']:.3f}." if esrgan else "")]
    if data.get("notes"):
        lines += ["", *data["notes"]]
    if split is not None:
        lines += ["", *split_section(split)]
    return "\n".join(lines) + "\n"


def split_section(split: dict[str, Any]) -> list[str]:
    """The page's account of the misses: ORT's profiles split by ``efficiency_split.py``."""
    spec = importlib.util.spec_from_file_location(
        "efficiency_split", Path(__file__).with_name("efficiency_split.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    split_table = module.markdown
    m = split["machine"]
    return [
        "## Where the misses lose their time", "",
        "ONNX Runtime's own profiler, run on the unpruned and aligned models of the table "
        "(the same ONNX files), splits each model's kernel time into MAC kernels (convs, "
        "MatMul, Gemm), other work on feature tensors (adds, attention, layout reorders) and "
        "fixed work on image-sized tensors (the bicubic skip, DepthToSpace to RGB). `MAC "
        "kernels`: MACs ratio x unpruned / pruned MAC-kernel time (1.0: the pruned kernels "
        "run as many GMAC/s as the unpruned ones). Two ceilings bound what any width choice "
        "could give: `kernels ideal` if every MAC kernel kept the unpruned GMAC/s and the "
        "rest stayed as measured; `any widths` if even the feature-tensor work shrank with "
        "the MACs (only the fixed work stays): no plan at this MACs ratio can exceed it. The "
        "second table times chains of six 3x3 convs (in = out width, 64x64, 1 thread, "
        "interleaved): the GMAC/s ORT's kernels give each width on this CPU.", "",
        f"Measured {split['date']} on **{m['cpu']}** ({m['cores']} cores, load average "
        f"{m['load_average'][0]} at the start); command:", "",
        f"    {split['command']}", "",
        *split_table(split).splitlines(),
        *([""] + split["notes"] if split.get("notes") else [])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="these architectures only")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--size", type=int, default=64, help="LR input side")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds of timed runs per model and attempt (runs 5..31)")
    ap.add_argument("--min-runs", type=int, default=5)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--min-cpu", type=float, default=0.8)
    ap.add_argument("--max-spread", type=float, default=1.35)
    ap.add_argument("--work", default="/tmp/srprune-aligned-speed", help="ONNX files")
    ap.add_argument("--json", default=str(JSON_OUT))
    ap.add_argument("--docs", default=str(DOCS_OUT))
    ap.add_argument("--render", action="store_true", help="write the page from the JSON")
    ap.add_argument("--retime", action="store_true",
                    help="time the JSON's rows again from the ONNX files left in --work")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.json)
    old = json.loads(out.read_text()) if out.exists() else {}
    if args.render:
        split_json = out.with_name("efficiency-split.json")
        split = json.loads(split_json.read_text()) if split_json.exists() else None
        Path(args.docs).write_text(markdown(old, split))
        return 0
    names = args.only or zoo_names()
    unknown = [n for n in names if n not in MODELS.names()]
    if unknown:
        raise SystemExit(f"error: unknown model {unknown[0]!r}")
    command = "python benchmarks/aligned_speed.py" + (
        f" --only {' '.join(names)}" if args.only else "")
    data = {"command": command, "date": dt.date.today().isoformat(), "ratio": args.ratio,
            "size": args.size, "threads": args.threads, "machine": machine(),
            "rows": [r for r in old.get("rows", []) if r["name"] not in names]
            if args.only else [], "notes": old.get("notes", [])}
    if args.only and old.get("command"):
        data["command"] = old["command"]  # the full run's command; these rows re-timed
        data["retimed"] = sorted(set(old.get("retimed", [])) | set(names))
    rows = []
    if args.retime:  # the pruned models of the JSON's run, timed again (a quieter machine)
        data.update({k: old[k] for k in ("command", "date", "ratio", "size", "threads")})
        data["retimed"] = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
                           "first_run_machine": old["machine"], "previous": {
                               r["name"]: r.get("timing") for r in old["rows"]}}
        for row in old["rows"]:
            if row["name"] in names and "error" not in row:
                row["paths"] = {v: str(Path(args.work) / f"{row['name']}-{v}.onnx")
                                for v in ("unpruned", *VARIANTS)}
                rows.append(row)
        names = []
    for name in names:
        t0 = time.perf_counter()
        try:
            rows.append(prepare(name, args.ratio, args.size, Path(args.work)))
        except Exception as exc:  # a row that fails is reported, the others go on
            rows.append({"name": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
        print(f"prepared {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)
    for row in rows:
        if "error" in row:
            continue
        time_row(row, args.size, args.threads, args.budget, args.min_runs, args.retries,
                 args.min_cpu, args.max_spread)
        a = row["variants"]["aligned"]
        print(f"{row['name']}: {row['unpruned_ms']:.1f} ms, aligned x{a['speedup']:.2f} "
              f"eff {a['efficiency']:.2f} (cpu {a['cpu_efficiency']:.2f}), exact eff "
              f"{row['variants']['exact']['efficiency']:.2f}, cpu/wall "
              f"{row['timing']['cpu_per_wall']}", file=sys.stderr, flush=True)
        row.pop("paths", None)
        data["rows"].append(row)
        order = {n: i for i, n in enumerate(zoo_names())}
        data["rows"].sort(key=lambda r: order.get(r["name"], math.inf))
        out.write_text(json.dumps(data, indent=1) + "\n")
    data["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    data["rows"] += [r for r in rows if "error" in r]
    out.write_text(json.dumps(data, indent=1) + "\n")
    Path(args.docs).write_text(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
