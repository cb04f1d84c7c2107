"""``srprune upscale``: tiles that equal the whole, every picture mode kept, files safe."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageOps

from srprune.cli import main
from srprune.upscale.image_io import (
    encode_picture,
    orient,
    png16_bytes,
    read_picture,
)
from srprune.upscale.tiling import auto_tile, plan_tiles, upscale_tiled

RNG = np.random.default_rng(0)


def noise(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like picture (smooth colour fields and an edge), uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * x + rng.random()), np.cos(5 * y), np.sin(4 * (x + y))], -1)
    img = 127 + 100 * base + 20 * (x > 0.5)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def edsr_small():
    """A zoo model with a known, finite receptive field (no attention): EDSR, 2 blocks."""
    from srprune.models import build_model

    torch.manual_seed(0)
    return build_model("edsr-baseline", 4, pretrained=False, n_resblocks=2, n_feats=16).eval()


# ------------------------------------------------------------------ tiling


@pytest.mark.parametrize(("size", "tile", "pad"), [((37, 53), 16, 4), ((8, 9), 8, 0),
                                                    ((64, 64), 64, 8), ((100, 7), 10, 3)])
def test_tiles_cover_the_image_once(size, tile, pad):
    tiles = plan_tiles(size, tile, pad, minimum=8)
    covered = np.zeros(size, dtype=int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        covered[y0:y1, x0:x1] += 1
        wy0, wy1, wx0, wx1 = t.window
        assert wy0 <= y0 and wy1 >= y1 and wx0 <= x0 and wx1 >= x1
        assert min(t.input_size) >= min(8, *size)  # windows widened to the minimum
        assert y1 - y0 <= tile and x1 - x0 <= tile
    assert (covered == 1).all()


def test_tiled_equals_untiled_where_the_receptive_field_fits_the_pad(edsr_small):
    """EDSR (2 blocks, x4) sees about 8 LR pixels around a pixel: with 12 pixels of overlap
    the tiles stitch to the untiled output within float noise (far below 1/255); with no
    overlap the seams show."""
    from srprune.upscale.runner import open_upscaler

    up = open_upscaler(edsr_small, "edsr", "torch")
    lr = np.ascontiguousarray(smooth(45, 61).astype(np.float32).transpose(2, 0, 1))
    whole = up.run(lr)
    tiled = upscale_tiled(up.run, lr, 4, plan_tiles((45, 61), 16, 12, up.minimum))
    assert tiled.shape == whole.shape == (3, 180, 244)
    assert np.abs(tiled - whole).max() < 1e-2  # on 0..255: 1/255 of the range is 1.0
    seams = upscale_tiled(up.run, lr, 4, plan_tiles((45, 61), 16, 0, up.minimum))
    assert np.abs(seams - whole).max() > 1.0


def test_tiled_onnx_runtime_matches_torch(edsr_small):
    """ORT on srprune's export, tiled, against torch untiled: within 1/255 (0..255 scale)."""
    from srprune.upscale.runner import open_upscaler

    torch_up = open_upscaler(edsr_small, "edsr", "torch")
    ort_up = open_upscaler(edsr_small, "edsr", "ort")
    try:
        lr = np.ascontiguousarray(smooth(40, 36, seed=1).astype(np.float32).transpose(2, 0, 1))
        tiled = upscale_tiled(ort_up.run, lr, 4, plan_tiles((40, 36), 16, 12, 8))
        assert ort_up.runtime == "onnxruntime" and ort_up.onnx_path.is_file()
        assert np.abs(tiled - torch_up.run(lr)).max() < 1.0
    finally:
        ort_up.close()
    assert not ort_up.onnx_path.exists()  # the temporary export is gone


def test_auto_tile_follows_memory():
    assert auto_tile(None, 10**9, 16, 8) == 512
    small = auto_tile(2048, 200 * 2**20, 16, 8)
    big = auto_tile(2048, 16 * 2**30, 16, 8)
    assert 8 <= small < big <= 2048 and small % 8 == 0
    assert 3 * 2048 * (small + 32) ** 2 <= 0.25 * 200 * 2**20


