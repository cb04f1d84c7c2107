"""Compress a DRN with a data-driven criterion, save it, reload it and score it.

    python examples/compress_drn.py --criterion thinet --data /path/to/hr/images
    python examples/compress_drn.py --tiny          # seconds: drn-t, built-in photos, crops

Without ``--data`` the calibration patches come from the six photos bundled with
scikit-image. The report shows parameters, MACs and PSNR/SSIM (Y channel) before and after.
No fine-tuning is done here (see ``srprune train``).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

import srprune
from srprune.data.images import ImageSet, PatchSampler, builtin_eval_set, open_image_set
from srprune.models import build_model
from srprune.models.artifacts import save_artifact
from srprune.prune.engine import compress
from srprune.quality.evaluate import evaluate_model


def calibration(data: str | None, scale: int, batches: int, batch: int, patch: int) -> list:
    images = open_image_set(data, scale) if data else builtin_eval_set(scale)
    sampler = PatchSampler(images, scale, patch, batch, seed=0)
    return [sampler.next_batch() for _ in range(batches)]


def eval_set(scale: int, crop: int | None) -> ImageSet:
    """The built-in photos, optionally centre-cropped to ``crop`` HR pixels (fast)."""
    full = builtin_eval_set(scale)
    if crop is None:
        return full
    crops = []
    for pair in full:
        h, w = pair.hr.shape[:2]
        top, left = (h - crop) // 2, (w - crop) // 2
        crops.append((pair.name, np.ascontiguousarray(pair.hr[top:top + crop,
                                                             left:left + crop])))
    return ImageSet.from_arrays(crops, scale, description=f"built-in photos, {crop}px crops")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drn-t")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--criterion", default="thinet")
    parser.add_argument("--weights", default=None, help="trained checkpoint of the model")
    parser.add_argument("--data", default=None, help="HR image folder (default: built-in)")
    parser.add_argument("--out", default=None, help="artifact path (default: a temp folder)")
    parser.add_argument("--tiny", action="store_true", help="few small patches, cropped eval")
    args = parser.parse_args()

    batches, batch, patch = (1, 4, 12) if args.tiny else (4, 8, 24)
    calib = calibration(args.data, args.scale, batches, batch, patch)
    torch.manual_seed(0)  # untrained models start from the same random weights every run
    model = build_model(args.model, args.scale, weights=args.weights)
    before = copy.deepcopy(model)
    result = compress(model, args.ratio, criterion=args.criterion, batches=calib,
                      input_size=(patch, patch) if args.tiny else (96, 96))
    out = Path(args.out or Path(tempfile.mkdtemp(prefix="srprune-")) / "compressed.srp")
    save_artifact(model, out, meta=result.summary(), force=True)
    loaded = srprune.load(out)
    images = eval_set(args.scale, 48 if args.tiny else None)
    q0, q1 = evaluate_model(before, images), evaluate_model(loaded, images)
    s = result.summary()
    print(f"{args.model} x{args.scale}, criterion {args.criterion}, ratio {args.ratio}: "
          f"achieved {s['ratio_achieved']:.3f}")
    print(f"params {s['params_before']} -> {s['params_after']}, "
          f"MACs {s['macs_before']} -> {s['macs_after']}")
    print(f"PSNR (Y) {q0['psnr']:.3f} -> {q1['psnr']:.3f} dB, "
          f"SSIM {q0['ssim']:.4f} -> {q1['ssim']:.4f} on {images.description}")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
