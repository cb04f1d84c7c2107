"""Write docs/results.md, the curated headline figures, from benchmarks/results/*.json.

    python benchmarks/results_page.py            # rewrite docs/results.md, its plots and
                                                 # the README's headline table
    python benchmarks/results_page.py --check    # exit 1 if either is out of date

Every figure on the page is computed here from the raw files the benchmarks wrote, so a
re-run of a benchmark (same output path) followed by this script updates the page. Each
figure names its command, date and machine and links to its raw data (published with the
site under ``data/``); the full record of every run is the lab notebook
(benchmarks/RESULTS.md, the site's ``notebook.md``). Where an older raw file lacks a
command, date or machine field, the value below is the one the notebook recorded for it.

The plots go to docs/img/results-*.png; ``--check`` compares the markdown only (plots
differ in bytes between matplotlib versions).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"
IMG = ROOT / "docs" / "img"
README = ROOT / "README.md"  # its headline table, between the markers
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"

# Machines as the notebook describes them (the raw files only say "x86_64").
VNNI = "2-vCPU VM, AMD EPYC with AVX-512 and VNNI, onnxruntime 1.32.0, torch 2.13.0+cpu"
AVX2 = "2-vCPU VM, AVX2 without VNNI, onnxruntime 1.32.0, torch 2.13.0+cpu"
# the pruned model in each INT8 file (the files name a temporary path)
PRUNED = {"int8-drn-t-vnni.json": "drn-t, `cp` 50 %, fine-tuned",
          "int8-drn-t.json": "drn-t, `l1` 50 %, not fine-tuned"}
CRITERIA = ("l1", "random", "cp", "thinet", "dcp", "dr")


def load(name: str) -> dict | list:
    return json.loads((RESULTS / name).read_text())


def raw(*names: str) -> str:
    # relative to docs/: right on a repository browser; the site's build maps it to data/
    return ", ".join(f"[`{n}`](../benchmarks/results/{n})" for n in names)


def source(command: str, date: str, machine: str, data: str, notebook: str) -> str:
    command = " ".join(command.split())
    return (f"<small>**Command** `{command}` · **date** {date} · **machine** {machine} · "
            f"**raw data** {data} · **notebook** \"{notebook}\"</small>\n")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def grid(name: str) -> dict:
    """A ``srprune compare`` results.json: {(ratio, method): (psnr mean, psnr std)}."""
    data = load(f"{name}/results.json")
    cells = {}
    for g in data["groups"]:
        psnr = g["quality"]["builtin"]["psnr"]
        cells[(g["ratio"], g["method"])] = (psnr["mean"], psnr["std"] or 0.0)
    return {"cells": cells, "created": data["created"][:10], "command": data["command"],
            "cpus": data["machine"].get("cpus"), "verdicts": data["verdicts"]}


def plot(name: str, draw, plots: bool) -> str:
    """Draw with matplotlib (Agg) into docs/img/results-NAME.png (when ``plots``); return
    the page's link to it."""
    link = f"![{name}](img/results-{name}.png)\n"
    if not plots:
        return link
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    draw(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / f"results-{name}.png", metadata={"Software": None})
    plt.close(fig)
    return link


# --- the figures ----------------------------------------------------------------------------


