"""Y channel, PSNR/SSIM conventions, bicubic baseline and evaluate()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from scipy.ndimage import correlate
from skimage.metrics import structural_similarity

from srprune.data.images import ImageSet, make_lr
from srprune.data.imresize import imresize
from srprune.errors import SrpruneError
from srprune.quality.metrics import bicubic_upscale, evaluate, psnr_y, rgb_to_y, ssim_y


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_to_y_matches_matlab_rgb2ycbcr() -> None:
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]])
    y = rgb_to_y(colours)
    assert y.dtype == np.float64 and y.shape == (1, 5)
    np.testing.assert_allclose(y[0], [81.481, 144.553, 40.966, 235.0, 16.0], atol=1e-9)


def test_psnr_of_constant_offset_by_hand() -> None:
    # Adding d to R, G and B shifts Y by 219*d/255, so PSNR = 20 log10(255^2 / (219 d)).
    hr = np.full((20, 20, 3), 100, np.uint8)
    assert psnr_y(hr + 10.0, hr, 0) == pytest.approx(29.452724920555838, abs=1e-9)
    assert psnr_y(hr + 1.0, hr, 2) == pytest.approx(49.45272492055584, abs=1e-9)


def test_psnr_of_checkerboard_noise_by_hand() -> None:
    hr = np.full((16, 16, 3), 120.0)
    sign = np.where(np.add.outer(np.arange(16), np.arange(16)) % 2 == 0, 1.0, -1.0)
    sr = hr + 5.0 * sign[:, :, None]
    assert psnr_y(sr, hr, 1) == pytest.approx(35.47332483383546, abs=1e-9)


def test_psnr_quantises_sr_first() -> None:
    hr = np.full((12, 12, 3), 80, np.uint8)
    hr[0, 0] = 255
    assert psnr_y(hr + 0.4, hr, 0) == math.inf  # rounds back to hr
    assert psnr_y(hr + 0.6, hr, 1) == pytest.approx(psnr_y(hr + 1.0, hr, 1), abs=1e-12)
    sr = hr.astype(np.float64)
    sr[0, 0] = 300.0  # clipped to 255 like a saved PNG
    assert psnr_y(sr, hr, 0) == math.inf


def test_psnr_crop_ignores_border() -> None:
    hr = _rgb(20, 24)
    sr = hr.astype(np.float64)
    sr[:3] = 0
    sr[:, -3:] = 255
    assert psnr_y(sr, hr, 3) == math.inf
    assert psnr_y(sr, hr, 2) < 30


def test_metric_input_errors() -> None:
    hr = _rgb(20, 20)
    with pytest.raises(SrpruneError, match=r"SR shape \(20, 21, 3\)"):
        psnr_y(_rgb(20, 21), hr, 2)
    with pytest.raises(SrpruneError, match="crop 10"):
        psnr_y(hr, hr, 10)
    with pytest.raises(SrpruneError, match="SSIM needs at least 11x11"):
        ssim_y(hr, hr, 5)


def test_ssim_identical_and_constant_by_hand() -> None:
    hr = _rgb(24, 24)
    assert ssim_y(hr, hr, 2) == pytest.approx(1.0, abs=1e-12)
    # Flat images: variances vanish, SSIM = (2 y1 y2 + C1) / (y1^2 + y2^2 + C1) with
    # y = 16 + 219 g / 255 for grey g (101.882..., 110.470...) and C1 = 2.55^2.
    a = np.full((20, 20, 3), 100, np.uint8)
    assert ssim_y(a + 10, a, 0) == pytest.approx(0.9967349750759956, abs=1e-12)


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB ssim_index: 11x11 Gaussian (sigma 1.5), 'valid' filtering, written out."""
    r = np.arange(-5, 6)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w = g / g.sum()

    def filt(a: np.ndarray) -> np.ndarray:
        return correlate(a, w, mode="constant")[5:-5, 5:-5]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    return float(np.mean(num / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


def test_ssim_matches_skimage_and_written_out_formula() -> None:
    hr = _rgb(40, 36, 1)
    noise = np.random.default_rng(2).normal(0, 12, hr.shape)
    sr = hr + noise
    got = ssim_y(sr, hr, 3)
    y_sr = rgb_to_y(np.clip(np.round(sr), 0, 255))[3:-3, 3:-3]
    y_hr = rgb_to_y(hr)[3:-3, 3:-3]
    expected = structural_similarity(
        y_sr, y_hr, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(_reference_ssim(y_sr, y_hr), abs=1e-9)
    assert 0.3 < got < 0.99


def test_bicubic_upscale() -> None:
    lr = _rgb(6, 5).astype(np.float32)
    up = bicubic_upscale(lr, 3)
    assert up.shape == (18, 15, 3)
    np.testing.assert_allclose(up, imresize(lr, 3.0))
    np.testing.assert_allclose(bicubic_upscale(np.full((4, 4, 3), 50.0), 2), 50.0)


def _torch_bicubic(lr: np.ndarray, scale: int, antialias: bool) -> np.ndarray:
    t = torch.from_numpy(lr.astype(np.float64)).permute(2, 0, 1)[None]
    out = F.interpolate(
        t, scale_factor=scale, mode="bicubic", antialias=antialias, align_corners=False
    )
    return out[0].permute(1, 2, 0).numpy()


def test_evaluate_reproduces_reference_numbers() -> None:
    # ecosystem.md §3: astronaut x4, MATLAB-style LR, upscaled with torch bicubic
    # (a=-0.75, no antialias), Y channel, crop 4: PSNR 27.0396 dB, SSIM 0.84625.
    images = ImageSet.from_arrays([("astronaut", skimage.data.astronaut())], 4)
    result = evaluate(lambda lr: _torch_bicubic(lr, 4, False), images, 4)
    assert result["psnr"] == pytest.approx(27.0396, abs=5e-4)
    assert result["ssim"] == pytest.approx(0.84625, abs=5e-5)
    # The MATLAB-style baseline (a=-0.5) equals torch's antialiased bicubic except in a
    # border ring, so the two scores agree closely (26.8439 vs 26.8437 dB).
    assert result["bicubic_psnr"] == pytest.approx(26.8439, abs=5e-4)
    torch_aa = evaluate(lambda lr: _torch_bicubic(lr, 4, True), images, 4)
    assert result["bicubic_psnr"] == pytest.approx(torch_aa["psnr"], abs=2e-3)
    assert result["bicubic_ssim"] == pytest.approx(torch_aa["ssim"], abs=1e-4)


def test_evaluate_structure_and_border_crop() -> None:
    hrs = [("p", _rgb(32, 36, 1)), ("q", _rgb(40, 28, 2))]
    images = ImageSet.from_arrays(hrs, 2)
    by_lr = {pair.lr[0].tobytes(): pair.hr for pair in images}

    def oracle_with_bad_border(lr: np.ndarray) -> np.ndarray:
        sr = by_lr[lr.tobytes()].astype(np.float32)
        assert lr.dtype == np.float32 and lr.ndim == 3
        sr[:2] = 0  # inside the 2 px crop, so it must not count
        sr[:, -2:] = 255
        return sr

    result = evaluate(oracle_with_bad_border, images, 2)
    assert set(result) == {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "per_image"}
    assert [row["name"] for row in result["per_image"]] == ["p", "q"]
    assert result["psnr"] == math.inf and result["ssim"] == pytest.approx(1.0)
    rows = result["per_image"]
    assert result["bicubic_psnr"] == pytest.approx(np.mean([r["bicubic_psnr"] for r in rows]))
    for row in rows:
        assert set(row) == {"name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}
        assert 0 < row["bicubic_ssim"] < 1 and 5 < row["bicubic_psnr"] < 40
    hr_q = images[1].hr
    expected_q = psnr_y(bicubic_upscale(make_lr(hr_q, 2), 2), hr_q, 2)
    assert rows[1]["bicubic_psnr"] == pytest.approx(expected_q, abs=1e-12)


def test_evaluate_errors() -> None:
    images = ImageSet.from_arrays([("tiny", _rgb(24, 24))], 2)
    with pytest.raises(SrpruneError, match=r"image tiny has shape \(12, 12, 3\)"):
        evaluate(lambda lr: lr, images, 2)
    with pytest.raises(SrpruneError, match=r"x2.*x4"):
        evaluate(lambda lr: lr, images, 4)
