"""A fixed validation set for fine-tuning: so that fine-tuning never makes a model silently worse.

A few batches of aligned LR/HR patches are drawn once, with their own seeded generator (the
training batches and the global RNG are untouched), and scored like the evaluation set: the
SR patch rounded and clipped to 8-bit levels, Y channel (BT.601), ``scale`` pixels cropped at
each border, mean PSNR over patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from srprune.data.images import ImageSet, PatchSampler
from srprune.models.srmodel import SRModel
from srprune.quality.metrics import psnr_y

VALIDATION_SEED_OFFSET = 7919  # keeps validation patches apart from the training sequence


@dataclass
class PatchValidation:
    """Fixed (LR, HR) patch batches and the Y-PSNR of a model on them."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]
    scale: int

    @property
    def size(self) -> int:
        return sum(int(lr.shape[0]) for lr, _ in self.batches)

    def psnr(self, model: SRModel, device: str = "cpu") -> float:
        """Mean Y-PSNR (dB) over the patches, the model in eval mode, no gradients."""
        was_training = model.net.training
        model.net.eval()
        scores = []
        try:
            with torch.no_grad():
                for lr, hr in self.batches:
                    sr = model(lr.to(device)).clamp(0, 255).cpu()
                    for s, h in zip(sr, hr):
                        scores.append(psnr_y(_hwc(s), _hwc(h), self.scale))
        finally:
            model.net.train(was_training)
        finite = [s for s in scores if np.isfinite(s)]
        return float(np.mean(finite)) if finite else float("inf")


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy().astype(np.float64)


def validation_patches(images: ImageSet, scale: int, patch: int, count: int,
                       seed: int) -> PatchValidation:
    """``count`` fixed LR patches of ``patch`` x ``patch`` (batches of at most 8)."""
    sampler = PatchSampler(images, scale, patch, min(8, count),
                           seed=seed + VALIDATION_SEED_OFFSET)
    batches = []
    for _ in range(max(1, -(-count // min(8, count)))):
        lr_pyramid, hr = sampler.next_batch()
        batches.append((lr_pyramid[0], hr))
    return PatchValidation(batches, scale)
