"""``srprune export`` (FP32 and INT8 ONNX), and ``bench``/``eval`` of ``.onnx`` files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main
from srprune.data.images import open_image_set
from srprune.measure.onnx_file import open_onnx
from srprune.models import build_model
from srprune.models.artifacts import save_artifact
from srprune.quality.evaluate import sr_function
from srprune.quality.metrics import psnr_y

SIZE = ["--input-size", "16", "16"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def _images(folder, n: int, side: int, seed: int) -> str:
    """Smooth random RGB images (so x4 SR is not hopeless), ``side`` px square."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for i in range(n):
        phase = rng.random(3) * 6
        img = np.stack([127 + 100 * np.sin(4 * xx + 3 * yy + p) for p in phase], axis=2)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return str(folder)


def _eval_set(folder, sr, lr_folder) -> str:
    """A benchmark-layout eval set whose HR is the model's own FP32 output plus a little
    noise: the random-weight test net is then a good model of it (finite PSNR, about 45
    dB), so any quantization damage shows as a positive drop."""
    (folder / "HR").mkdir(parents=True)
    (folder / "LR_bicubic" / "X4").mkdir(parents=True)
    run_sr = sr_function(sr)
    rng = np.random.default_rng(2)
    for path in sorted(lr_folder.iterdir()):
        lr = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(lr).save(folder / "LR_bicubic" / "X4" / f"{path.stem}x4.png")
        hr = run_sr(lr.astype(np.float32)) + rng.normal(0, 1.0, (lr.shape[0] * 4,
                                                                 lr.shape[1] * 4, 3))
        Image.fromarray(np.clip(np.round(hr), 0, 255).astype(np.uint8)).save(
            folder / "HR" / path.name)
    return str(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("deploy")
    model = root / "tiny.srp"
    torch.manual_seed(1)  # random weights, fixed: plain INT8 loses PSNR on them (checked)
    sr = build_model("espcn", 4, pretrained=False).eval()
    save_artifact(sr, model)
    fp32 = root / "tiny.onnx"
    result = run("export", str(model), "--onnx", str(fp32), *SIZE, "--json")
    assert result.exit_code == 0, result.output
    lr_images = Path(_images(root / "lr", 2, 20, 1))
    return {"root": root, "model": str(model), "fp32": str(fp32),
            "export": json.loads(result.stdout), "data": _images(root / "train", 3, 96, 0),
            "eval": _eval_set(root / "eval", sr, lr_images)}


@pytest.fixture(scope="module")
def int8(files) -> dict:
    out = files["root"] / "tiny-int8.onnx"
    result = run("export", files["model"], "--onnx", str(out), *SIZE, "--int8",
                 "--data", files["data"], "--eval", files["eval"], "--max-drop", "0",
                 "--max-float", "2", "--calib-patches", "4", "--runs", "2", "--json")
    assert result.exit_code == 0, result.output
    return {"path": out, "report": json.loads(result.stdout)}


def test_plain_export_is_checked_and_never_overwritten(files) -> None:
    rep = files["export"]
    assert rep["parity_max_abs_diff"] < 1e-3 and rep["scale"] == 4
    before = Path(files["fp32"]).read_bytes()
    again = run("export", files["model"], "--onnx", files["fp32"], *SIZE)
    assert again.exit_code == 2 and again.output.startswith("error:")
    assert "already exists" in again.output
    assert Path(files["fp32"]).read_bytes() == before


def test_eval_of_onnx_matches_eval_of_the_model(files) -> None:
    torch_eval = run("eval", files["model"], "--data", files["eval"], "--json")
    onnx_eval = run("eval", files["fp32"], "--data", files["eval"], "--json")
    assert torch_eval.exit_code == 0 and onnx_eval.exit_code == 0, onnx_eval.output
    a, b = json.loads(torch_eval.stdout), json.loads(onnx_eval.stdout)
    assert b["psnr"] == pytest.approx(a["psnr"], abs=0.01)
    assert b["ssim"] == pytest.approx(a["ssim"], abs=1e-4)


def test_bench_times_onnx_files_beside_models(files) -> None:
    result = run("bench", files["model"], files["fp32"], *SIZE, "--runs", "2", "--warmup", "0",
                 "--json")
    assert result.exit_code == 0, result.output
    model, given = json.loads(result.stdout)
    assert given["exporter"] == "onnx file" and given["parity_max_abs_diff"] is None
    assert given["onnx_file"] == files["fp32"]
    assert given["params"] == model["params"] and given["macs"] == model["macs"]
    assert given["latency_ms"]["median"] > 0 and given["gflops"] > 0


def test_int8_graph_has_qdq_and_float_layers(int8) -> None:
    rep = int8["report"]
    graph = onnx.load(str(int8["path"])).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n.input[1] in dequantized for n in graph.node if n.op_type == "Conv"}
    assert len(rep["float_layers"]) <= 2  # --max-float 2
    assert set(rep["float_layers"]) <= set(rep["float_nodes"])
    # a node kept in FP32 computes in float; ORT still quantizes a weight it shares with a
    # quantized node (DRN's mean shifts), so the float weights are a subset of those nodes
    assert set(rep["float_layers"]) <= set(rep["qdq"]["float_weight_ops"])
    assert set(rep["qdq"]["float_weight_ops"]) <= set(rep["float_nodes"])
    for name, quantized in convs.items():
        assert quantized == (name not in rep["qdq"]["float_weight_ops"]), name
    # the layer's input tensor stays float too: no DequantizeLinear feeds its data input
    for node in graph.node:
        if node.name in rep["float_layers"]:
            assert node.input[0] not in dequantized, node.name
    assert len(rep["sensitivity"]) == len(convs)
    gains = [row["gain_db"] for row in rep["sensitivity"]]
    assert gains == sorted(gains, reverse=True)
    helpful = [row["layer"] for row in rep["sensitivity"] if row["gain_db"] > 0]
    assert rep["float_layers"] == helpful[:len(rep["float_layers"])]
    # --max-drop 0 is out of reach: the greedy tries each helpful layer up to the cap (how
    # many help depends on the CPU's INT8 kernels: fewer with VNNI than on plain AVX2)
    tried = len(rep["trials"]) - 1
    assert tried <= min(len(helpful), 2) and (tried >= 1 or not helpful)
    assert [t["float_layers"] for t in rep["trials"][1:]] == [helpful[:k + 1]
                                                               for k in range(tried)]


