"""Shared fixtures: reference facts copied into the repo and small models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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
