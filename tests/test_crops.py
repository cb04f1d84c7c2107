"""Side-by-side crops: the regions where models differ, their PSNR, the page, as a browser
shows it (headless Chromium, when the machine has it)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main
from srprune.quality.crops import (
    SHOW,
    choose_regions,
    crop_sets,
    crops_section,
    disagreement,
    page,
)
from srprune.quality.metrics import psnr_y

BROWSERS = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(7 * x + seed), np.cos(6 * y), np.sin(5 * (x - y))], -1) * 90 + 128
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.float32)


def test_regions_land_where_the_models_differ():
    hr = photo(160, 200)
    a = hr + 1.0
    b = a.copy()
    b[100:116, 20:36] += 60  # model b goes wrong here
    b[10:26, 150:166] += 30  # and, less, here
    score = disagreement([a, b])
    regions = choose_regions(score, 32, 2)
    (y0, x0), (y1, x1) = regions
    assert y0 <= 100 and y0 + 32 >= 116 and x0 <= 20 and x0 + 32 >= 36
    assert y1 <= 10 and y1 + 32 >= 26 and x1 <= 150 and x1 + 32 >= 166
    assert abs(y0 - y1) >= 32 or abs(x0 - x1) >= 32  # they do not overlap


def test_crops_carry_the_psnr_of_their_pixels():
    hr = photo(96, 96, 1)
    rng = np.random.default_rng(2)
    good, bad = hr + rng.normal(0, 2, hr.shape), hr + rng.normal(0, 9, hr.shape)
    sets = crop_sets("p", [("unpruned", good), ("pruned", bad)], bicubic=hr * 0.9, hr=hr,
                     count=2, side=32)
    assert len(sets) == 2
    for s in sets:
        assert [p.label for p in s.panels] == ["HR", "bicubic", "unpruned", "pruned"]
        y, x, side = s.box
        assert side == 32 and all(p.pixels.shape == (32, 32, 3) for p in s.panels)
        hr_crop = np.rint(np.clip(hr[y:y + 32, x:x + 32], 0, 255))
        for p, full in zip(s.panels[2:], (good, bad), strict=True):
            crop = np.rint(np.clip(full[y:y + 32, x:x + 32], 0, 255))
            assert p.psnr == pytest.approx(psnr_y(crop, hr_crop, 0))
            assert p.against == "HR"
        assert s.panels[0].psnr is None
        assert s.panels[2].psnr > s.panels[3].psnr


def test_without_ground_truth_the_first_model_is_the_reference():
    a = photo(64, 80)
    sets = crop_sets("mine.png", [("A", a), ("B", a + 3)], bicubic=a * 0.95, count=1)
    labels = [(p.label, p.against) for p in sets[0].panels]
    assert labels == [("bicubic", "A"), ("A", None), ("B", "A")]
    text = page("t", [crops_section(sets, "Side by side")])
    assert "dB vs A" in text and "reference" in text
    assert "http://" not in text and "https://" not in text and "<script" in text
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 1 + 3  # the thumbnail and three crops
    crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(uris[-1]))))
    assert crop.shape[:2] == (32, 32)


def test_compress_report_is_a_page_with_crops(tmp_path: Path):
    evals = tmp_path / "eval"
    evals.mkdir()
    Image.fromarray(photo(64, 64).astype(np.uint8)).save(evals / "e.png")
    report = tmp_path / "report.html"
    result = CliRunner().invoke(main, [
        "compress", "drn-t", "--ratio", "0.5", "--eval", str(evals), "--report", str(report),
        "--out", str(tmp_path / "m.srp")])
    assert result.exit_code == 0, result.output
    text = report.read_text()
    alts = re.findall(r'<img class="crop" alt="([^"]+)"', text)
    assert [a.rsplit(": ", 1)[1] for a in alts[:4]] == ["HR", "bicubic", "unpruned",
                                                        "compressed"]
    assert "params" in text and "http" not in text
    again = CliRunner().invoke(main, [
        "compress", "drn-t", "--ratio", "0.5", "--eval", str(evals), "--report", str(report),
        "--out", str(tmp_path / "m2.srp")])
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert not (tmp_path / "m2.srp").exists()


def test_compress_report_needs_eval(tmp_path: Path):
    result = CliRunner().invoke(main, ["compress", "drn-t", "--ratio", "0.5", "--report",
                                       str(tmp_path / "r.html"), "--out",
                                       str(tmp_path / "m.srp")])
    assert result.exit_code == 2 and "--eval" in result.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ as a browser shows it


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


COLOURS = {"A": (230, 30, 200), "B": (20, 200, 60), "bicubic": (40, 90, 240)}


def test_the_page_renders_with_its_crops_visible(tmp_path: Path):
    """Headless Chromium renders the page: each crop (a flat colour here, so it can be
    found in the screenshot) shows as a block of its colour at the size it is shown
    (``SHOW`` CSS pixels a side, at device scale 1)."""
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    shape = (96, 96, 3)
    outputs = [(name, np.broadcast_to(np.array(c, np.float32), shape).copy())
               for name, c in COLOURS.items() if name != "bicubic"]
    bicubic = np.broadcast_to(np.array(COLOURS["bicubic"], np.float32), shape).copy()
    sets = crop_sets("flat", outputs, bicubic=bicubic, count=1, side=32)
    html_file = tmp_path / "page.html"
    html_file.write_text(page("crops", [crops_section(sets, "Side by side")]))
    shot = tmp_path / "shot.png"
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
                    "--force-device-scale-factor=1", f"--screenshot={shot}",
                    html_file.as_uri()], capture_output=True, timeout=120, env=env,
                   check=False)
    if not shot.is_file():
        pytest.skip(f"{exe} did not write a screenshot here")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.std() > 10  # not a blank page
    for name, colour in COLOURS.items():
        mask = (np.abs(pixels - np.array(colour)).max(axis=2) <= 3)
        ys, xs = np.nonzero(mask)
        assert mask.sum() >= 0.9 * SHOW**2, f"{name}: crop not visible ({mask.sum()} px)"
        assert ys.max() - ys.min() >= SHOW - 4 and xs.max() - xs.min() >= SHOW - 4, name