def test_int8_report_numbers_are_what_they_say(files, int8) -> None:
    rep = int8["report"]
    pairs = list(open_image_set(files["eval"], 4))
    fp32, q = open_onnx(files["fp32"]).upscaler(), open_onnx(int8["path"]).upscaler()
    ref = [fp32(p.lr[0]) for p in pairs]
    outs = [q(p.lr[0]) for p in pairs]
    vs_fp32 = np.mean([psnr_y(o, np.round(r), 4) for o, r in zip(outs, ref, strict=True)])
    vs_hr = np.mean([psnr_y(o, p.hr, 4) for o, p in zip(outs, pairs, strict=True)])
    assert np.isfinite(rep["psnr_vs_fp32"])
    assert rep["psnr_vs_fp32"] == pytest.approx(vs_fp32, abs=1e-6)
    assert rep["int8_quality"]["psnr"] == pytest.approx(vs_hr, abs=1e-6)
    assert rep["drop"] == pytest.approx(rep["fp32_quality"]["psnr"] - vs_hr, abs=1e-6)
    parity = max(float(np.abs(o.astype(np.float64) - r).max()) for o, r in zip(outs, ref))
    assert rep["parity_max_abs_diff"] == pytest.approx(parity, abs=1e-4)
    lat = rep["latency"]
    assert lat["ratio"] == pytest.approx(lat["int8_ms"] / lat["fp32_ms"])
    assert lat["cpu_ratio"] > 0 and lat["threads"] == 1 and lat["input_size"] == [16, 16]
    assert rep["size"]["ratio"] == pytest.approx(
        int8["path"].stat().st_size / rep["size"]["fp32_bytes"])
    assert rep["plain_ptq"]["drop_db"] > 0 and not rep["target_met"]  # max-drop 0
    assert rep["plain_ptq"]["float_nodes"] == [] and rep["trials"][0] == rep["plain_ptq"]


def test_int8_onnx_runs_in_eval(files, int8) -> None:
    result = run("eval", str(int8["path"]), "--data", files["eval"], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["psnr"] == pytest.approx(
        int8["report"]["int8_quality"]["psnr"], abs=1e-6)


def test_reduce_range_gives_7_bit_weights(files, tmp_path) -> None:
    out = tmp_path / "reduced.onnx"
    result = run("export", files["model"], "--onnx", str(out), *SIZE, "--int8", "--data",
                 files["data"], "--eval", files["eval"], "--max-float", "0", "--reduce-range",
                 "--calib-patches", "2", "--runs", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["reduce_range"] is True
    graph = onnx.load(str(out)).graph
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    quantized = [weights[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] in weights and weights[n.input[0]].dtype == np.int8]
    assert quantized and all(np.abs(w).max() <= 64 for w in quantized)  # 7 bits: [-64, 64]


def test_bad_input_one_line_exit_2(files, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model at all")
    out = str(tmp_path / "x.onnx")
    cases = [
        (["export", files["model"], "--onnx", out, "--int8"], "needs --data"),
        (["export", files["model"], "--onnx", out, "--int8", "--data", str(empty)], "no images"),
        (["export", files["model"], "--onnx", out, "--int8", "--data", files["data"],
          "--max-drop", "-0.5"], "--max-drop"),
        (["export", files["model"], "--onnx", out, "--reduce-range"], "needs --int8"),
        (["bench", str(corrupt)], "not a readable ONNX model"),
        (["eval", str(corrupt)], "not a readable ONNX model"),
        (["eval", str(tmp_path / "missing.onnx")], "not found"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error:") and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "x.onnx").exists()
