"""INT8 on ONNX Runtime: plain PTQ vs sensitivity-guided mixed precision, quality and latency.

For each model: FP32 export; calibration on LR patches of --data; ``quantize_int8`` (plain
PTQ, per-layer sensitivity, greedy FP32 layers until the drop is at most --max-drop or
--max-float layers); plain PTQ re-made with the same calibration (uint8 and int8
activations) and judged on the same images; then FP32, plain PTQ (uint8, int8) and mixed
precision timed in one interleaved ORT run.

    python benchmarks/int8.py drn-t /tmp/drn-t-50.srp --data ../shared/data/train \
        --eval builtin --out benchmarks/results/int8-drn-t.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from srprune.data.images import open_image_set
from srprune.deploy.calibration import calibration_inputs
from srprune.deploy.int8 import Judge, quantize_int8
from srprune.io.checkpoint import write_atomic
from srprune.measure.export import check_parity, export_onnx
from srprune.measure.latency import ort_latency
from srprune.measure.quantize import Int8Quantizer, Int8Settings
from srprune.models import resolve_model


def bench_model(spec: str, args: argparse.Namespace, pairs: list, work: Path) -> dict:
    model = resolve_model(spec, 4)
    fp32 = work / "fp32.onnx"
    export_onnx(model, fp32, tuple(args.input_size), force=True, name=spec)
    parity = check_parity(model, fp32, tuple(args.input_size), name=spec).max_abs_diff
    calib = calibration_inputs(args.data, model.scale, args.calib_patches)
    start = time.perf_counter()
    mixed = work / "mixed.onnx"
    report = quantize_int8(fp32, mixed, calib, pairs, model.scale, args.max_drop,
                           args.max_float, Int8Settings("uint8"), 1, tuple(args.input_size),
                           runs=args.runs, force=True)
    seconds = time.perf_counter() - start
    judge = Judge.of(fp32, pairs, model.scale, 1)
    fp32_psnr = judge.psnr_hr(judge.reference)
    plain = {}
    for act in ("uint8", "int8"):
        (work / act).mkdir()
        quantizer = Int8Quantizer(fp32, calib, work / act, Int8Settings(act))
        path = quantizer.quantize(work / f"plain-{act}.onnx")
        psnr = judge.psnr_hr(judge.outputs(path))
        plain[act] = {"path": path, "psnr": psnr, "drop_db": fp32_psnr - psnr}
    names = ["fp32", "ptq-uint8", "ptq-int8", "mixed-uint8"]
    timed = ort_latency([fp32, plain["uint8"]["path"], plain["int8"]["path"], mixed],
                        tuple(args.input_size), names, 1, args.runs, args.warmup)
    latency = {t.name: {"median_ms": t.stats.median, "ratio_vs_fp32": 1.0 / t.speedup,
                        "speedup": t.speedup, "cpu_per_wall": t.stats.cpu_per_wall,
                        "cpu_median_ms": t.cpu_stats.median if t.cpu_stats else None}
               for t in timed}
    return {
        "model": spec, "fp32_parity_max_abs_diff": parity, "fp32_psnr": fp32_psnr,
        "ptq_uint8": {"psnr": plain["uint8"]["psnr"], "drop_db": plain["uint8"]["drop_db"]},
        "ptq_int8": {"psnr": plain["int8"]["psnr"], "drop_db": plain["int8"]["drop_db"]},
        "mixed_uint8": {"psnr": report.int8_quality["psnr"], "drop_db": report.drop,
                        "float_layers": report.float_layers, "float_nodes": report.float_nodes,
                        "target_met": report.target_met,
                        "verdict": report.verdict()},
        "latency": latency, "export_report": report.as_dict(), "int8_seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--eval", default="builtin")
    ap.add_argument("--input-size", type=int, nargs=2, default=[96, 96])
    ap.add_argument("--calib-patches", type=int, default=32)
    ap.add_argument("--max-drop", type=float, default=0.1)
    ap.add_argument("--max-float", type=int, default=4)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pairs = list(open_image_set(None if args.eval == "builtin" else args.eval, 4))
    rows = []
    for spec in args.models:
        with tempfile.TemporaryDirectory(prefix="int8-bench-") as tmp:
            rows.append(bench_model(spec, args, pairs, Path(tmp)))
        r = rows[-1]
        print(f"{spec}: FP32 {r['fp32_psnr']:.3f} dB; PTQ uint8 drop "
              f"{r['ptq_uint8']['drop_db']:.3f} dB, int8 drop {r['ptq_int8']['drop_db']:.3f} "
              f"dB; mixed drop {r['mixed_uint8']['drop_db']:.3f} dB with "
              f"{len(r['mixed_uint8']['float_layers'])} FP32 layers; latency ratio vs FP32: "
              + ", ".join(f"{k} {v['ratio_vs_fp32']:.3f}" for k, v in r["latency"].items()),
              flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.machine(),
              "onnxruntime": ort.__version__, "threads": 1, "input_size": args.input_size,
              "settings": vars(args), "models": rows}
    write_atomic(args.out, lambda t: t.write_text(json.dumps(result, indent=2) + "\n"), True)


if __name__ == "__main__":
    main()
