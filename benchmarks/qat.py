"""INT8 after quantization-aware fine-tuning (QAT): the drop of ``export --int8 --qat-steps``.

For one model: FP32 export, calibration on LR patches of --data, then for each --steps value
``quantize_int8`` with a QAT job of that many steps (fresh from the same weights each time):
PTQ (+ mixed precision up to --max-float), QAT on --data, PTQ again on the tuned weights,
both drops against the original FP32 model on --eval. ``--max-drop 0`` makes QAT run
whatever PTQ reaches.

    OMP_NUM_THREADS=1 python benchmarks/qat.py drn-t --data ../shared/data/train \
        --eval builtin --max-float 0 --max-drop 0 --steps 100 300 \
        --out benchmarks/results/qat-drn-t.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from srprune.data.images import open_image_set
from srprune.deploy.calibration import calibration_inputs
from srprune.deploy.int8 import QatJob, quantize_int8
from srprune.deploy.qat import QatSettings
from srprune.io.checkpoint import write_atomic
from srprune.measure.export import check_parity, export_onnx
from srprune.measure.quantize import Int8Settings
from srprune.models import resolve_model


def run_arm(steps: int, args: argparse.Namespace, model, images, calib: list, pairs: list,
            fp32: Path, work: Path) -> dict:
    """One QAT length: the export report's numbers and the QAT section."""
    job = QatJob(model, images, QatSettings(steps, lr=args.lr, batch=args.batch,
                                            patch=args.patch))
    start = time.perf_counter()
    rep = quantize_int8(fp32, work / f"qat-{steps}.onnx", calib, pairs, model.scale,
                        args.max_drop, args.max_float, Int8Settings(args.activations), 1,
                        tuple(args.input_size), runs=args.runs, force=True, qat=job)
    qat = rep.qat or {}
    train = qat.get("train") or {}
    return {"steps": steps, "seconds_total": time.perf_counter() - start,
            "fp32_psnr": rep.fp32_quality["psnr"],
            "plain_ptq_drop_before": qat.get("plain_ptq_drop_before"),
            "plain_ptq_drop_after": qat.get("plain_ptq_drop_after"),
            "drop_before": qat.get("drop_before"), "drop_after": qat.get("drop_after"),
            "kept": qat.get("kept"), "final_drop": rep.drop, "target_met": rep.target_met,
            "torch_psnr_before": train.get("torch_psnr_before"),
            "torch_psnr_after": train.get("torch_psnr_after"),
            "weight_change": train.get("weight_change"),
            "train_seconds": train.get("seconds"), "loss_first": train.get("loss_first"),
            "loss_last": train.get("loss_last"),
            "latency_ratio": rep.latency["ratio"], "cpu_ratio": rep.latency["cpu_ratio"],
            "verdict": rep.verdict(), "report": rep.as_dict()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--eval", default="builtin")
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--activations", choices=["uint8", "int8"], default="uint8")
    ap.add_argument("--input-size", type=int, nargs=2, default=[96, 96])
    ap.add_argument("--calib-patches", type=int, default=32)
    ap.add_argument("--calib-seed", type=int, default=0)
    ap.add_argument("--max-drop", type=float, default=0.1)
    ap.add_argument("--max-float", type=int, default=0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model, 4)
    pairs = list(open_image_set(None if args.eval == "builtin" else args.eval, model.scale))
    images = open_image_set(args.data, model.scale)
    calib = calibration_inputs(args.data, model.scale, args.calib_patches, seed=args.calib_seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="qat-bench-") as tmp:
        work = Path(tmp)
        fp32 = work / "fp32.onnx"
        export_onnx(model, fp32, tuple(args.input_size), force=True, name=args.model)
        parity = check_parity(model, fp32, tuple(args.input_size), name=args.model)
        for steps in args.steps:
            rows.append(run_arm(steps, args, model, images, calib, pairs, fp32, work))
            r = rows[-1]
            if r["drop_after"] is None:
                print(f"{args.model}: QAT not run ({r['verdict']})", flush=True)
                continue
            print(f"{args.model} QAT {steps} steps: PTQ+MP drop {r['drop_before']:.3f} dB -> "
                  f"{r['drop_after']:.3f} dB after QAT (plain PTQ {r['plain_ptq_drop_before']:.3f}"
                  f" -> {r['plain_ptq_drop_after']:.3f}); kept {r['kept']}; torch fake-quant "
                  f"PSNR {r['torch_psnr_before']:.2f} -> {r['torch_psnr_after']:.2f} dB; "
                  f"train {r['train_seconds']:.0f} s, total {r['seconds_total']:.0f} s",
                  flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.machine(),
              "processor": platform.processor(), "onnxruntime": ort.__version__,
              "torch": torch.__version__, "threads": 1, "fp32_parity_max_abs_diff":
              parity.max_abs_diff, "settings": vars(args), "arms": rows}
    write_atomic(args.out, lambda t: t.write_text(json.dumps(result, indent=2) + "\n"), True)


if __name__ == "__main__":
    main()
