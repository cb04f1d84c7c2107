"""Image loading, LR generation, image sets and the patch sampler."""

from __future__ import annotations

import copy
import io
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srprune.data.images import (
    BUILTIN_IMAGES,
    ImageSet,
    PatchSampler,
    builtin_eval_set,
    list_images,
    load_image,
    lr_pyramid,
    make_lr,
    mod_crop,
    open_image_set,
    pyramid_factors,
)
from srprune.data.imresize import imresize, quantize
from srprune.errors import SrpruneError


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


# ------------------------------------------------------------------- load_image


@pytest.mark.parametrize("name", ["a.png", "b.PNG", "c.bmp", "d.Bmp"])
def test_load_lossless_rgb_roundtrip(tmp_path: Path, name: str) -> None:
    img = _rgb(7, 5)
    out = load_image(_save(tmp_path / name, img))
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("name", ["e.jpg", "f.JPEG"])
def test_load_jpeg(tmp_path: Path, name: str) -> None:
    img = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    out = load_image(_save(tmp_path / name, img))
    assert out.shape == (16, 16, 3) and np.abs(out.astype(int) - img).max() <= 3


def test_grey_is_converted_with_warning(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = _save(tmp_path / "grey.png", grey)
    with pytest.warns(UserWarning, match=r"grey\.png.*\bL\b"):
        out = load_image(path)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_rgba_drops_alpha_with_warning(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb(4, 4), np.full((4, 4, 1), 7, np.uint8)], axis=2)
    path = _save(tmp_path / "alpha.png", rgba)
    with pytest.warns(UserWarning, match=r"alpha\.png.*RGBA"):
        out = load_image(path)
    np.testing.assert_array_equal(out, rgba[:, :, :3])


def test_palette_is_converted_with_warning(tmp_path: Path) -> None:
    img = np.zeros((4, 6, 3), np.uint8)
    img[:, 3:] = (255, 0, 0)
    path = tmp_path / "pal.png"
    Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    with pytest.warns(UserWarning, match=r"pal\.png.*\bP\b"):
        out = load_image(path)
    np.testing.assert_array_equal(out, img)


def test_sixteen_bit_grey_is_scaled(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16)).save(path)
    with pytest.warns(UserWarning, match="deep.png"):
        out = load_image(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SrpruneError, match=r"not found.*nope\.png"):
        load_image(tmp_path / "nope.png")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(SrpruneError, match=r"cannot read image .*junk\.png"):
        load_image(path)


def test_truncated_file(tmp_path: Path) -> None:
    full = _save(tmp_path / "full.png", _rgb(64, 64)).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(SrpruneError, match=r"cut\.png"):
        load_image(path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "x.gif"
    Image.fromarray(_rgb(3, 3)).save(path)
    with pytest.raises(SrpruneError, match=r"x\.gif"):
        load_image(path)


# ------------------------------------------------------------------ list_images


def test_list_images_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.bmp", ".hidden.png"]:
        _save(tmp_path / name, _rgb(4, 4))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.bmp"]


def test_list_images_empty_or_missing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SrpruneError, match=r"no images.*empty"):
        list_images(tmp_path / "empty")
    with pytest.raises(SrpruneError, match=r"not found.*ghost"):
        list_images(tmp_path / "ghost")


# --------------------------------------------------------------- LR generation


def test_mod_crop() -> None:
    img = _rgb(10, 13)
    assert mod_crop(img, 4).shape == (8, 12, 3)
    np.testing.assert_array_equal(mod_crop(img, 4), img[:8, :12])
    assert mod_crop(img[:, :, 0], 5).shape == (10, 10)


def test_make_lr_quantised_float32() -> None:
    hr = _rgb(37, 50)
    lr = make_lr(hr, 4)
    assert lr.dtype == np.float32 and lr.shape == (9, 12, 3)
    np.testing.assert_array_equal(lr, quantize(imresize(hr[:36, :48], 0.25)))
    raw = make_lr(hr, 4, quantize=False)
    assert not np.array_equal(raw, np.round(raw))
    np.testing.assert_allclose(raw, lr, atol=0.5 + 1e-4)
    assert make_lr(hr.astype(np.float64), 4).tolist() == lr.tolist()


