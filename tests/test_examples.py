"""Every script in examples/ runs end to end with its tiny settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), "--tiny", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_custom_criterion():
    out = run_example("custom_criterion.py")
    assert '"criterion": "l2-example"' in out
    assert '"ratio_achieved": 0.4' in out  # drn-t at 0.5: about 0.49 with whole channels


def test_compress_drn(tmp_path):
    artifact = tmp_path / "drn-t.srp"
    out = run_example("compress_drn.py", "--out", str(artifact))
    assert "criterion thinet" in out and "PSNR (Y)" in out
    assert artifact.exists()


@pytest.mark.parametrize("name", ["bench_models.py"])
def test_bench_models(name):
    out = run_example(name)
    lines = [line for line in out.splitlines() if line.startswith("drn-t")]
    assert len(lines) == 2 and lines[1].startswith("drn-t-l1-50")
