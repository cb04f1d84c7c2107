"""The documentation site builds, strictly, and its generated parts match their sources.

``mkdocs build --strict`` fails on a broken link or anchor, a page missing from the nav, an
API object that no longer exists (mkdocstrings) and a missing included file, so a renamed
function or a moved page fails the suite. The build takes a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import srprune

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="pip install -e '.[dev]' (make install) brings mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                             "--site-dir", str(tmp_path / "site")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    site = tmp_path / "site"
    assert (site / "api" / "index.html").exists()
    assert (site / "notebook" / "index.html").exists()  # benchmarks/RESULTS.md, published
    assert (site / "data" / "zoo-table.json").exists()  # raw data the results page links to
    api = (site / "api" / "index.html").read_text()
    assert "compress_model" in api or "def compress" in api or "ratio" in api


def test_the_results_page_matches_the_data():
    assert script("results_page").main(["--check"]) == 0, \
        "docs/results.md is out of date: run python benchmarks/results_page.py"


def test_the_zoo_table_matches_its_data():
    zoo = script("zoo_table")
    rows = json.loads((ROOT / "benchmarks" / "results" / "zoo-table.json").read_text())["rows"]
    page = zoo.PAGE.read_text()
    assert zoo.replace_table(page, zoo.markdown(rows)) == page, \
        "run python benchmarks/zoo_table.py --from-json benchmarks/results/zoo-table.json --write"


def test_every_public_name_is_in_the_api_reference():
    page = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^### `srprune\.(\w+)`", page, re.MULTILINE))
    public = {name for name in srprune.__all__ if not name.startswith("__")}
    assert documented == public
    for name in public:
        module, attribute = srprune._EXPORTS[name]
        assert f"::: {module}.{attribute}\n" in page, name


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for command in ("make demo", "make test"):  # CI runs `make test`, the README's command
        assert command in readme
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links, "the README links into the site"
    for link in links:
        assert (ROOT / link).exists(), link


def test_the_speed_page_matches_its_data():
    """docs/speed.md is aligned_speed.py's rendering of its JSON and efficiency_split.py's."""
    speed = script("aligned_speed")
    results = ROOT / "benchmarks" / "results"
    split = results / "efficiency-split.json"
    page = speed.markdown(json.loads((results / "aligned-speed.json").read_text()),
                          json.loads(split.read_text()) if split.exists() else None)
    assert page == (DOCS / "speed.md").read_text(), \
        "run python benchmarks/aligned_speed.py --render"
