"""The scriptable front door: ``srprune.compress`` and ``srprune.load``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srprune.compress import CompressResult, ProgressFn, check_ratio, compress
from srprune.errors import SrpruneError
from srprune.models import SRModel, resolve_model


def load(path: str | Path) -> SRModel:
    """Load a compressed-model artifact (``weights_only``; no code is unpickled)."""
    from srprune.artifact import load_artifact

    return load_artifact(path)


def calibration_batches(data: str | Path | None, scale: int, n_batches: int, batch: int,
                        patch: int, seed: int) -> list:
    """``n_batches`` seeded batches of aligned LR-pyramid/HR patches from a folder (or [])."""
    if data is None:
        return []
    from srprune.data import PatchSampler, open_image_set

    if not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    sampler = PatchSampler(open_image_set(data, scale), scale, patch, batch, seed=seed)
    return [sampler.next_batch() for _ in range(n_batches)]


def compress_model(
    model: SRModel | str,
    ratio: float,
    criterion: str = "l1",
    strategy: str = "uniform",
    scope: str = "internal",
    scale: int | None = None,
    weights: str | None = None,
    data: str | Path | None = None,
    calib_batches: int = 4,
    calib_batch: int = 8,
    calib_patch: int = 24,
    criterion_options: dict[str, Any] | None = None,
    strategy_options: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    input_size: tuple[int, int] = (96, 96),
    out: str | Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    source: str | None = None,
) -> CompressResult:
    """Compress a model (an ``SRModel``, a registered name or an artifact path).

    ``ratio`` is the fraction of the primal net's parameters to remove. ``data`` is an image
    folder for calibration. With ``out`` the pruned model is written as an artifact
    (refusing to overwrite without ``force``).
    """
    from srprune.checkpoint import check_writable

    check_ratio(ratio)
    if out is not None:
        check_writable(out, force)
    if isinstance(model, str):
        source = source or model
        model = resolve_model(model, scale, weights=weights)
    batches = calibration_batches(data, model.scale, calib_batches, calib_batch, calib_patch,
                                  seed)
    result = compress(model, ratio, criterion=criterion, strategy=strategy, scope=scope,
                      batches=batches, criterion_options=criterion_options,
                      strategy_options=strategy_options, seed=seed, device=device,
                      input_size=input_size, progress=progress)
    if out is not None:
        from srprune.artifact import save_artifact

        save_artifact(model.to("cpu"), out, meta={"source": source, **result.summary()},
                      force=force)
    return result