def test_make_lr_constant_and_too_small() -> None:
    np.testing.assert_array_equal(make_lr(np.full((8, 8, 3), 77, np.uint8), 2), 77)
    with pytest.raises(SrpruneError, match="smaller than scale 4"):
        make_lr(_rgb(3, 9), 4)


def test_pyramid_factors() -> None:
    assert pyramid_factors(8) == [8, 4, 2]
    assert pyramid_factors(4) == [4, 2]
    assert pyramid_factors(2) == [2]
    assert pyramid_factors(3) == [3]
    for bad in (1, 0, 2.5, True):
        with pytest.raises(SrpruneError, match="scale"):
            pyramid_factors(bad)


def test_lr_pyramid_levels_made_from_hr_directly() -> None:
    hr = _rgb(36, 44)  # mod-cropped to 32x40 for x8
    levels = lr_pyramid(hr, 8)
    assert [lv.shape for lv in levels] == [(4, 5, 3), (8, 10, 3), (16, 20, 3)]
    crop = hr[:32, :40]
    for lv, f in zip(levels, [8, 4, 2], strict=True):
        np.testing.assert_array_equal(lv, make_lr(crop, f))
    # not chained: downsampling LR_2 again by 2 is a different image
    assert not np.array_equal(levels[1], make_lr(levels[2], 2))


# ------------------------------------------------------------------- image sets


def test_hr_folder_set(tmp_path: Path) -> None:
    _save(tmp_path / "b.png", _rgb(21, 18, 1))
    _save(tmp_path / "a.bmp", _rgb(16, 16, 2))
    images = ImageSet.from_hr_folder(tmp_path, 4)
    assert images.names == ["a", "b"] and len(images) == 2
    pair = images[1]
    assert pair.name == "b" and pair.hr.shape == (20, 16, 3) and pair.hr.dtype == np.uint8
    assert [lv.shape for lv in pair.lr] == [(5, 4, 3), (10, 8, 3)]
    np.testing.assert_array_equal(pair.lr[0], make_lr(_rgb(21, 18, 1), 4))
    assert images[1] is pair  # cached in memory
    assert [p.name for p in images[::-1]] == ["b", "a"]
    name, hr, lr = images[0]  # plain (name, hr, lr_pyramid) tuple unpacking
    assert name == "a" and hr.shape == (16, 16, 3) and len(lr) == 2


def test_hr_folder_duplicate_stems(tmp_path: Path) -> None:
    _save(tmp_path / "x.png", _rgb(8, 8))
    _save(tmp_path / "x.bmp", _rgb(8, 8))
    with pytest.raises(SrpruneError, match=r"share the name\(s\) x in"):
        ImageSet.from_hr_folder(tmp_path, 2)


def _benchmark(root: Path, hrs: dict[str, np.ndarray], factors: list[int]) -> Path:
    for name, hr in hrs.items():
        _save(root / "HR" / f"{name}.png", hr)
        for f in factors:
            lr = make_lr(hr, f).astype(np.uint8)
            _save(root / "LR_bicubic" / f"X{f}" / f"{name}x{f}.png", lr)
    return root


def test_benchmark_folder(tmp_path: Path) -> None:
    hrs = {"baby": _rgb(70, 50, 3), "bird": _rgb(32, 32, 4)}
    images = open_image_set(_benchmark(tmp_path, hrs, [2, 4]), 4)
    assert "benchmark" in images.description and images.names == ["baby", "bird"]
    pair = images[0]
    assert pair.hr.shape == (68, 48, 3)  # mod-cropped to x4
    np.testing.assert_array_equal(pair.hr, hrs["baby"][:68, :48])
    assert [lv.shape for lv in pair.lr] == [(17, 12, 3), (34, 24, 3)]
    assert pair.lr[0].dtype == np.float32
    np.testing.assert_array_equal(pair.lr[0], make_lr(hrs["baby"], 4))
    # the X2 file (35x25, made from HR mod-cropped to 2) is cropped to the x4 region
    np.testing.assert_array_equal(pair.lr[1], make_lr(hrs["baby"], 2)[:34, :24])


