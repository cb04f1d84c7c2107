"""MATLAB-compatible imresize: hand-computed cases, torch cross-check, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from srprune.data.imresize import cubic, imresize, output_length, quantize, resize_weights


def _dense(in_len: int, out_len: int, scale: float) -> np.ndarray:
    weights, indices = resize_weights(in_len, out_len, scale)
    dense = np.zeros((out_len, in_len))
    for row in range(out_len):
        np.add.at(dense[row], indices[row], weights[row])
    return dense


def test_cubic_kernel_values() -> None:
    # Keys a=-0.5: k(0)=1, k(+-1)=k(+-2)=0, k(0.5)=0.5625, k(1.5)=-0.0625, zero beyond 2.
    x = np.array([0.0, 0.5, -0.5, 1.0, 1.5, -1.5, 2.0, 2.5])
    expected = [1.0, 0.5625, 0.5625, 0.0, -0.0625, -0.0625, 0.0, 0.0]
    np.testing.assert_allclose(cubic(x), expected, atol=1e-15)


def test_downscale_by_two_hand_computed() -> None:
    # Length 4 -> 2. Antialiased kernel 0.5*k(x/2) at distances 0.5, 1.5, 2.5, 3.5 gives
    # 0.43359375, 0.11328125, -0.03515625, -0.01171875 (sum over both sides = 1). With
    # mirror padding (x0 x1 | x1 x2 x3 x4 | x4 x3) the first output collects
    # x1: 0.43359375+0.11328125, x2: 0.43359375-0.03515625, x3: 0.11328125-0.01171875,
    # x4: -0.03515625-0.01171875.
    row0 = [0.546875, 0.3984375, 0.1015625, -0.046875]
    np.testing.assert_allclose(_dense(4, 2, 0.5), [row0, row0[::-1]], atol=1e-15)
    column = np.array([[10.0], [20.0], [30.0], [40.0]])
    out = imresize(column, output_shape=(2, 1))
    np.testing.assert_allclose(out.ravel(), [14.609375, 35.390625], atol=1e-12)


def test_upscale_by_two_hand_computed() -> None:
    # Length 2 -> 4: sample positions 0.75, 1.25, 1.75, 2.25 (1-based); e.g. the first
    # output is 1.09375*x1 - 0.09375*x2 (k(0.25)+k(0.75) on x1, k(1.25)+k(1.75) on x2).
    out = imresize(np.array([[0.0, 64.0]]), scale=2)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out[0], [-6.0, 13.0, 51.0, 70.0], atol=1e-12)
    np.testing.assert_allclose(out[1], out[0], atol=1e-12)


def _torch_resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=shape, mode="bicubic", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    ("out_shape", "ring"),
    [
        ((30, 36), 2),
        ((20, 24), 2),
        ((15, 18), 2),
        ((45, 54), 2),
        ((37, 50), 2),
        ((120, 144), 4),
        ((240, 288), 8),
    ],
)
def test_interior_matches_torch_antialias_bicubic(out_shape: tuple[int, int], ring: int) -> None:
    # torch's antialiased bicubic uses the same a=-0.5 kernel but renormalises at the
    # borders instead of mirroring, so only a thin ring may differ.
    img = np.random.default_rng(0).uniform(0, 255, (60, 72, 3))
    ours = imresize(img, output_shape=out_shape)
    ref = _torch_resize(img, out_shape)
    assert ours.shape == (*out_shape, 3)
    np.testing.assert_allclose(ours[ring:-ring, ring:-ring], ref[ring:-ring, ring:-ring], atol=1e-9)


def test_scale_one_is_identity_and_grey_matches_colour() -> None:
    img = np.random.default_rng(1).uniform(0, 255, (9, 7, 3))
    np.testing.assert_allclose(imresize(img, 1.0), img, atol=1e-12)
    small = imresize(img, 0.5)
    np.testing.assert_allclose(imresize(img[:, :, 1], 0.5), small[:, :, 1], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    scale=st.sampled_from([0.25, 1 / 3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]),
    value=st.floats(0, 255),
)
def test_constant_stays_constant_and_size_is_ceil(
    h: int, w: int, scale: float, value: float
) -> None:
    out = imresize(np.full((h, w, 3), value), scale)
    assert out.shape == (math.ceil(h * scale - 1e-9), math.ceil(w * scale - 1e-9), 3)
    np.testing.assert_allclose(out, value, atol=1e-9)


def test_output_length_examples() -> None:
    assert output_length(10, 0.25) == 3  # ceil(2.5)
    assert output_length(300, 1 / 3) == 100
    assert output_length(7, 1.5) == 11  # ceil(10.5)
    assert output_length(1, 0.1) == 1


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 8),
    s=st.sampled_from([2, 3, 4]),
    down=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_flip_commutes_with_resize(n: int, s: int, down: bool, seed: int) -> None:
    img = np.random.default_rng(seed).uniform(0, 255, (n * s, n * s + s, 3))
    scale = 1 / s if down else float(s)
    out = imresize(img, scale)
    np.testing.assert_allclose(imresize(img[::-1, ::-1], scale), out[::-1, ::-1], atol=1e-9)
    np.testing.assert_allclose(
        imresize(img.transpose(1, 0, 2), scale), out.transpose(1, 0, 2), atol=1e-9
    )


def test_linearity() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 255, (2, 21, 17, 3))
    for scale in (0.25, 0.6, 2.5):
        lhs = imresize(2 * a - 0.5 * b, scale)
        np.testing.assert_allclose(
            lhs, 2 * imresize(a, scale) - 0.5 * imresize(b, scale), atol=1e-9
        )


def test_quantize_rounds_half_away_and_clips() -> None:
    x = np.array([0.5, 1.5, 2.5, 2.4999, -3.0, 255.6, 300.0], dtype=np.float32)
    out = quantize(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1, 2, 3, 2, 0, 255, 255])
    assert quantize(np.array([1.2])).dtype == np.float64


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"scale": 2, "output_shape": (2, 2)}, {"scale": 0}, {"output_shape": (0, 3)}],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), **kwargs)


def test_bad_rank() -> None:
    with pytest.raises(ValueError, match="HxW"):
        imresize(np.zeros((2, 2, 2, 2)), 2)
