"""Where a pruned model's efficiency goes: ORT's profile of each zoo model, unpruned and pruned.

Issue 26, item 4 asks every zoo architecture pruned by ``l1`` at 0.5 to keep 90 % of the
unpruned model's efficiency (speed-up x MACs ratio >= 0.9). ``aligned_speed.py`` measures it;
this script says why a model misses and whether any width choice could reach the goal. For
each row of ``aligned-speed.json`` it profiles the unpruned and the aligned ONNX models with
ONNX Runtime's own profiler (:func:`srprune.measure.profile.kernel_events`, the latency
protocol's session, 1 thread) and splits the kernel time per run into

* ``mac``: the kernels that do the MACs the ratio counts (convolutions, MatMul, Gemm);
* ``scaled``: other kernels writing feature tensors (adds, attention, reorders, ...);
* ``fixed``: kernels writing image-sized tensors (the bicubic skip, DepthToSpace to RGB).

From the split (``r`` = MACs ratio pruned / unpruned, ``t`` = kernel ms per run):

* ``mac kernels``: ``r x mac_u / mac_p``, how well the MAC kernels' time follows their MACs
  (below 1: the narrower kernels run fewer GMAC/s);
* ``ceiling, kernels ideal``: ``r x t_u / (r x mac_u + scaled_p + fixed_p)``, the efficiency
  if every MAC kernel ran at the unpruned model's speed per MAC and the rest stayed as pruned;
* ``ceiling, any widths``: ``r x t_u / (r x (mac_u + scaled_u) + fixed_u)``, the efficiency if
  even the feature-tensor work shrank with the MACs: an upper bound for every plan at this MACs
  ratio, since no pruning changes the fixed work;
* ``excess``: the pruned model's time beyond its MACs' share (``t_p - r x t_u``; zero at
  efficiency 1.0) part by part (MAC kernels, feature-tensor work, fixed work), each as a
  fraction of the unpruned time ``t_u``: efficiency = ``r / (r + sum of the three)``.

The ``width sweep`` part times chains of 3x3 convolutions at widths from 8 to 128 (64x64
input, 1 thread, interleaved) and reports their GMAC/s: what ORT's kernels give a narrower
layer on this CPU, whatever a pruner does.

    python benchmarks/efficiency_split.py --work /tmp/srprune-aligned-speed   # + JSON
    python benchmarks/efficiency_split.py --only esrgan span --runs-budget 5
    python benchmarks/efficiency_split.py --render      # the markdown tables from the JSON
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from srprune.measure.latency import time_interleaved
from srprune.measure.latency_table import cpu_model
from srprune.measure.profile import CONV_OPS, kernel_events, op_name, time_split
from srprune.measure.session import make_session

ROOT = Path(__file__).resolve().parent.parent
ALIGNED_JSON = ROOT / "benchmarks" / "results" / "aligned-speed.json"
JSON_OUT = ROOT / "benchmarks" / "results" / "efficiency-split.json"
MAC_OPS = (*CONV_OPS, "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "ConvTranspose")
GOAL = 0.9
SWEEP_WIDTHS = (8, 16, 24, 32, 48, 64, 96, 128)
SWEEP_DEPTH = 6
PARTS = ("mac", "scaled", "fixed")
ROUNDS = 3  # profiles per model, alternating unpruned and pruned
PART_NAMES = {"mac": "MAC kernels: narrower ones run fewer GMAC/s",
              "scaled": "feature-tensor work that shrinks less than the MACs",
              "fixed": "fixed work"}


def split(path: str, size: int, runs: int) -> dict[str, float]:
    """Kernel ms per run of ``path``: MAC kernels, feature-tensor work, fixed work."""
    events = kernel_events(path, (size, size), threads=1, runs=runs, warmup=1)
    macs = [e for e in events if op_name(e) in MAC_OPS]
    rest = time_split([e for e in events if op_name(e) not in MAC_OPS], runs)
    mac_ms = sum(e.get("dur", 0) for e in macs) / 1000.0 / runs
    return {"mac": round(mac_ms, 3), "scaled": round(rest.width_scaled, 3),
            "fixed": round(rest.fixed, 3)}


def interleaved_splits(paths: dict[str, Path], size: int, runs: int) -> dict[str, dict]:
    """:func:`split` of each model, ``ROUNDS`` times in turn (``runs`` runs each), the
    median of each part: a machine that slows down between two profiles shifts all of them."""
    rounds: dict[str, list[dict[str, float]]] = {v: [] for v in paths}
    for _ in range(ROUNDS):
        for variant, path in paths.items():
            rounds[variant].append(split(str(path), size, runs))
    return {v: {part: round(float(np.median([r[part] for r in got])), 3) for part in PARTS}
            for v, got in rounds.items()}


def analyse(row: dict[str, Any], unpruned: dict[str, float],
            pruned: dict[str, float]) -> dict[str, Any]:
    """The ratios and ceilings of the module docstring for one model, and where the pruned
    model's time beyond its MACs' share (``t_p - r x t_u``) goes, part by part."""
    r = row["variants"]["aligned"]["macs_ratio"]
    t_u, t_p = sum(unpruned.values()), sum(pruned.values())
    kernels_ideal = r * t_u / (r * unpruned["mac"] + pruned["scaled"] + pruned["fixed"])
    any_widths = r * t_u / (r * (unpruned["mac"] + unpruned["scaled"]) + unpruned["fixed"])
    excess = {part: round((pruned[part] - r * unpruned[part]) / t_u, 4) for part in PARTS}
    efficiency = r * t_u / t_p
    timed = row["variants"]["aligned"]["efficiency"]
    if min(efficiency, timed) >= GOAL:
        why = "-"
    elif any_widths < GOAL:
        why = "fixed work: no plan at this MACs ratio reaches 0.9"
    else:
        why = PART_NAMES[max(excess, key=lambda p: excess[p])]
    return {"macs_ratio": r, "unpruned": unpruned, "pruned": pruned,
            "non_mac_share": round(1 - unpruned["mac"] / t_u, 4),
            "efficiency_profile": round(efficiency, 4), "efficiency_measured": timed,
            "mac_kernels": round(r * unpruned["mac"] / pruned["mac"], 4),
            "excess": excess,
            "ceiling_kernels_ideal": round(kernels_ideal, 4),
            "ceiling_any_widths": round(any_widths, 4), "limit": why,
            "scope": row["variants"]["aligned"]["scope"]}


def conv_chain(width: int, depth: int, folder: Path) -> Path:
    """An ONNX chain of ``depth`` 3x3 convs (``width`` -> ``width``, ReLU between)."""
    rng = np.random.default_rng(width)
    nodes, inits, name = [], [], "x"
    for i in range(depth):
        w = (rng.standard_normal((width, width, 3, 3)) * (2 / (9 * width)) ** 0.5)
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [name, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1] * 4),
                  helper.make_node("Relu", [f"c{i}"], [f"y{i}"])]
        name = f"y{i}"
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width, 64, 64])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, width, 64, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / f"chain-{width}.onnx"
    onnx.save(model, path)
    return path


def width_sweep(runs: int) -> list[dict[str, Any]]:
    """GMAC/s of 3x3 conv chains at each width, timed interleaved (1 thread, 64x64)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = [conv_chain(w, SWEEP_DEPTH, Path(folder)) for w in SWEEP_WIDTHS]
        sessions = [make_session(p, threads=1) for p in paths]
        rng = np.random.default_rng(0)
        feeds = [{"x": rng.random((1, w, 64, 64), dtype=np.float32)} for w in SWEEP_WIDTHS]
        timings = time_interleaved([lambda s=s, f=f: s.run(None, f)
                                    for s, f in zip(sessions, feeds, strict=True)], runs, 2)
    rows = []
    for w, wall, cpu in zip(SWEEP_WIDTHS, timings.wall_ms, timings.cpu_ms, strict=True):
        macs = SWEEP_DEPTH * w * w * 9 * 64 * 64
        cpu_ms = float(np.median(cpu))
        rows.append({"width": w, "ms": round(float(np.median(wall)), 4),
                     "cpu_ms": round(cpu_ms, 4), "gmacs": round(macs / cpu_ms / 1e6, 2)})
    top = next(r["gmacs"] for r in rows if r["width"] == 64)
    for r in rows:
        r["vs_64"] = round(r["gmacs"] / top, 3)
    return rows


