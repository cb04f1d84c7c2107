"""Train the shipped drn-t reference weights with the dual-regression loss on CPU.

Example (the run behind srprune/weights/drn-t-x4.pt, see RESULTS.md):
    taskset -c 0 python benchmarks/train_reference.py --data ../shared/data/train \
        --scale 4 --steps 5000 --lr 2e-3 --threads 1 --eval-every 500 \
        --out srprune/weights/drn-t-x4.pt --log out/train/drn-t-x4.json \
        --checkpoint out/train/drn-t-x4.ckpt
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from srprune.data.images import PatchSampler, builtin_eval_set, open_image_set
from srprune.io.checkpoint import save_checkpoint
from srprune.models import build_model
from srprune.quality.evaluate import evaluate_model
from srprune.training.trainer import TrainConfig, Trainer, weights_payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of HR training photos")
    ap.add_argument("--model", default="drn-t")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=32, help="LR patch size")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dual-weight", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--out", required=True, help="weights file to write")
    ap.add_argument("--log", required=True, help="JSON log (losses, evaluations, timing)")
    ap.add_argument("--checkpoint", default=None, help="resumable checkpoint path")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.scale, pretrained=False)
    sampler = PatchSampler(open_image_set(args.data, args.scale), args.scale, args.patch,
                           args.batch, seed=args.seed)
    config = TrainConfig(steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
                         dual_weight=args.dual_weight, seed=args.seed, device=args.device)
    trainer = Trainer(model, sampler, config)
    if args.resume and args.checkpoint and Path(args.checkpoint).exists():
        trainer.resume(args.checkpoint)
    eval_set = builtin_eval_set(args.scale)

    def evaluate(m):
        r = evaluate_model(m, eval_set, device=args.device)
        gain = r["psnr"] - r["bicubic_psnr"]
        print(f"step {trainer.step}: {trainer.elapsed / 60:.1f} min  PSNR {r['psnr']:.3f} "
              f"(bicubic {r['bicubic_psnr']:.3f}, gain {gain:+.3f} dB)  SSIM {r['ssim']:.4f}",
              flush=True)
        return {k: r[k] for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}

    def on_step(step, losses):
        if step % 50 == 0:
            print(f"step {step} loss {losses['loss']:.3f} primal {losses['primal']:.3f} "
                  f"dual {losses['dual']:.3f}  {trainer.elapsed:.0f}s", flush=True)

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    log = trainer.run(checkpoint=args.checkpoint, on_step=on_step, evaluate=evaluate,
                      eval_every=args.eval_every)
    meta = {
        "model": args.model, "scale": args.scale, "trained_on": str(args.data),
        "config": vars(args), "train_seconds": round(trainer.elapsed, 1),
        "final_eval": log.evals[-1] if log.evals else None, "started": started,
        "machine": f"{platform.processor() or platform.machine()}, threads {args.threads}",
        "command": " ".join(sys.argv),
        "label": "CPU-trained reference (srprune), not the authors' weights",
    }
    save_checkpoint(weights_payload(trainer.model, meta), args.out, force=args.force)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    Path(args.log).write_text(json.dumps({"meta": meta, "log": log.__dict__,
                                          "wall_seconds": time.perf_counter() - t0}, indent=1))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