def criteria(plots: bool) -> str:
    ft = grid("goal-drn-t-100-distilled")
    ref = grid("goal-drn-t-100-unpruned")["cells"][(0.0, "l1")][0]
    lines = ["## Which criterion? drn-t x4 after equal fine-tuning\n",
             "Six criteria prune the shipped drn-t x4 by 50 % and 70 %; each model is then "
             "fine-tuned for 100 distilled steps, 3 seeds per cell; Y-PSNR on the six built-in "
             f"photos. The unpruned drn-t, fine-tuned alike, scores **{ref:.3f} dB**.\n",
             "| criterion | 50 %: PSNR (dB) | 70 %: PSNR (dB) |", "|---|---:|---:|"]
    best = {r: max(CRITERIA, key=lambda c, r=r: ft["cells"][(r, c)][0]) for r in (0.5, 0.7)}
    for c in CRITERIA:
        cells = []
        for r in (0.5, 0.7):
            m, s = ft["cells"][(r, c)]
            text = f"{m:.3f} ± {s:.3f}"
            cells.append(f"**{text}**" if best[r] == c else text)
        lines.append(f"| `{c}` | {cells[0]} | {cells[1]} |")
    lines.append("")
    lines += [f"* {v['text']}" for v in ft["verdicts"]]
    lines.append("")
    def draw(ax):
        for k, r in enumerate((0.5, 0.7)):
            xs = [i + (k - 0.5) * 0.3 for i in range(len(CRITERIA))]
            ms = [ft["cells"][(r, c)][0] for c in CRITERIA]
            ss = [ft["cells"][(r, c)][1] for c in CRITERIA]
            ax.errorbar(xs, ms, yerr=ss, fmt="o", capsize=3, label=f"{r:.0%} removed")
        ax.axhline(ref, color="k", ls="--", lw=1, label="unpruned, fine-tuned alike")
        ax.set_xticks(range(len(CRITERIA)), CRITERIA)
        ax.set_ylabel("Y-PSNR, built-in photos (dB)")
        ax.set_title("drn-t x4, 100 distilled fine-tuning steps, 3 seeds")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    lines.append(plot("criteria", draw, plots))
    lines.append(source(ft["command"], ft["created"], f"{VNNI}; {ft['cpus']} CPUs",
                        raw("goal-drn-t-100-distilled/results.json",
                            "goal-drn-t-100-unpruned/results.json"),
                        "Goal figure: pruned + fine-tuned vs the unpruned model fine-tuned "
                        "alike"))
    return "\n".join(lines)


def gap() -> str:
    rows = []
    for steps, arm, label in ((100, "distilled", "output distillation"),
                              (1000, "distilled", "output distillation"),
                              (2000, "distilled", "output distillation"),
                              (2000, "features", "output + feature distillation")):
        pruned = grid(f"goal-drn-t-{steps}-{arm}")
        unpruned = grid(f"goal-drn-t-{steps}-unpruned")["cells"][(0.0, "l1")][0]
        m, s = pruned["cells"][(0.5, "cp")]
        rows.append((steps, label, m, s, unpruned, pruned["created"]))
    lines = ["## How close does fine-tuning get? `cp` at 50 % against the unpruned model\n",
             "The gap between drn-t x4 pruned by half (`cp`, distilled) and the unpruned "
             "drn-t fine-tuned for the same number of steps (3 seeds each).\n",
             "| steps | fine-tuning | pruned (dB) | unpruned, same steps (dB) | gap (dB) |",
             "|---:|---|---:|---:|---:|"]
    for steps, label, m, s, u, _ in rows:
        lines.append(f"| {steps} | {label} | {m:.3f} ± {s:.3f} | {u:.3f} | {u - m:.3f} |")
    lines.append("")
    names = [f"goal-drn-t-{n}/results.json" for n in
             ("100-distilled", "100-unpruned", "1000-distilled", "1000-unpruned",
              "2000-distilled", "2000-features", "2000-unpruned")]
    lines.append(source("bash benchmarks/goal_figure.sh N (N = 100, 1000, 2000)",
                        " to ".join(sorted({r[5] for r in rows})), VNNI, raw(*names),
                        "Goal figure, at N = 1000 and N = 2000"))
    return "\n".join(lines)


def headline_table() -> str:
    """FP32 and INT8 latency and PSNR of drn-t, pruned and not: the README's headline."""
    rows = load("latency-psnr-drn-t.json")["rows"]
    base = next(r["latency_ms"] for r in rows if r["label"] == "unpruned" and r["kind"] == "FP32")
    lines = ["| model | FP32: ms | FP32: dB | INT8: ms | INT8: dB | INT8 speed-up over unpruned "
             "FP32 |", "|---|---:|---:|---:|---:|---:|"]
    by_label: dict[str, dict] = {}
    for r in rows:
        by_label.setdefault(r["label"], {})[r["kind"]] = r
    for label, kinds in by_label.items():
        fp, i8 = kinds["FP32"], kinds["INT8"]
        lines.append(f"| {label} | {fp['latency_ms']:.1f} | {fp['psnr']:.3f} | "
                     f"{i8['latency_ms']:.1f} | {i8['psnr']:.3f} | "
                     f"{base / i8['latency_ms']:.2f}x |")
    return "\n".join(lines) + "\n"


