"""A fixed validation set for fine-tuning: so that fine-tuning never makes a model silently worse.

A few batches of aligned LR/HR patches are drawn once, with their own seeded generator (the
training batches and the global RNG are untouched), and scored like the evaluation set: the
SR patch rounded and clipped to 8-bit levels, Y channel (BT.601), ``scale`` pixels cropped at
each border, mean PSNR over patches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from srprune.data.images import ImageSet, PatchSampler
from srprune.models.srmodel import SRModel
from srprune.quality.metrics import psnr_y

VALIDATION_SEED_OFFSET = 7919  # keeps validation patches apart from the training sequence
HOLDOUT_FRACTION = 0.1  # of the user's images kept out of fine-tuning, to judge it
MIN_IMAGES_TO_HOLD_OUT = 4  # a smaller folder is all training (and says so)


def split_holdout(images: ImageSet, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """The training images and the held-out ones (None when the folder is too small).

    Keep-best must judge fine-tuning on images it never trains on: on patches of its own
    training images a converged model's score rose while its PSNR on unseen photos fell.
    The held-out images are a seeded choice of ``HOLDOUT_FRACTION`` of the folder (at least
    one), the same for every run with the same seed.
    """
    names = list(images.names)
    if len(names) < MIN_IMAGES_TO_HOLD_OUT:
        return images, None
    count = max(1, round(len(names) * HOLDOUT_FRACTION))
    held = sorted(random.Random(seed + VALIDATION_SEED_OFFSET).sample(names, count))
    index = {name: i for i, name in enumerate(names)}

    def subset(chosen: list[str], what: str) -> ImageSet:
        return ImageSet(f"{images.description} ({what})", images.scale, chosen,
                        lambda name: images[index[name]])

    train = subset([n for n in names if n not in held], f"{len(names) - count} for training")
    return train, subset(held, f"{count} held out")


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