def test_benchmark_missing_lr_file(tmp_path: Path) -> None:
    root = _benchmark(tmp_path, {"a": _rgb(16, 16), "b": _rgb(16, 16)}, [2, 4])
    (root / "LR_bicubic" / "X2" / "bx2.png").unlink()
    with pytest.raises(SrpruneError, match=r"missing LR file .*X2.bx2\.png"):
        open_image_set(root, 4)


def test_benchmark_missing_final_scale_folder(tmp_path: Path) -> None:
    root = _benchmark(tmp_path, {"a": _rgb(16, 16)}, [2])
    with pytest.raises(SrpruneError, match=r"missing LR folder .*LR_bicubic.X4") as info:
        ImageSet.from_benchmark_folder(root, 4)
    assert "\n" not in str(info.value)


def test_benchmark_missing_lower_level_is_made_from_hr(tmp_path: Path) -> None:
    hr = _rgb(16, 16)
    images = open_image_set(_benchmark(tmp_path, {"a": hr}, [4]), 4)
    assert images.notes == ["LR X2 made from HR (no X2 folder)"]
    assert "LR X2 made from HR (no X2 folder)" in images.description
    np.testing.assert_array_equal(images[0].lr[0], make_lr(hr, 4))
    np.testing.assert_array_equal(images[0].lr[1], make_lr(hr, 2))


def test_benchmark_unmatched_lr_file(tmp_path: Path) -> None:
    root = _benchmark(tmp_path, {"a": _rgb(16, 16)}, [2])
    _save(root / "LR_bicubic" / "X2" / "zebrax2.png", _rgb(8, 8))
    with pytest.raises(SrpruneError, match=r"zebrax2\.png has no matching HR"):
        open_image_set(root, 2)


def test_benchmark_scale_mismatch(tmp_path: Path) -> None:
    root = _benchmark(tmp_path, {"a": _rgb(16, 16)}, [2])
    _save(root / "LR_bicubic" / "X2" / "ax2.png", _rgb(4, 4))
    with pytest.raises(SrpruneError, match=r"scale mismatch.*ax2\.png is 4x4, expected 8x8"):
        open_image_set(root, 2)


