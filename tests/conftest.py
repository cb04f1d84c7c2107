"""Shared fixtures: reference facts copied into the repo and small models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="session")
def expected_counts() -> dict:
    return json.loads((REFERENCE / "expected_counts.json").read_text())


@pytest.fixture(scope="session")
def official_keys() -> dict:
    return json.loads((REFERENCE / "official_state_dict_keys.json").read_text())


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Measured latency tables go to a folder of the test session, not ~/.cache."""
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)
    yield


def write_photos(folder: Path, side: int, n: int = 2) -> Path:
    """``n`` random RGB photos (seed 0), ``side`` px square, in a new ``folder``."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((side, side, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


@pytest.fixture
def photo_dir(tmp_path):
    """Two 64x64 random photos: training data for CLI tests."""
    return write_photos(tmp_path / "photos", 64)