def markdown(data: dict[str, Any]) -> str:
    """The two tables: per model, and the width sweep."""
    lines = ["| model | scope | MACs ratio | non-MAC share (unpruned) | MAC kernels | "
             "eff. (profile) | eff. (timed) | excess: MAC / feature / fixed | "
             "ceiling: kernels ideal | ceiling: any widths | what limits it |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, a in data["models"].items():
        x = a["excess"]
        lines.append(
            f"| {name} | {a['scope']} | {a['macs_ratio']:.3f} | {a['non_mac_share']:.1%} | "
            f"{a['mac_kernels']:.2f} | {a['efficiency_profile']:.3f} | "
            f"{a['efficiency_measured']:.3f} | {x['mac']:+.1%} / {x['scaled']:+.1%} / "
            f"{x['fixed']:+.1%} | {a['ceiling_kernels_ideal']:.3f} | "
            f"{a['ceiling_any_widths']:.3f} | {a['limit']} |")
    if data.get("sweep"):
        lines += ["", "| width (3x3, in = out) | ms per chain (CPU) | GMAC/s | vs width 64 |",
                  "| ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['width']} | {r['cpu_ms']:.3f} | {r['gmacs']:.1f} | {r['vs_64']:.2f} |"
                  for r in data["sweep"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aligned-json", default=str(ALIGNED_JSON))
    ap.add_argument("--work", default="/tmp/srprune-aligned-speed",
                    help="the ONNX files aligned_speed.py wrote (NAME-unpruned/aligned.onnx)")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--runs-budget", type=float, default=8.0,
                    help="seconds of profiled runs per model and variant (2..10 runs "
                         "in each of 3 rounds)")
    ap.add_argument("--sweep-runs", type=int, default=30)
    ap.add_argument("--json", default=str(JSON_OUT))
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.json)
    if args.render:
        print(markdown(json.loads(out.read_text())), end="")
        return 0
    aligned = json.loads(Path(args.aligned_json).read_text())
    rows = [r for r in aligned["rows"] if "timing" in r
            and (args.only is None or r["name"] in args.only)]
    data: dict[str, Any] = json.loads(out.read_text()) if out.exists() and args.only else {}
    data.update({"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
                 "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                             "load_average": [round(x, 2) for x in os.getloadavg()]},
                 "size": aligned["size"], "threads": 1,
                 "command": " ".join(["python benchmarks/efficiency_split.py",
                                      *(argv or sys.argv[1:])])})
    data.setdefault("models", {})
    for row in rows:
        paths = {v: Path(args.work) / f"{row['name']}-{v}.onnx" for v in ("unpruned", "aligned")}
        if not all(p.exists() for p in paths.values()):
            print(f"{row['name']}: no ONNX files in {args.work} (run aligned_speed.py "
                  f"--work {args.work} first); skipped", file=sys.stderr)
            continue
        runs = max(2, min(10, int(args.runs_budget * 1e3 / ROUNDS
                                  / max(1.0, row["unpruned_ms"]))))
        parts = interleaved_splits(paths, aligned["size"], runs)
        data["models"][row["name"]] = {**analyse(row, parts["unpruned"], parts["aligned"]),
                                       "runs": runs}
        a = data["models"][row["name"]]
        print(f"{row['name']}: eff {a['efficiency_profile']:.3f} (timed "
              f"{a['efficiency_measured']:.3f}), MAC kernels {a['mac_kernels']:.2f}, ceilings "
              f"{a['ceiling_kernels_ideal']:.3f} / {a['ceiling_any_widths']:.3f}: {a['limit']}",
              file=sys.stderr, flush=True)
        out.write_text(json.dumps(data, indent=1) + "\n")
    if args.sweep_runs > 0:
        data["sweep"] = width_sweep(args.sweep_runs)
        out.write_text(json.dumps(data, indent=1) + "\n")
    print(markdown(data), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
