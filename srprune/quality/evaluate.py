"""Score an SRModel on an image set (PSNR/SSIM on Y with the bicubic baseline)."""

from __future__ import annotations

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


def evaluate_model(model: SRModel, image_set: Any, device: str = "cpu") -> dict[str, Any]:
    """``quality.metrics.evaluate`` for a model (PSNR/SSIM on Y, ``scale``-px border crop)."""
    from srprune.quality.metrics import evaluate

    was_training = model.net.training
    model.net.eval()
    try:
        return evaluate(sr_function(model, device), image_set, model.scale)
    finally:
        model.net.train(was_training)