# ------------------------------------------------------------------ pictures


def test_sixteen_bit_rgb_and_rgba_png_round_trip(tmp_path):
    for channels in (3, 4):
        samples = RNG.integers(0, 65536, (13, 17, channels), dtype=np.uint16)
        path = tmp_path / f"x{channels}.png"
        path.write_bytes(png16_bytes(samples))
        picture = read_picture(path)
        assert picture.depth == 16 and not picture.grey
        restored = np.dstack([picture.rgb] + ([picture.alpha] if channels == 4 else []))
        assert np.array_equal(np.rint(restored.astype(np.float64) * 257).astype(np.uint16),
                              samples)
        again = tmp_path / f"y{channels}.png"
        again.write_bytes(encode_picture(picture, "png"))
        back = read_picture(again)
        assert np.array_equal(back.rgb, picture.rgb)


def test_sixteen_bit_grey_keeps_its_low_bits(tmp_path):
    samples = ((np.arange(12 * 10).reshape(12, 10) * 541) % 65536).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(samples).save(path)
    picture = read_picture(path)
    assert picture.grey and picture.depth == 16
    out = tmp_path / "o.png"
    out.write_bytes(encode_picture(picture, "png"))
    with Image.open(out) as im:
        assert im.mode.startswith("I;16")
        assert np.array_equal(np.asarray(im), samples)


def test_exif_orientation_is_applied_as_pillow_does(tmp_path):
    pixels = noise(6, 9)
    for orientation in range(1, 9):
        im = Image.fromarray(pixels)
        exif = im.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        im.save(path, exif=exif, quality=100)
        with Image.open(path) as src:
            expected = np.asarray(ImageOps.exif_transpose(src).convert("RGB"), dtype=np.float32)
        assert np.array_equal(read_picture(path).rgb, expected), orientation
    assert np.array_equal(orient(pixels, 6), np.rot90(pixels, -1))


def test_palette_with_transparency_becomes_rgba(tmp_path):
    im = Image.fromarray(noise(10, 12)).convert("P")
    im.info["transparency"] = 0
    path = tmp_path / "p.png"
    im.save(path, transparency=0)
    picture = read_picture(path)
    assert picture.alpha is not None and picture.depth == 8 and not picture.grey


def test_corrupt_file_is_one_line(tmp_path):
    from srprune.errors import SrpruneError

    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(SrpruneError, match=r"bad.png: not a readable image"):
        read_picture(path)


# ------------------------------------------------------------------ the command


def run(args: list[str], cwd: Path):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, args)
    finally:
        os.chdir(old)


