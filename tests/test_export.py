"""ONNX export: dynamic axes, self-contained file, opset, parity, errors."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.export import (
    DYNAMO_OPSET,
    LEGACY_OPSET,
    PARITY_TOLERANCE,
    check_input_size,
    check_parity,
    export_onnx,
    first_line,
    onnx_opset,
)
from srprune.measure.session import make_session
from srprune.models.srmodel import SRModel


class TinySR(nn.Module):
    """conv 3->12, ReLU, conv 12->12, PixelShuffle(2): a x2 SR net in two convs."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(12, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x / 255.0) * 255.0


class Unexportable(nn.Module):
    """Uses an op with no ONNX translation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(torch.special.bessel_j0(self.conv(x)))


class EvenOnly(nn.Module):
    """Stride-2 conv then PixelShuffle(4): output is 2x the input only for even sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 48, 3, stride=2, padding=1)
        self.shuffle = nn.PixelShuffle(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class LargeActivations(nn.Module):
    """SPAN-like numerics: input x255 inside, features on a 1e7 offset that the last (1x1,
    zero-mean) conv cancels. Outputs stay in 0..50, but torch float32 is ~5e-3 from float64
    there, above the old absolute 1e-3 limit (ONNX Runtime differed from torch by 1.5e-3)."""

    def __init__(self, offset: float = 1e7) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 16, 3, padding=1)
        self.tail = nn.Conv2d(16, 12, 1)
        self.shuffle = nn.PixelShuffle(2)
        with torch.no_grad():
            self.body.bias.add_(offset)
            self.tail.weight.sub_(self.tail.weight.mean(dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(torch.relu(self.head(x * 255.0)))
        return self.shuffle(self.tail(h)) / 255.0


class Float32Only(nn.Module):
    """Runs in float32 only (a float32 constant mixed in): no float64 reference."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinySR()
        self.register_buffer("gain", torch.ones(1, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise TypeError("float32 only")
        return self.net(x) * self.gain


def large_model() -> SRModel:
    torch.manual_seed(0)
    return SRModel(net=LargeActivations(), scale=2, arch="large")


def scale_conv_weights(path, index: int, factor: float) -> None:
    """Multiply the weights of the ``index``-th Conv node in an ONNX file (a broken layer)."""
    model = onnx.load(str(path))
    name = [n.input[1] for n in model.graph.node if n.op_type == "Conv"][index]
    for init in model.graph.initializer:
        if init.name == name:
            data = numpy_helper.to_array(init).astype(np.float32) * np.float32(factor)
            init.CopyFrom(numpy_helper.from_array(data, name))
    onnx.save(model, str(path))


def tiny(seed: int = 0) -> SRModel:
    torch.manual_seed(seed)
    return SRModel(net=TinySR(), scale=2, arch="tiny")


def test_export_is_one_file_with_dynamic_axes_and_parity(tmp_path) -> None:
    model = tiny()
    result = export_onnx(model, tmp_path / "tiny.onnx", (16, 16))
    assert result.exporter == "legacy"
    assert result.opset == LEGACY_OPSET == onnx_opset(result.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]  # no side/temp files
    assert result.size_bytes == result.path.stat().st_size
    session = make_session(result.path)
    for shape in [(1, 3, 16, 16), (2, 3, 12, 18)]:  # batch and spatial size both vary
        x = torch.rand(*shape) * 255
        out = session.run(None, {"lr": x.numpy()})[0]
        assert out.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
        with torch.no_grad():
            ref = model(x).numpy()
        assert np.abs(out - ref).max() < 1e-3
    parity = check_parity(model, result.path, (20, 28))
    assert parity.max_abs_diff < 1e-3
    assert parity.output_shape == (1, 3, 40, 56)


def test_auto_falls_back_to_dynamo_exporter(tmp_path, monkeypatch) -> None:
    import srprune.measure.export

    real = srprune.measure.export._export

    def legacy_broken(module, example, path, kind):
        if kind == "legacy":
            raise RuntimeError("legacy exporter gone")
        real(module, example, path, kind)

    monkeypatch.setattr(srprune.measure.export, "_export", legacy_broken)
    result = export_onnx(tiny(), tmp_path / "tiny.onnx", (16, 16))
    assert (result.exporter, result.opset) == ("dynamo", DYNAMO_OPSET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]  # external_data=False
    out = make_session(result.path).run(None, {"lr": np.zeros((2, 3, 12, 18), np.float32)})[0]
    assert out.shape == (2, 3, 24, 36)
    assert check_parity(tiny(), result.path, (20, 28)).max_abs_diff < 1e-3


def test_export_refuses_to_overwrite_without_force(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_text("keep me")
    with pytest.raises(SrpruneError, match="already exists"):
        export_onnx(tiny(), path, (16, 16))
    assert path.read_text() == "keep me"
    export_onnx(tiny(), path, (16, 16), force=True)
    assert onnx_opset(path) == LEGACY_OPSET


def test_export_failure_names_model_and_first_error_line(tmp_path) -> None:
    model = SRModel(net=Unexportable(), scale=2, arch="bad")
    with pytest.raises(SrpruneError) as info:
        export_onnx(model, tmp_path / "bad.onnx", (16, 16), exporter="legacy", name="my-bad")
    message = str(info.value)
    assert "my-bad" in message and "bessel_j0" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # the temporary file was removed


def test_parity_mismatch_is_an_error(tmp_path) -> None:
    path = export_onnx(tiny(seed=0), tmp_path / "a.onnx", (16, 16)).path
    with pytest.raises(SrpruneError, match="differs from torch"):
        check_parity(tiny(seed=1), path, (16, 16))


def test_parity_is_judged_against_the_models_own_float32_noise(tmp_path) -> None:
    model = large_model()
    path = export_onnx(model, tmp_path / "large.onnx", (16, 16)).path
    parity = check_parity(model, path, (16, 16))
    assert parity.fp32_error > PARITY_TOLERANCE  # an absolute 1e-3 limit would reject it
    assert parity.runtime_error <= parity.limit < parity.fp32_error * 8.1
    assert parity.photo_psnr > 80 and parity.as_dict()["margin"] == 8.0


@pytest.mark.parametrize("model_fn, index", [(large_model, 0), (tiny, 1)])
def test_a_broken_layer_still_fails(tmp_path, model_fn, index) -> None:
    """One conv's weights 1 % off in the ONNX file: far beyond float32 noise, on both the
    large-activation model and a plain one."""
    model = model_fn()
    path = export_onnx(model, tmp_path / "m.onnx", (16, 16)).path
    scale_conv_weights(path, index, 1.01)
    with pytest.raises(SrpruneError, match="differs from torch") as info:
        check_parity(model, path, (16, 16), name="broken")
    message = str(info.value)
    assert "\n" not in message and "float32's own error" in message


def test_without_a_float64_reference_the_absolute_limit_applies(tmp_path) -> None:
    torch.manual_seed(0)
    model = SRModel(net=Float32Only(), scale=2, arch="f32")
    path = export_onnx(model, tmp_path / "f32.onnx", (16, 16)).path
    parity = check_parity(model, path, (16, 16))
    assert parity.runtime_error is None and parity.fp32_error is None
    assert parity.max_abs_diff <= parity.limit == pytest.approx(PARITY_TOLERANCE, rel=0.5)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.net.net.body[0].weight.mul_(1.01)
    with pytest.raises(SrpruneError, match="no float64 reference"):
        check_parity(broken, path, (16, 16))


def test_input_size_checks() -> None:
    with pytest.raises(SrpruneError, match="too small"):
        check_input_size(tiny(), (4, 16))
    even_only = SRModel(net=EvenOnly(), scale=2, arch="even")
    assert check_input_size(even_only, (16, 16)).outputs[-1] == [1, 3, 32, 32]
    with pytest.raises(SrpruneError, match="not usable"):
        check_input_size(even_only, (17, 16))


def test_first_line_strips_colour_and_follows_cause() -> None:
    try:
        try:
            raise ValueError("root problem\ndetails")
        except ValueError as inner:
            raise RuntimeError("\x1b[96mwrapper\x1b[0m\nmore") from inner
    except RuntimeError as exc:
        text = first_line(exc)
    assert text == "RuntimeError: wrapper (cause: ValueError: root problem)"
