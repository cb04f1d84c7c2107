"""Safe checkpoint I/O: tensors and plain data only, atomic writes, no silent overwrite."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from srprune.errors import SrpruneError


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with one clear error per failure mode."""
    path = Path(path)
    if not path.is_file():
        raise SrpruneError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if match:
            raise SrpruneError(
                f"{path} holds pickled Python code ({match.group(1)}), not just tensors; "
                "refusing to load it (srprune only loads weights_only checkpoints)"
            ) from None
        raise SrpruneError(f"{path} is not a readable checkpoint (corrupt or not a "
                           "torch file)") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SrpruneError(f"{path} is not a readable checkpoint ({first})") from None


def check_writable(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing file unless ``force``; the folder must exist."""
    path = Path(path)
    if path.exists() and not force:
        raise SrpruneError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise SrpruneError(f"folder {path.parent} does not exist")
    if path.is_dir():
        raise SrpruneError(f"{path} is a folder, not a file path")
    return path


def write_atomic(path: str | Path, writer: Callable[[Path], None], force: bool = False) -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(obj: Any, path: str | Path, force: bool = False) -> Path:
    """``torch.save`` atomically; ``obj`` must be tensors and plain containers/scalars."""
    return write_atomic(path, lambda tmp: torch.save(obj, tmp), force)
