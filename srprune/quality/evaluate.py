"""Score an SRModel on an image set (PSNR/SSIM on Y with the bicubic baseline)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from srprune.models.srmodel import SRModel


def sr_function(model: SRModel, device: str = "cpu") -> Any:
    """An ``LR HxWx3 float32 -> SR HxWx3`` numpy function running ``model`` without grads."""

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()
        with torch.no_grad():
            sr = model(x.unsqueeze(0).to(device))[0]
        return sr.clamp(0, model.rgb_range).permute(1, 2, 0).cpu().numpy()

    return run


def evaluate_model(model: SRModel, image_set: Any, device: str = "cpu",
                   progress: Callable[[str, int, int], None] | None = None,
                   stage: str = "eval") -> dict[str, Any]:
    """``quality.metrics.evaluate`` for a model (PSNR/SSIM on Y, ``scale``-px border crop).

    ``progress(stage, done, total)`` is called before the first image and after each one.
    """
    was_training = model.net.training
    model.net.eval()
    try:
        return evaluate_function(sr_function(model, device), image_set, model.scale,
                                 progress, stage)
    finally:
        model.net.train(was_training)


def evaluate_function(sr_fn: Callable[[np.ndarray], np.ndarray], image_set: Any, scale: int,
                      progress: Callable[[str, int, int], None] | None = None,
                      stage: str = "eval") -> dict[str, Any]:
    """:func:`evaluate_model` for any ``LR HxWx3 -> SR HxWx3`` function (an ONNX session)."""
    from srprune.quality.metrics import evaluate

    images = image_set if progress is None else _Reported(image_set, progress, stage)
    return evaluate(sr_fn, images, scale)


class _Reported:
    """An image set that reports each image as done when the next one is asked for."""

    def __init__(self, images: Any, progress: Callable[[str, int, int], None],
                 stage: str) -> None:
        self.images, self.progress, self.stage = images, progress, stage
        if hasattr(images, "scale"):
            self.scale = images.scale

    def __iter__(self) -> Iterator[Any]:
        images = self.images if hasattr(self.images, "__len__") else list(self.images)
        total = len(images)
        self.progress(self.stage, 0, total)
        for done, pair in enumerate(images, 1):
            yield pair  # evaluate() asks for the next image once this one is scored
            self.progress(self.stage, done, total)