def test_benchmark_corrupt_hr(tmp_path: Path) -> None:
    root = _benchmark(tmp_path, {"a": _rgb(16, 16)}, [2])
    (root / "HR" / "a.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(SrpruneError, match=r"HR.a\.png"):
        open_image_set(root, 2)


def test_open_image_set_choices(tmp_path: Path) -> None:
    _save(tmp_path / "plain" / "p.png", _rgb(8, 8))
    _save(tmp_path / "hronly" / "HR" / "q.png", _rgb(8, 8))
    plain = open_image_set(tmp_path / "plain", 2)
    assert plain.names == ["p"] and "generated" in plain.description
    assert open_image_set(tmp_path / "hronly", 2).names == ["q"]
    with pytest.raises(SrpruneError, match=r"not found.*missing"):
        open_image_set(tmp_path / "missing", 2)


# --------------------------------------------------- HR folder + separate LR folder


def _div2k(root: Path, split: str, hrs: dict[str, np.ndarray], factors: list[int],
           seed: int = 10) -> tuple[Path, Path, dict[tuple[str, int], np.ndarray]]:
    """``DIV2K_<split>_HR/<name>.png`` + ``DIV2K_<split>_LR_bicubic/X<f>/<name>x<f>.png``.

    The LR files are random pixels of the right size, so a test sees they are read, not made.
    """
    hr_dir = root / f"DIV2K_{split}_HR"
    lr_dir = root / f"DIV2K_{split}_LR_bicubic"
    lrs = {}
    for i, (name, hr) in enumerate(hrs.items()):
        _save(hr_dir / f"{name}.png", hr)
        for f in factors:
            lr = _rgb(hr.shape[0] // f, hr.shape[1] // f, seed + 7 * i + f)
            lrs[name, f] = lr
            _save(lr_dir / f"X{f}" / f"{name}x{f}.png", lr)
    return hr_dir, lr_dir, lrs


def test_lr_dir_pairs_exactly_the_files(tmp_path: Path) -> None:
    hrs = {"0001": _rgb(20, 24, 1), "0002": _rgb(16, 12, 2)}
    hr_dir, lr_dir, lrs = _div2k(tmp_path, "train", hrs, [2, 4])
    images = open_image_set(hr_dir, 4, lr_dir=lr_dir)
    assert images.names == ["0001", "0002"] and images.notes == []
    for name, pair in zip(images.names, images, strict=True):
        np.testing.assert_array_equal(pair.hr, hrs[name])
        for f, lr in zip([4, 2], pair.lr, strict=True):
            assert lr.dtype == np.float32
            np.testing.assert_array_equal(lr, lrs[name, f])
    # the sampler's LR tensors are the files' pixels too
    sampler = PatchSampler(images, 4, 3, 1, seed=0)
    for levels in sampler._levels:
        assert any(np.array_equal(levels[0], lrs[n, 4]) for n in hrs)


def test_div2k_sibling_layout_is_detected(tmp_path: Path) -> None:
    hrs = {"0801": _rgb(16, 16, 5)}
    hr_dir, lr_dir, lrs = _div2k(tmp_path, "valid", hrs, [2])
    images = open_image_set(hr_dir, 2)
    assert str(lr_dir) in images.description
    np.testing.assert_array_equal(images[0].lr[0], lrs["0801", 2])
    # without the sibling, the same folder is a plain HR folder with generated LR
    lr_dir.rename(tmp_path / "elsewhere")
    plain = open_image_set(hr_dir, 2)
    np.testing.assert_array_equal(plain[0].lr[0], make_lr(hrs["0801"], 2))


def test_lr_dir_missing_x2_for_x4_is_generated(tmp_path: Path) -> None:
    hr = _rgb(16, 16, 6)
    hr_dir, lr_dir, lrs = _div2k(tmp_path, "train", {"0001": hr}, [4])
    images = open_image_set(hr_dir, 4, lr_dir=lr_dir)
    assert images.notes == ["LR X2 made from HR (no X2 folder)"]
    assert "LR X2 made from HR (no X2 folder)" in images.description
    np.testing.assert_array_equal(images[0].lr[0], lrs["0001", 4])
    np.testing.assert_array_equal(images[0].lr[1], make_lr(hr, 2))


def _one_line_error(match: str, call: Callable[[], object]) -> None:
    with pytest.raises(SrpruneError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_lr_dir_bad_inputs(tmp_path: Path) -> None:
    hrs = {"0001": _rgb(16, 16, 1), "0002": _rgb(16, 16, 2)}
    hr_dir, lr_dir, _ = _div2k(tmp_path, "train", hrs, [2, 4])

    def open_x4():
        return open_image_set(hr_dir, 4, lr_dir=lr_dir)

    # scale mismatch
    _save(lr_dir / "X2" / "0002x2.png", _rgb(7, 8))
    _one_line_error(r"scale mismatch: LR file .*0002x2\.png", open_x4)
    _save(lr_dir / "X2" / "0002x2.png", _rgb(8, 8))
    # unreadable LR file
    (lr_dir / "X4" / "0001x4.png").write_bytes(b"not a png" * 10)
    _one_line_error(r"cannot read image .*0001x4\.png", open_x4)
    _save(lr_dir / "X4" / "0001x4.png", _rgb(4, 4))
    # unreadable HR file
    (hr_dir / "0002.png").write_bytes(b"not a png" * 10)
    _one_line_error(r"cannot read image .*0002\.png", open_x4)
    _save(hr_dir / "0002.png", hrs["0002"])
    # HR image without its LR file
    (lr_dir / "X4" / "0002x4.png").unlink()
    _one_line_error(r"missing LR file .*X4.0002x4\.png for HR image .*0002\.png", open_x4)
    # LR folder with no images
    (lr_dir / "X4" / "0001x4.png").unlink()
    _one_line_error(r"no images .*X4", open_x4)
    # the final scale's folder missing
    (lr_dir / "X4").rmdir()
    _one_line_error(r"missing LR folder .*X4", open_x4)
    # pointing --lr-dir at X2 itself
    _one_line_error(r"missing LR folder .*X2.X2.*not X2/ itself",
                    lambda: open_image_set(hr_dir, 2, lr_dir=lr_dir / "X2"))
    # lr_dir that does not exist
    _one_line_error(r"LR folder not found: .*ghost",
                    lambda: open_image_set(hr_dir, 4, lr_dir=tmp_path / "ghost"))
    _one_line_error(r"needs an HR folder", lambda: open_image_set(None, 4, lr_dir=lr_dir))


def test_cli_eval_with_lr_dir(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from srprune.cli import main

    hrs = {"0001": _rgb(48, 48, 1), "0002": _rgb(48, 40, 2)}
    hr_dir = tmp_path / "HRimgs"
    lr_dir = tmp_path / "LRimgs"
    for name, hr in hrs.items():
        _save(hr_dir / f"{name}.png", hr)
        _save(lr_dir / "X4" / f"{name}x4.png", make_lr(hr, 4).astype(np.uint8))
    result = CliRunner().invoke(main, ["eval", "drn-t", "--data", str(hr_dir), "--lr-dir",
                                       str(lr_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [row["name"] for row in report["per_image"]] == ["0001", "0002"]
    assert report["data_notes"] == ["LR X2 made from HR (no X2 folder)"]
    result = CliRunner().invoke(main, ["eval", "drn-t", "--data", str(hr_dir), "--lr-dir",
                                       str(tmp_path / "nope"), "--json"])
    assert result.exit_code != 0 and "LR folder not found" in result.output


def test_builtin_eval_set_is_lazy_and_offline() -> None:
    images = open_image_set(None, 4)
    assert (
        images.names
        == list(BUILTIN_IMAGES)
        == ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field"]
    )
    pair = builtin_eval_set(4)[2]  # coffee, 400x600
    assert pair.name == "coffee" and pair.hr.shape == (400, 600, 3)
    assert [lv.shape for lv in pair.lr] == [(100, 150, 3), (200, 300, 3)]


# ---------------------------------------------------------------- PatchSampler


def _augmentations(img: np.ndarray) -> list[np.ndarray]:
    """All 8 flip/transpose variants, written independently of the sampler."""
    out = []
    for h, v, t in itertools.product([False, True], repeat=3):
        a = np.flip(img, 1) if h else img
        a = np.flip(a, 0) if v else a
        out.append(np.swapaxes(a, 0, 1) if t else a)
    return out


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def test_sampler_shapes_and_types() -> None:
    sampler = PatchSampler([_rgb(40, 48)], scale=8, lr_patch=3, batch=5, seed=0)
    lr_list, hr = sampler.next_batch()
    assert [tuple(t.shape) for t in lr_list] == [(5, 3, 3, 3), (5, 3, 6, 6), (5, 3, 12, 12)]
    assert tuple(hr.shape) == (5, 3, 24, 24)
    for t in [*lr_list, hr]:
        assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 255
    assert hr.max() > 1  # [0, 255], not [0, 1]


def test_sampler_patches_are_aligned_crops_with_joint_augmentation() -> None:
    hr_img = _rgb(48, 40, seed=5)
    reference = lr_pyramid(hr_img, 4)  # [LR_4 12x10, LR_2 24x20]
    sampler = PatchSampler([hr_img], scale=4, lr_patch=3, batch=40, seed=11)
    lr_list, hr = sampler.next_batch()
    seen_augs = set()
    for n in range(hr.shape[0]):
        matches = []
        for y, x in itertools.product(range(10), range(8)):  # corners on multiples of 4
            variants = _augmentations(hr_img[4 * y : 4 * y + 12, 4 * x : 4 * x + 12])
            for k, v in enumerate(variants):
                if np.array_equal(v, _hwc(hr[n])):
                    matches.append((y, x, k))
        assert len(matches) == 1, f"sample {n}: HR patch is not an aligned crop"
        y, x, k = matches[0]
        seen_augs.add(k)
        for level, patches, r in zip(reference, lr_list, [1, 2], strict=True):
            crop = level[y * r : (y + 3) * r, x * r : (x + 3) * r]  # r = LR px per 4 HR px
            np.testing.assert_array_equal(_augmentations(crop)[k], _hwc(patches[n]))
    assert len(seen_augs) >= 5  # all three augmentations are in use


def test_sampler_is_deterministic_per_seed() -> None:
    images = [_rgb(32, 32, 1), _rgb(40, 36, 2)]
    a = PatchSampler(images, 2, 4, 3, seed=7)
    b = PatchSampler(images, 2, 4, 3, seed=7)
    c = PatchSampler(images, 2, 4, 3, seed=8)
    for _ in range(3):
        (la,), ha = a.next_batch()
        (lb,), hb = b.next_batch()
        _, hc = c.next_batch()
        assert torch.equal(la, lb) and torch.equal(ha, hb)
    assert not torch.equal(ha, hc)


def test_sampler_resume_from_state_dict() -> None:
    images = [_rgb(32, 32, 1), _rgb(40, 36, 2)]
    first = PatchSampler(images, 4, 2, 4, seed=3)
    first.next_batch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    expected = [first.next_batch() for _ in range(2)]
    resumed = PatchSampler(images, 4, 2, 4, seed=999)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.batches_drawn == 1
    for (lr_exp, hr_exp), (lr_got, hr_got) in zip(
        expected, [next(resumed), next(resumed)], strict=True
    ):
        assert torch.equal(hr_exp, hr_got)
        assert all(torch.equal(x, y) for x, y in zip(lr_exp, lr_got, strict=True))


def test_sampler_state_is_a_snapshot_and_checked() -> None:
    sampler = PatchSampler([_rgb(32, 32)], 2, 4, 2, seed=0)
    state = sampler.state_dict()
    saved = copy.deepcopy(state)
    sampler.next_batch()
    assert state == saved
    other = PatchSampler([_rgb(32, 32)], 2, 5, 2, seed=0)
    with pytest.raises(SrpruneError, match="sampler state"):
        other.load_state_dict(state)


def test_sampler_uses_image_set_lr_files(tmp_path: Path) -> None:
    hr_img = _rgb(16, 16)
    root = _benchmark(tmp_path, {"a": hr_img}, [2])
    (root / "LR_bicubic" / "X2" / "ax2.png").unlink()
    _save(root / "LR_bicubic" / "X2" / "ax2.png", np.full((8, 8, 3), 9, np.uint8))
    sampler = PatchSampler(open_image_set(root, 2), 2, 8, 2, seed=0)
    (lr,), _ = sampler.next_batch()
    assert torch.all(lr == 9)
    with pytest.raises(SrpruneError, match="x2"):
        PatchSampler(open_image_set(root, 2), 4, 2, 1)


def test_sampler_rejects_small_images() -> None:
    with pytest.raises(SrpruneError, match=r"image #1 is 20x16 .*HR patch 24x24"):
        PatchSampler([_rgb(40, 40), _rgb(21, 18)], scale=4, lr_patch=6, batch=2)
    with pytest.raises(SrpruneError, match="HxWx3"):
        PatchSampler([np.zeros((40, 40))], scale=2, lr_patch=4, batch=1)


def test_compress_and_train_read_separate_lr_folders(tmp_path):
    """--lr-dir reaches calibration, fine-tuning and training; without --data it is refused."""
    from click.testing import CliRunner
    from PIL import Image

    from srprune.cli import main
    from srprune.data.images import make_lr

    rng = np.random.default_rng(3)
    hr_dir, lr_dir = tmp_path / "x_HR", tmp_path / "lrs"
    hr_dir.mkdir()
    (lr_dir / "X4").mkdir(parents=True)
    for name in ("a", "b"):
        hr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(hr).save(hr_dir / f"{name}.png")
        lr = np.clip(np.round(make_lr(hr, 4)), 0, 255).astype(np.uint8)
        Image.fromarray(lr).save(lr_dir / "X4" / f"{name}x4.png")
    runner = CliRunner()
    result = runner.invoke(main, ["compress", "drn-t", "--ratio", "0.3", "--data", str(hr_dir),
                                  "--lr-dir", str(lr_dir), "--calib-batches", "1",
                                  "--calib-batch", "2", "--calib-patch", "8",
                                  "--finetune-steps", "1", "--finetune-batch", "2",
                                  "--finetune-patch", "8", "--out", str(tmp_path / "m.srp")])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(main, ["train", str(tmp_path / "m.srp"), "--data", str(hr_dir),
                                  "--lr-dir", str(lr_dir), "--steps", "1", "--batch", "2",
                                  "--patch", "8", "--out", str(tmp_path / "t.srp")])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(main, ["compress", "drn-t", "--ratio", "0.3", "--lr-dir", str(lr_dir),
                                  "--out", str(tmp_path / "n.srp")])
    assert result.exit_code == 2 and "--lr-dir needs --data" in result.stderr
