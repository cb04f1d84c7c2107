"""Quantization-aware fine-tuning: fake quantization, its removal, and ``export --qat-steps``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from srprune.data.images import open_image_set
from srprune.deploy.qat import (
    FakeQuantSpec,
    FloatLayers,
    QatSettings,
    fake_quant_psnr,
    fake_quantized,
    finetune_qat,
    float_layers,
    scope_module,
)
from srprune.errors import SrpruneError
from srprune.measure.export import export_onnx
from srprune.measure.onnx_file import open_onnx
from srprune.measure.quantize import Int8Quantizer
from srprune.models import build_model
from srprune.models.artifacts import save_artifact
from tests.test_deploy import _eval_set, _images, run

SIZE = ["--input-size", "16", "16"]


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()


def _batch(n: int = 4, side: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("qat")
    torch.manual_seed(1)
    sr = build_model("espcn", 4, pretrained=False).eval()
    model = root / "tiny.srp"
    save_artifact(sr, model)
    lr = Path(_images(root / "lr", 2, 20, 1))
    return {"root": root, "model": str(model), "sr": sr,
            "data": _images(root / "train", 3, 96, 0),
            "eval": _eval_set(root / "eval", sr, lr)}


def test_weights_take_at_most_255_levels_per_channel() -> None:
    net = _net()
    with fake_quantized(net):
        for conv in (net[0], net[2], net[4]):
            w = conv.weight.detach()
            assert not torch.equal(w, conv.parametrizations.weight.original)
            scale = w.abs().amax(dim=(1, 2, 3)) / 127
            steps = w / scale[:, None, None, None]
            assert torch.allclose(steps, steps.round(), atol=1e-3)
            assert steps.abs().max() <= 127 + 1e-3
            for channel in w:
                assert len(torch.unique(channel)) <= 255


def test_reduce_range_uses_7_bit_weights() -> None:
    net = _net()
    with fake_quantized(net, FakeQuantSpec(reduce_range=True)):
        w = net[2].weight.detach()
        steps = w / (w.abs().amax(dim=(1, 2, 3)) / 64)[:, None, None, None]
        assert torch.allclose(steps, steps.round(), atol=1e-3)
        assert all(len(torch.unique(c)) <= 129 for c in w)


@pytest.mark.parametrize("kind,low,high", [("uint8", 0, 255), ("int8", -128, 127)])
def test_activations_snap_to_the_calibrated_grid(kind: str, low: int, high: int) -> None:
    net = _net()
    seen: list[torch.Tensor] = []
    with fake_quantized(net, FakeQuantSpec(activations=kind)) as fq:
        fq.calibrate(net, _batch())
        fq.set_observe(False)
        handle = net[2].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        net(_batch(seed=1) * 1.5)  # beyond the calibrated range: clipped
        handle.remove()
        scale, zero = fq.grids()["2"]
    levels = seen[0] / scale + zero
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert levels.min() >= low - 1e-3 and levels.max() <= high + 1e-3
    assert len(torch.unique(seen[0])) <= high - low + 1
    # the ReLU output is >= 0: the range starts at 0, as ORT's MinMax makes it
    with torch.no_grad():
        top = float(torch.relu(net[0](_batch())).max())
    assert scale == pytest.approx(top / (high - low), rel=1e-3)


def test_detach_restores_the_float_model_exactly() -> None:
    net = _net()
    x = _batch()
    before = net(x)
    keys = list(net.state_dict())
    params = [id(p) for p in net.parameters()]
    types = [type(m) for m in net.modules()]
    with fake_quantized(net) as fq:
        fq.calibrate(net, x)
        assert not torch.equal(net(x), before)
        assert list(net.state_dict()) != keys
    assert torch.equal(net(x), before)
    assert list(net.state_dict()) == keys
    assert [id(p) for p in net.parameters()] == params
    assert [type(m) for m in net.modules()] == types
    assert all(not m._forward_pre_hooks for m in net.modules())


def test_detach_happens_on_errors_too() -> None:
    net = _net()
    keys = list(net.state_dict())
    with pytest.raises(RuntimeError), fake_quantized(net):
        raise RuntimeError("boom")
    assert list(net.state_dict()) == keys and all(
        not m._forward_pre_hooks for m in net.modules())


def test_gradients_pass_straight_through() -> None:
    net = _net()
    with fake_quantized(net) as fq:
        fq.calibrate(net, _batch())
        fq.set_observe(False)
        net(_batch()).mean().backward()
        for conv in (net[0], net[2], net[4]):
            grad = conv.parametrizations.weight.original.grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    conv = nn.Conv2d(2, 2, 1)
    coeff = torch.randn_like(conv.weight)
    with fake_quantized(conv):
        (conv.weight * coeff).sum().backward()
    assert torch.allclose(conv.weight.grad, coeff)  # identity gradient: STE


def test_skipped_layers_stay_float() -> None:
    net = _net()
    x = _batch()
    with fake_quantized(net, skip=FloatLayers(frozenset({"0", "2"}), frozenset({"2"}))) as fq:
        assert set(fq.weights) == {"4"} and set(fq.inputs) == {"0", "4"}
        assert torch.equal(net[2].weight, net[2].weight.detach())
        assert not hasattr(net[2], "parametrizations")
        fq.calibrate(net, x)


def test_training_through_fake_quant_reduces_its_error() -> None:
    """Distillation to the float net through fake quantization, at a low decaying learning
    rate as QAT runs it: the rounded net gets closer to the float one (7-bit weights and
    int8 activations, so the error is large to begin with)."""
    teacher = _net()
    student = copy.deepcopy(teacher)
    x = _batch(8, 16)
    with torch.no_grad():
        target = teacher(x)
    spec = FakeQuantSpec(activations="int8", reduce_range=True)
    with fake_quantized(student, spec) as fq:
        fq.calibrate(student, x)
        fq.set_observe(False)

        def error() -> float:
            with torch.no_grad():
                return float((student(x) - target).abs().mean())

        start = error()
        opt = torch.optim.Adam(student.parameters(), lr=2e-5)
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / 40)
        for _ in range(40):
            opt.zero_grad()
            (student(x) - target).abs().mean().backward()
            opt.step()
            decay.step()
        end = error()
    assert end < 0.8 * start, (start, end)


def test_finetune_qat_trains_a_copy(files) -> None:
    sr = files["sr"]
    original = {k: v.clone() for k, v in sr.net.state_dict().items()}
    images = open_image_set(files["data"], 4)
    calib = [np.random.default_rng(0).random((3, 16, 16), dtype=np.float32) * 255]
    result = finetune_qat(sr, images, calib, QatSettings(3, lr=1e-3, batch=2, patch=12))
    assert all(torch.equal(v, sr.net.state_dict()[k]) for k, v in original.items())
    tuned = result.model.net.state_dict()
    assert list(tuned) == list(original)
    assert result.weight_change > 0
    assert any(not torch.equal(tuned[k], v) for k, v in original.items())
    assert result.fake_weights == result.fake_inputs == 3  # espcn: three convs
    assert np.isfinite([result.loss_first, result.loss_last, result.torch_psnr_before,
                        result.torch_psnr_after]).all()
    assert result.settings["patch"] == 12 and result.settings["steps"] == 3
    with pytest.raises(SrpruneError, match="steps"):
        QatSettings(0)
    with pytest.raises(SrpruneError, match="--qat-lr"):
        QatSettings(1, lr=float("nan"))


def test_fake_quant_psnr_is_finite_and_reversible() -> None:
    net = _net()
    x = _batch()
    with fake_quantized(net) as fq:
        fq.calibrate(net, x)
        value = fake_quant_psnr(net, fq, x)
        assert 20 < value < 100
        assert fq.weights["0"].enabled  # fake quantization is back on afterwards


def test_scope_names_map_to_modules() -> None:
    modules = dict.fromkeys(["up_blocks.0.0.body.0", "down.0.dual_module.0.0", "tail.2",
                             "sub_mean", "body.body"])
    cases = {"/net/up_blocks.0/up_blocks.0.0/body/body.0/Conv": "up_blocks.0.0.body.0",
             "/net/down.0/dual_module/dual_module.0/dual_module.0.0/Conv":
                 "down.0.dual_module.0.0",
             "/net/tail.2/Conv": "tail.2", "/net/sub_mean/Conv_1": "sub_mean",
             "/net/body/body/Conv": "body.body", "/net/other/Conv": None, "Conv_3": None}
    for node, module in cases.items():
        assert scope_module(node, modules) == module, node


def test_onnx_float_groups_map_to_modules(tmp_path) -> None:
    torch.manual_seed(0)
    sr = build_model("espcn", 4, pretrained=False).eval()
    export_onnx(sr, tmp_path / "m.onnx", (16, 16))
    quantizer = Int8Quantizer(tmp_path / "m.onnx", [np.ones((3, 16, 16), np.float32)],
                              tmp_path)
    _, second, _ = quantizer.weight_nodes()
    convs = [name for name, m in sr.net.named_modules() if isinstance(m, nn.Conv2d)]
    assert float_layers(quantizer.pre_path, sr.net, []) == FloatLayers()
    skip = float_layers(quantizer.pre_path, sr.net, quantizer.float_group(second))
    # the middle conv and its input's producer (the first conv's tanh, not a conv) are
    # excluded: float weights for the middle conv, and its input tensor stays float
    assert skip.weights == {convs[1]} and skip.inputs == {convs[1]} and not skip.unmapped
    skip = float_layers(quantizer.pre_path, sr.net, [second])  # alone: input still quantized
    assert skip.weights == {convs[1]} and skip.inputs == frozenset()


def test_cli_qat_options_are_checked(files, tmp_path) -> None:
    out = tmp_path / "x.onnx"
    base = ["export", files["model"], "--onnx", str(out), *SIZE]
    int8 = [*base, "--int8", "--data", files["data"]]
    cases = [
        ([*int8, "--qat-steps", "-1"], "--qat-steps must be"),
        ([*base, "--qat-steps", "2"], "needs --int8"),
        ([*base, "--int8", "--qat-steps", "2"], "--data"),
        ([*int8, "--qat-lr", "1e-4"], "needs --qat-steps"),
        ([*int8, "--qat-steps", "2", "--qat-lr", "-1"], "--qat-lr must be"),
        ([*int8, "--qat-steps", "two"], "--qat-steps"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error:") and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


@pytest.fixture(scope="module")
def qat_export(files) -> dict:
    out = files["root"] / "qat.onnx"
    result = run("export", files["model"], "--onnx", str(out), *SIZE, "--int8",
                 "--data", files["data"], "--eval", files["eval"], "--max-drop", "0",
                 "--max-float", "0", "--calib-patches", "4", "--runs", "2",
                 "--qat-steps", "2", "--json")
    assert result.exit_code == 0, result.output
    return {"path": out, "report": json.loads(result.stdout)}


def test_export_with_qat_reports_before_and_after(qat_export) -> None:
    rep = qat_export["report"]
    qat = rep["qat"]
    assert qat["steps"] == 2 and qat["ran"] is True
    assert qat["train"]["settings"]["steps"] == 2 and qat["train"]["fake_weights"] == 3
    assert qat["drop_before"] > 0 and np.isfinite(qat["drop_after"])
    assert qat["kept"] == (qat["drop_after"] < qat["drop_before"])
    written = qat["drop_after"] if qat["kept"] else qat["drop_before"]
    assert rep["drop"] == pytest.approx(written, abs=1e-6)
    assert rep["plain_ptq"]["drop_db"] == pytest.approx(
        qat["plain_ptq_drop_after"] if qat["kept"] else qat["plain_ptq_drop_before"], abs=1e-6)
    assert rep["float_layers"] == [] and not rep["target_met"]
    graph = onnx.load(str(qat_export["path"]))
    onnx.checker.check_model(graph)
    assert [n.op_type for n in graph.graph.node].count("DequantizeLinear") > 0
    run_int8 = open_onnx(qat_export["path"]).upscaler()
    assert run_int8(np.full((16, 16, 3), 100, np.float32)).shape == (64, 64, 3)


def test_export_with_qat_text_report(files, tmp_path) -> None:
    out = tmp_path / "qat-text.onnx"
    result = run("export", files["model"], "--onnx", str(out), *SIZE, "--int8",
                 "--data", files["data"], "--eval", files["eval"], "--max-drop", "0",
                 "--max-float", "1", "--calib-patches", "4", "--runs", "2",
                 "--qat-steps", "2", "--qat-lr", "1e-4")
    assert result.exit_code == 0, result.output
    assert "QAT: 2 steps at lr 0.0001" in result.output
    assert "would be the next step" not in result.output
    assert "INT8 before QAT" in result.output or "INT8 after QAT" in result.output
    assert out.exists()


def test_qat_not_run_when_ptq_meets_the_target(files, tmp_path) -> None:
    out = tmp_path / "easy.onnx"
    result = run("export", files["model"], "--onnx", str(out), *SIZE, "--int8",
                 "--data", files["data"], "--eval", files["eval"], "--max-drop", "50",
                 "--max-float", "0", "--calib-patches", "4", "--runs", "2",
                 "--qat-steps", "2", "--json")
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["target_met"] and rep["qat"]["ran"] is False and rep["qat"]["drop_after"] is None
