"""ONNX export: dynamic axes, self-contained file, opset, parity, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.export import (
    DYNAMO_OPSET,
    LEGACY_OPSET,
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
