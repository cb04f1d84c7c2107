"""Shared fixtures: reference facts copied into the repo and small models.

The test-only plugin package ``tests/plugin_pkg`` (model ``testnet``, criterion ``l2-test``,
strategy ``scan-test``) is never installed: for the length of the test session only,
:func:`pytest_configure` makes it discoverable through a temporary ``*.dist-info`` folder
holding its entry points, on ``sys.path`` and on ``PYTHONPATH`` (so that subprocesses see it
too: the CLI, torchrun workers, compare workers, pytest-xdist workers), and
:func:`pytest_unconfigure` removes it all again. A user's own ``srprune list`` never shows it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

REFERENCE = Path(__file__).parent / "reference"
PLUGIN_SOURCE = Path(__file__).parent / "plugin_pkg"
# Set to the temporary folder with the plugin's dist-info by the process that made it; a
# process started inside the session (an xdist worker) finds it there and reuses it.
PLUGIN_ENV = "SRPRUNE_TEST_PLUGIN_DIR"
_plugin: dict = {}  # what pytest_configure changed, for pytest_unconfigure


def plugin_metadata() -> tuple[str, str, dict[str, dict[str, str]]]:
    """Name, version and entry points (group -> name -> "module:object") of tests/plugin_pkg."""
    project = tomllib.loads((PLUGIN_SOURCE / "pyproject.toml").read_text())["project"]
    return project["name"], project["version"], project["entry-points"]


def write_dist_info(folder: Path) -> Path:
    """The plugin's ``<name>-<version>.dist-info`` (METADATA, entry_points.txt) in ``folder``."""
    name, version, groups = plugin_metadata()
    dist = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in groups.items()))
    return dist


def plugin_modules() -> set[str]:
    """Top-level modules the plugin's entry points import."""
    return {v.split(":")[0].split(".")[0] for eps in plugin_metadata()[2].values()
            for v in eps.values()}


def plugin_paths() -> list[str]:
    """The two path entries that make the plugin discoverable (empty outside a session)."""
    return list(_plugin.get("paths", []))


def _refresh_discovery() -> None:
    """Forget cached directory listings and srprune's loaded registries."""
    importlib.invalidate_caches()  # also importlib.metadata's path cache
    registry = sys.modules.get("srprune.registry")
    if registry is not None:
        for reg in (registry.MODELS, registry.CRITERIA, registry.STRATEGIES):
            reg._loaded = False  # re-read entry points on next use (built-ins are kept)


def pytest_configure(config) -> None:
    inherited = os.environ.get(PLUGIN_ENV)
    owner = not (inherited and Path(inherited).is_dir())
    folder = Path(tempfile.mkdtemp(prefix="srprune-testplugin-")) if owner else Path(inherited)
    if owner:
        write_dist_info(folder)
    paths = [str(folder), str(PLUGIN_SOURCE)]
    _plugin.update(owner=owner, folder=folder, paths=paths,
                   env={k: os.environ.get(k) for k in (PLUGIN_ENV, "PYTHONPATH")},
                   sys_path=[p for p in paths if p not in sys.path])
    sys.path[:0] = _plugin["sys_path"]
    old = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *(p for p in old if p not in paths)])
    os.environ[PLUGIN_ENV] = str(folder)
    _refresh_discovery()


def pytest_unconfigure(config) -> None:
    if not _plugin:
        return
    for key, value in _plugin["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for path in _plugin["sys_path"]:
        while path in sys.path:
            sys.path.remove(path)
    if _plugin["owner"]:
        shutil.rmtree(_plugin["folder"], ignore_errors=True)
    sources = {f"entry point {v}" for eps in plugin_metadata()[2].values() for v in eps.values()}
    registry = sys.modules.get("srprune.registry")
    if registry is not None:  # drop what the plugin registered in this process
        for reg in (registry.MODELS, registry.CRITERIA, registry.STRATEGIES):
            for name in [n for n, s in reg._sources.items() if s in sources]:
                del reg._items[name], reg._sources[name]
    modules = plugin_modules()
    for module in [m for m in sys.modules if m.split(".")[0] in modules]:
        del sys.modules[module]
    _plugin.clear()
    _refresh_discovery()


@pytest.fixture(scope="session")
def test_plugin_paths() -> list[str]:
    """The PYTHONPATH entries that make tests/plugin_pkg discoverable in this session."""
    return plugin_paths()


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
