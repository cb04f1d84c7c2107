"""The example third-party plugin (plugins/srprune-hrank) through the entry-point path."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main

HRANK = [ep for ep in entry_points(group="srprune.criteria") if ep.name == "hrank"]
pytestmark = pytest.mark.skipif(
    not HRANK, reason="plugin not installed: pip install -e plugins/srprune-hrank")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_criteria_shows_the_plugin():
    code, out, _ = run("list", "criteria", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["hrank"]["kind"] == "score"
    assert rows["hrank"]["source"] == "entry point srprune_hrank:HRank"


def test_map_ranks_counts_matrix_rank():
    from srprune_hrank import map_ranks

    u, v = torch.arange(1.0, 7.0), torch.arange(2.0, 8.0)
    maps = torch.stack([torch.outer(u, v), torch.eye(6), torch.zeros(6, 6)])[None]
    assert map_ranks(maps).tolist() == [[1.0, 6.0, 0.0]]


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    return folder


def test_compress_with_the_plugin_criterion(image_dir, tmp_path):
    out = tmp_path / "hrank.srp"
    code, stdout, err = run("compress", "drn-t", "--ratio", "0.5", "--criterion", "hrank",
                            "--data", str(image_dir), "--calib-batches", "1",
                            "--calib-batch", "2", "--calib-patch", "8", "--out", str(out),
                            "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["criterion"] == "hrank"
    assert 0.4 < summary["ratio_achieved"] < 0.6
    assert out.exists()


def test_plugin_options_are_checked(image_dir, tmp_path):
    code, _, err = run("compress", "drn-t", "--ratio", "0.5", "--criterion", "hrank",
                       "--criterion-opt", "feature=nope", "--data", str(image_dir),
                       "--calib-batches", "1", "--calib-batch", "2", "--calib-patch", "8",
                       "--out", str(tmp_path / "x.srp"))
    assert code == 2 and "feature must be one of" in err
    code, _, err = run("compress", "drn-t", "--ratio", "0.5", "--criterion", "hrank",
                       "--out", str(tmp_path / "x.srp"))
    assert code == 2 and "needs calibration images" in err