@pytest.fixture()
def pictures(tmp_path: Path) -> Path:
    """A folder of every kind of picture the command keeps as it was."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(smooth(20, 24)).save(src / "rgb.png")
    rgba = np.dstack([smooth(20, 16), np.tile(np.linspace(0, 255, 16), (20, 1))])
    Image.fromarray(rgba.astype(np.uint8)).save(src / "rgba.png")
    Image.fromarray(smooth(16, 18)[..., 0]).save(src / "grey.png")
    (src / "deep16.png").write_bytes(png16_bytes(
        smooth(16, 16).astype(np.uint16) * 256 + 7))
    Image.fromarray(smooth(16, 20)).save(src / "sub" / "nested.jpg", quality=95)
    return src


def test_every_mode_comes_out_as_it_went_in(pictures: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = run(["upscale", "drn-t", str(pictures), "--out", str(out), "--tile", "12",
                  "--tile-pad", "4"], tmp_path)
    assert result.exit_code == 0, result.output
    with Image.open(out / "rgb.png") as im:
        assert (im.mode, im.size) == ("RGB", (96, 80))
    with Image.open(out / "rgba.png") as im:
        assert (im.mode, im.size) == ("RGBA", (64, 80))
        alpha = np.asarray(im)[..., 3].astype(float)
    # alpha went through on its own: a left-to-right ramp stays one (not the colour's)
    assert np.corrcoef(alpha.mean(axis=0), np.arange(64))[0, 1] > 0.99
    with Image.open(out / "grey.png") as im:
        assert (im.mode, im.size) == ("L", (72, 64))
    assert not (out / "sub").exists()  # not recursive
    with Image.open(out / "deep16.png") as im:
        assert im.size == (64, 64)
    deep = read_picture(out / "deep16.png")
    assert deep.depth == 16
    assert len(np.unique(np.rint(deep.rgb * 257) % 257)) > 1  # not 8-bit values * 257
    assert re.search(r"4 image\(s\) upscaled x4 .*MP/s out", result.stdout)


def test_recursive_mirrors_subfolders_and_refuses_overwrite(pictures: Path, tmp_path: Path):
    out = tmp_path / "out"
    args = ["upscale", "drn-t", str(pictures / "sub"), str(pictures / "rgb.png"), "--out",
            str(out), "--recursive", "--tile", "0"]
    assert run(args, tmp_path).exit_code == 0
    nested = out / "nested.png"
    assert nested.is_file() and (out / "rgb.png").is_file()
    before = nested.read_bytes()
    again = run(args, tmp_path)
    assert again.exit_code == 2
    assert again.stderr.strip().startswith("error:") and "--force" in again.stderr
    assert nested.read_bytes() == before
    assert run([*args, "--force"], tmp_path).exit_code == 0


def test_a_corrupt_image_among_good_ones(pictures: Path, tmp_path: Path):
    (pictures / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    result = run(["upscale", "drn-t", str(pictures), "--out", str(out)], tmp_path)
    assert result.exit_code == 2
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["deep16.png", "grey.png", "rgb.png",
                                                     "rgba.png"]
    assert "1 could not be upscaled" in result.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_onnx_runtime_and_an_onnx_file_give_the_torch_result(tmp_path: Path, edsr_small):
    from srprune.measure.export import export_onnx

    Image.fromarray(smooth(24, 20)).save(tmp_path / "a.png")
    export_onnx(edsr_small, tmp_path / "m.onnx")
    results = {}
    for name, model, extra in (("torch", "m.onnx", ["--runtime", "torch"]),
                               ("ort", "m.onnx", []), ("tiled", "m.onnx", ["--tile", "8"])):
        out = tmp_path / name
        result = run(["upscale", model, "a.png", "--out", str(out), *extra], tmp_path)
        assert result.exit_code == 0, result.output
        results[name] = np.asarray(Image.open(out / "a.png"), dtype=int)
    assert "onnxruntime" in result.stdout
    assert np.abs(results["ort"] - results["torch"]).max() <= 1
    assert np.abs(results["tiled"] - results["ort"]).max() <= 1


def test_compare_writes_a_self_contained_page(tmp_path: Path):
    from srprune.api import compress_model
    from srprune.models import build_model
    from srprune.models.artifacts import save_artifact

    model = build_model("drn-t", 4)
    compress_model(model, 0.5)
    save_artifact(model, tmp_path / "half.srp")
    Image.fromarray(smooth(40, 48)).save(tmp_path / "photo.png")
    result = run(["upscale", "--compare", "drn-t", "half.srp", "photo.png", "--out", "cmp"],
                 tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cmp" / "drn-t" / "photo.png").is_file()
    assert (tmp_path / "cmp" / "half" / "photo.png").is_file()
    text = (tmp_path / "cmp" / "compare.html").read_text()
    assert "http://" not in text and "https://" not in text and "src=\"data:image/png" in text
    crops = re.findall(r'<img class="crop" alt="([^"]+)" src="data:image/png;base64,([^"]+)"',
                       text)
    labels = [alt.rsplit(": ", 1)[1] for alt, _ in crops]
    assert labels[:3] == ["bicubic", "drn-t", "half"]
    assert len(crops) % 3 == 0 and len(crops) >= 3
    import base64

    crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(crops[2][1]))))
    assert crop.ndim == 3 and crop.shape[0] == crop.shape[1] >= 32 and crop.std() > 0
    assert "dB vs drn-t" in text