def latency_psnr(plots: bool) -> str:
    data = load("latency-psnr-drn-t.json")
    rows = data["rows"]
    lines = ["## Latency against PSNR: prune, quantize, or both\n",
             "drn-t x4 and four pruned, fine-tuned drn-t, each as FP32 and INT8 ONNX on ONNX "
             f"Runtime, 1 thread, {data['input_size'][0]}x{data['input_size'][1]} LR, one "
             "interleaved run; Y-PSNR on the built-in photos.\n",
             headline_table()]
    def draw(ax):
        for kind, marker in (("FP32", "o"), ("INT8", "s")):
            pts = [r for r in rows if r["kind"] == kind]
            ax.scatter([r["latency_ms"] for r in pts], [r["psnr"] for r in pts],
                       marker=marker, label=kind)
            for r in pts:
                ax.annotate(r["label"], (r["latency_ms"], r["psnr"]), fontsize=7,
                            xytext=(4, 2), textcoords="offset points")
        ax.set_xlabel("ONNX Runtime latency, 1 thread (ms)")
        ax.set_ylabel("Y-PSNR, built-in photos (dB)")
        ax.set_title("drn-t x4: pruned and quantized")
        ax.legend(fontsize=8)
    lines.append(plot("latency-psnr", draw, plots))
    lines.append(source(data["command"].replace("/work/main/.venv/bin/python", "python"),
                        data["date"][:10], VNNI, raw("latency-psnr-drn-t.json"),
                        "Latency against PSNR: FP32 and INT8, pruned and not"))
    return "\n".join(lines)


def speed_range(speeds: list[float]) -> str:
    low, high = f"{min(speeds):.2f}", f"{max(speeds):.2f}"
    return f"{low}x" if low == high else f"{low}-{high}x"


def real_weights() -> str:
    """SPAN x4 with its authors' weights: srprune's arms by seeds, and the peer."""
    rows = {**load("real-span-x4-aligned.json")["rows"], **load("real-span-x4-ft2000.json")["rows"]}
    unpruned = rows["cp-0.5@500-s0"]["quality_before"]["psnr"]
    bicubic = rows["cp-0.5@500-s0"]["quality_before"]["bicubic_psnr"]
    lines = ["## Real trained weights: SPAN x4, the authors' model\n",
             "Opened from the authors' ncnn file; Y-PSNR on the six built-in photos (never "
             f"trained on; unpruned {unpruned:.2f} dB, bicubic {bicubic:.2f}); fine-tuning on "
             "27 photos, 3 held out for keep-best; speed-up measured with ORT (1 thread, 64x64 "
             "LR, interleaved with the unpruned model). Goal of issue 25: -0.10 dB at 1.5x, "
             "-0.25 dB at 2x.\n",
             "| arm | seeds | speed-up | Y-PSNR | vs unpruned |", "|---|---:|---:|---:|---:|"]
    arms = (("srprune defaults (`cp`, uniform 0.5), 500 steps", "cp-0.5@500"),
            ("srprune defaults (`cp`, uniform 0.5), 2000 steps", "cp-0.5@2000"),
            ("`--strategy latency --speedup 2 --scope all`, 2000 steps",
             "lat2@2000:scope=all"))
    means = {}
    for label, arm in arms:
        got = [r for r in rows.values() if r["arm"] == arm]
        psnr, _ = mean_std([r["quality_after"]["psnr"] for r in got])
        means[arm] = psnr
        lines.append(f"| {label} | {len(got)} | {speed_range([r['speedup'] for r in got])} | "
                     f"{psnr:.2f} | {psnr - unpruned:+.2f} |")
    peers = [load(f"tp-peer-span-x4-r0.3{suffix}.json") for suffix in ("", "-s1", "-s2")]
    psnr, _ = mean_std([p["finetuned_psnr"] for p in peers])
    lines.append(f"| Torch-Pruning 1.6 used directly (L1, ratio 0.3), 500 plain steps | "
                 f"{len(peers)} | {speed_range([p['speedup'] for p in peers])} | {psnr:.2f} | "
                 f"{psnr - unpruned:+.2f} |")
    lines.append("")
    met = [means["cp-0.5@2000"] - unpruned >= -0.10, means["lat2@2000:scope=all"] - unpruned
           >= -0.25]
    verdict = {0: "Short of the goal at both speeds", 1: "The goal is met at one speed",
               2: "The goal is met at both speeds"}[sum(met)]
    lines.append(f"{verdict}; four times the steps buy "
                 f"{means['cp-0.5@2000'] - means['cp-0.5@500']:.2f} dB. Every arm, criterion "
                 "and Real-ESRGAN's fidelity: [Real trained weights](real-models.md).\n")
    lines.append(source("python benchmarks/real_models.py --model spanx4_ch48.param --data "
                        "DIR --arms cp-0.5@500|cp-0.5@2000|lat2@2000:scope=all --seed S --json "
                        "FILE; ... --latency; python benchmarks/tp_peer.py",
                        "2026-12-07/08", "this project's 2-core AVX-512/AMX VM (Intel Xeon), "
                        "onnxruntime 1.32.0, torch 2.13.0+cpu",
                        raw("real-span-x4-aligned.json", "real-span-x4-ft2000.json",
                            "tp-peer-span-x4-r0.3.json"),
                        "Real trained weights: 2000 fine-tuning steps, and every criterion "
                        "at 500"))
    return "\n".join(lines)


def int8() -> str:
    lines = ["## INT8 on ONNX Runtime: what it costs on two CPUs\n",
             "`srprune export --int8` (static QDQ, per-channel int8 weights, uint8 "
             "activations, 32 calibration patches); the drop is Y-PSNR on the built-in photos, "
             "the speed-up is FP32 / INT8 latency in one interleaved run (1 thread, 96x96 LR).\n",
             "| CPU | model | plain PTQ: drop (dB) | speed-up | mixed precision: drop (dB) | "
             "layers in FP32 | speed-up |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, cpu in (("int8-drn-t-vnni.json", "AVX-512 VNNI"), ("int8-drn-t.json", "AVX2")):
        data = load(name)
        for m in data["models"]:
            label = m["model"] if "/" not in m["model"] else PRUNED[name]
            lat = m["latency"]
            mixed = m["mixed_uint8"]
            lines.append(f"| {cpu} | {label} | {m['ptq_uint8']['drop_db']:.3f} | "
                         f"{lat['ptq-uint8']['speedup']:.2f}x | {mixed['drop_db']:.3f} | "
                         f"{len(mixed['float_layers'])} | {lat['mixed-uint8']['speedup']:.2f}x |")
    s50 = load("int8-drn-s50-vnni.json")
    lines.append(f"| AVX-512 VNNI | drn-s50 (random weights) | {s50['drop']:.3f} | "
                 f"{s50['latency']['speedup']:.2f}x | | | |")
    lines.append("")
    vnni, avx2 = load("int8-drn-t-vnni.json"), load("int8-drn-t.json")
    lines.append("On a CPU without VNNI, 8-bit dot products accumulate in 16 bits and can "
                 "saturate: that is where mixed precision earns its keep.\n")
    lines.append(source("python benchmarks/int8.py MODEL ... --data DIR --eval builtin "
                        "--max-float 4 --out FILE; srprune export drn-s50 --int8 ... --json",
                        f"{avx2['date'][:16]} UTC (AVX2), {vnni['date'][:16]} UTC (VNNI)",
                        f"{VNNI}; {AVX2}",
                        raw("int8-drn-t-vnni.json", "int8-drn-t.json", "int8-drn-s50-vnni.json"),
                        "INT8 re-measured on an AVX-512 VNNI CPU"))
    return "\n".join(lines)


def efficiency(plots: bool) -> str:
    rows = load("efficiency-drn-s-with-depth.json")
    def label(r):
        name = Path(r["model"]).stem
        return r["model"] if name == r["model"] else name

    picked = {label(r): r for r in rows}
    lines = ["## A latency target, met as measured: DRN-S x4\n",
             "`--strategy latency --speedup X` against uniform pruning, widths only and with "
             "whole residual blocks (`--strategy-opt depth=true`): the measured speed-up and "
             "the share of the CPU's measured SGEMM rate the model reaches (roofline "
             "efficiency; the unpruned model's is the reference). ONNX Runtime, 1 thread, "
             "96x96 LR, random weights.\n",
             "| model | speed-up, measured | efficiency |", "|---|---:|---:|"]
    order = ["drn-s", "u0.5-internal", "u0.5-all", "u0.7-all", "latency-1.43",
             "latency-depth-1.43", "latency-2", "latency-depth-2", "latency-3.33",
             "latency-depth-3.33"]
    names = {"drn-s": "unpruned", "u0.5-internal": "uniform 50 %, `--scope internal`",
             "u0.5-all": "uniform 50 %, `--scope all`", "u0.7-all": "uniform 70 %, `--scope all`"}
    for key in order:
        r = picked[key]
        if key.startswith("latency"):
            target = key.rsplit("-", 1)[1]
            name = f"`latency` {target}x" + (", depth" if "depth" in key else "")
        else:
            name = names[key]
        lines.append(f"| {name} | {r['speedup']:.2f}x | {r['roofline']['efficiency']:.0%} |")
    lines.append("")
    def draw(ax):
        groups = {"uniform": [k for k in picked if k.startswith("u0")],
                  "latency, widths": [k for k in picked if k.startswith("latency-")
                                      and "depth" not in k],
                  "latency, depth": [k for k in picked if k.startswith("latency-depth")]}
        for name, keys in groups.items():
            ax.scatter([picked[k]["speedup"] for k in keys],
                       [picked[k]["roofline"]["efficiency"] for k in keys], label=name)
        ax.scatter([1.0], [picked["drn-s"]["roofline"]["efficiency"]], marker="*", s=120,
                   color="k", label="unpruned")
        ax.set_xlabel("speed-up over unpruned, measured")
        ax.set_ylabel("roofline efficiency")
        ax.set_title("DRN-S x4, ONNX Runtime, 1 thread")
        ax.legend(fontsize=8)
    lines.append(plot("efficiency", draw, plots))
    lines.append(source("OMP_NUM_THREADS=1 bash benchmarks/efficiency.sh /tmp/efficiency3 "
                        "benchmarks/results/efficiency-drn-s-with-depth.json", "2026-12-02",
                        VNNI, raw("efficiency-drn-s-with-depth.json", "efficiency-drn-s.json",
                                  "efficiency-drn-s-avx2.json"),
                        "Re-measured with whole residual blocks (depth=true)"))
    return "\n".join(lines)


def equal_speed() -> str:
    data = load("equal-speed-drn-t-1.5x-depth.json")
    arms: dict[str, list[float]] = {}
    for r in data["rows"]:
        arms.setdefault(r["arm"], []).append(r["psnr"])
    speed = {label: b["speedup"] for label, b in zip(data["bench_labels"], data["bench"])}
    lines = ["## Quality at equal speed: remove blocks, or narrow every layer?\n",
             "drn-t x4 at a 1.5x target: the `latency` strategy with whole residual blocks "
             "against the uniform models just slower and just faster than it, each fine-tuned "
             "100 steps (3 seeds).\n",
             "| model | speed-up, measured | PSNR (dB) | seeds |", "|---|---:|---:|---:|"]
    for arm, values in arms.items():
        m, s = mean_std(values)
        name = "`latency` 1.5x, depth" if arm == "latency" else f"`{arm}`"
        lines.append(f"| {name} | {speed.get(arm, float('nan')):.2f}x | {m:.3f} ± {s:.3f} | "
                     f"{len(values)} |")
    lines.append("")
    lines.append(source(data["command"].replace("/work/main/.venv/bin/python", "python"),
                        data["date"][:10], VNNI, raw("equal-speed-drn-t-1.5x-depth.json",
                                                     "equal-speed-drn-t-1.5x-depth-avx2.json"),
                        "With whole residual blocks: --strategy-opt depth=true"))
    return "\n".join(lines)


def distillation() -> str:
    data = load("distill-ab-drn-t.json")
    pairs: dict[tuple, dict[int, dict[str, float]]] = {}
    for r in data["runs"]:
        arm = "distilled" if r["distill_weight"] else "plain"
        pairs.setdefault((r["criterion"], r["ratio"]), {}).setdefault(r["seed"], {})[arm] = \
            r["psnr_after"]
    lines = ["## Distillation from the unpruned model: on by default, and why\n",
             "drn-t x4 pruned, then fine-tuned 100 steps with the DR loss alone (plain) or "
             "with L1 to the unpruned model's output added (distilled); same seeds.\n",
             "| criterion | removed | plain (dB) | distilled (dB) | gain (dB) | seeds ahead |",
             "|---|---:|---:|---:|---:|---:|"]
    for (criterion, ratio), seeds in sorted(pairs.items()):
        both = [s for s in seeds.values() if "plain" in s and "distilled" in s]
        plain = statistics.fmean(s["plain"] for s in both)
        dist = statistics.fmean(s["distilled"] for s in both)
        ahead = sum(s["distilled"] > s["plain"] for s in both)
        lines.append(f"| `{criterion}` | {ratio:.0%} | {plain:.3f} | {dist:.3f} | "
                     f"{dist - plain:+.3f} | {ahead} of {len(both)} |")
    lines.append("")
    lines.append(source("OMP_NUM_THREADS=1 python benchmarks/distill_ab.py --data "
                        "../shared/data/train --ratios 0.5 0.7 --criteria l1 --seeds 0 1 2 "
                        "--steps 100 --batch 8 --patch 24 --distill-weight 1.0 --out FILE "
                        "(and --criteria dr --ratios 0.5)", "2026-12-02",
                        "2-vCPU VM, AMD EPYC, 1 thread, shared with other jobs",
                        raw("distill-ab-drn-t.json"),
                        "Distillation from the unpruned model: A/B on drn-t x4"))
    return "\n".join(lines)


def zoo() -> str:
    data = load("zoo-table.json")
    rows = data["rows"]
    done = [r for r in rows if r.get("compressed") and "error" not in r["compressed"]]
    ok = [r for r in done if r["compressed"]["shapes_ok"]
          and r["compressed"]["round_trip"] <= 1e-4]
    lines = ["## The zoo, pruned by half\n",
             f"{len(ok)} of {len(rows)} registered architectures were pruned by half with `l1`, "
             "ran at two input sizes, exported to ONNX with parity and round-tripped as an "
             f"artifact (achieved reduction {min(r['compressed']['achieved'] for r in ok):.1%} "
             f"to {max(r['compressed']['achieved'] for r in ok):.1%}). The table per "
             "architecture is in [Models](models.md#the-zoo).\n",
             source(data["command"], "2026-12-02",
                    "2-vCPU VM, AMD EPYC, 1 thread, shared with other jobs",
                    raw("zoo-table.json"), "Every zoo architecture pruned by half")]
    return "\n".join(lines)


HEAD = """# Headline results

The figures that answer the questions users ask first: which criterion, how close to the
unpruned model, how fast, what INT8 costs. Each gives the command that measured it, the date,
the machine and a link to its raw data. The lab notebook ([notebook](notebook.md)) holds
every measurement in full, with the ones that went wrong.

!!! note "Generated"
    This page is written by `python benchmarks/results_page.py` from
    `benchmarks/results/*.json`; do not edit it by hand. Re-run a benchmark with the same
    output file, then the script, and the page follows. The test suite fails when the page and
    the data disagree.

Numbers are for these models on these machines: small CPU VMs, one ONNX Runtime thread. Run
[`srprune compare`](compare.md) on your own model before you trust a ranking.
"""


def render(plots: bool) -> str:
    parts = [HEAD, real_weights(), criteria(plots), gap(), latency_psnr(plots), int8(),
             efficiency(plots), equal_speed(), distillation(), zoo()]
    return "\n".join(p.rstrip() + "\n" for p in parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="compare with docs/results.md instead of writing it (no plots)")
    ap.add_argument("--out", type=Path, default=PAGE)
    args = ap.parse_args(argv)
    text = render(plots=not args.check)
    readme = README.read_text()
    head, rest = readme.split(BEGIN, 1)
    new_readme = f"{head}{BEGIN}\n{headline_table()}{END}{rest.split(END, 1)[1]}"
    if args.check:
        stale = [str(path) for path, want in ((args.out, text), (README, new_readme))
                 if not path.exists() or path.read_text() != want]
        if stale:
            print(f"out of date: {', '.join(stale)}: run python benchmarks/results_page.py",
                  file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    README.write_text(new_readme)
    print(f"wrote {args.out}, {IMG}/results-*.png and the headline table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
