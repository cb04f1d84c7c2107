"""ncnn export through pnnx, parity on ncnn's CPU runtime, and ``bench --runtime ncnn``.

Needs the ``ncnn`` and ``pnnx`` packages (``pip install ncnn``, ``pip install --no-deps
pnnx``): skipped without them, except in CI (``CI`` set), where their absence fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from srprune.cli import main
from srprune.errors import SrpruneError
from srprune.models import build_model
from srprune.models.srmodel import SRModel
from tests.test_export import large_model

TOOLS = ("ncnn", "pnnx")
SIZE = ["--input-size", "16", "16"]


@pytest.fixture(autouse=True)
def ncnn_tools() -> None:
    """Skip (fail in CI) when ncnn or pnnx is missing."""
    missing = [name for name in TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        message = (f"{' and '.join(missing)} not installed: pip install ncnn; "
                   "pip install --no-deps pnnx")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


class Double(torch.autograd.Function):
    """A Python autograd function: TorchScript cannot trace it, the ONNX exporter inlines it."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2.0


class PyFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(Double.apply(x)))


class Unconvertible(nn.Module):
    """An op neither ncnn nor ONNX has: pnnx keeps it under its torch name."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(torch.special.bessel_j0(self.conv(x)))


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def scale_first_conv_in_bin(param: Path, factor: float) -> None:
    """Multiply the first Convolution's float32 weights in the ``.bin`` beside ``param``
    (a broken layer; the layers before it in these files carry no weights)."""
    lines = param.read_text().splitlines()[2:]
    conv = next(line.split() for line in lines if line.split()[0] == "Convolution")
    count = int(next(kv.split("=")[1] for kv in conv if kv.startswith("6=")))
    data = bytearray(param.with_suffix(".bin").read_bytes())
    assert int.from_bytes(data[:4], "little") == 0  # float32 storage tag
    weights = np.frombuffer(bytes(data[4:4 + 4 * count]), dtype=np.float32) * factor
    data[4:4 + 4 * count] = weights.astype(np.float32).tobytes()
    param.with_suffix(".bin").write_bytes(bytes(data))


def test_export_writes_the_pair_only_and_ncnn_matches_torch(tmp_path) -> None:
    from srprune.measure.ncnn_export import export_ncnn
    from srprune.measure.ncnn_runtime import NcnnRunner

    model = build_model("espcn", 2, pretrained=False)  # Y-channel ops, tanh, PixelShuffle
    res = export_ncnn(model, tmp_path / "espcn.param", (16, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["espcn.bin", "espcn.param"]
    assert res.route == "torchscript" and res.dynamic and res.layers > 10
    assert [p.input_shape for p in res.parity] == [(1, 3, 16, 16), (1, 3, 24, 32)]
    assert all(p.runtime == "ncnn" and p.runtime_error <= p.limit for p in res.parity)
    x = torch.rand(2, 3, 12, 20) * 255  # a third size, a batch of two: one call per image
    out = NcnnRunner(res.param_path)(x.numpy())
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == ref.shape == (2, 3, 24, 40)
    assert np.abs(out - ref).max() < 1e-3


@pytest.mark.parametrize("name, hyper, layers", [
    ("span", {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 16, "upscale": 2},
     {"Sigmoid", "PixelShuffle"}),
    ("compact", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 16, "num_conv": 4,
                 "upscale": 2, "act_type": "prelu"}, {"PReLU", "PixelShuffle"}),
    ("esrgan", {"in_nc": 3, "out_nc": 3, "num_filters": 16, "num_blocks": 1, "scale": 2},
     {"Interp"}),
])
def test_spandrel_models_export(tmp_path, name, hyper, layers) -> None:
    """Zoo architectures on [0, 255] wrappers (SPAN fused, Compact with PReLU, ESRGAN), small."""
    from srprune.measure.ncnn_export import export_ncnn
    from srprune.measure.ncnn_runtime import layer_types

    model = build_model(name, 2, pretrained=False, hyperparameters=hyper)
    res = export_ncnn(model, tmp_path / f"{name}.param", (16, 16), name=name)
    assert layers <= set(layer_types(res.param_path))
    assert len(res.parity) == 2 and all(p.runtime_error <= p.limit for p in res.parity)


def test_large_activations_pass_and_a_broken_layer_fails_on_ncnn(tmp_path) -> None:
    from srprune.measure.export import PARITY_TOLERANCE
    from srprune.measure.ncnn_export import check_ncnn_parity, export_ncnn

    model = large_model()
    res = export_ncnn(model, tmp_path / "large.param", (16, 16), second=False)
    parity = res.parity[0]
    assert parity.fp32_error > PARITY_TOLERANCE  # an absolute limit would reject it
    assert parity.runtime_error <= parity.limit
    scale_first_conv_in_bin(res.param_path, 1.01)
    with pytest.raises(SrpruneError, match="ncnn model of 'large' differs from torch") as info:
        check_ncnn_parity(model, res.param_path, [(16, 16)], name="large")
    assert "\n" not in str(info.value)


def test_unconvertible_model_is_one_line_and_writes_nothing(tmp_path) -> None:
    from srprune.measure.ncnn_export import export_ncnn

    model = SRModel(net=Unconvertible(), scale=2, arch="bad")
    with pytest.raises(SrpruneError) as info:
        export_ncnn(model, tmp_path / "bad.param", (16, 16), name="bad")
    message = str(info.value)
    assert message.startswith("ncnn export of 'bad' failed: torchscript: pnnx left operations")
    assert "bessel_j0" in message and "onnx:" not in message  # pnnx's verdict: not retried
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_untraceable_model_goes_through_onnx(tmp_path) -> None:
    from srprune.measure.ncnn_export import export_ncnn

    torch.manual_seed(0)
    res = export_ncnn(SRModel(net=PyFunction(), scale=2, arch="pyfn"), tmp_path / "p.param",
                      (16, 16), second=False)
    assert res.route == "onnx" and "TorchScript trace failed" in res.tried[0]
    assert res.parity[0].runtime_error <= res.parity[0].limit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.bin", "p.param"]


def test_missing_pnnx_is_one_line(monkeypatch, tmp_path) -> None:
    import srprune.measure.ncnn_export as ncnn_export

    monkeypatch.setattr(ncnn_export.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SrpruneError, match=r"pip install --no-deps pnnx"):
        ncnn_export.pnnx_executable()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("ncnn")
    out = folder / "espcn.param"
    result = run("export", "espcn", "--scale", "2", "--ncnn", str(out), *SIZE, "--json")
    assert result.exit_code == 0, result.output
    return {"out": out, "report": json.loads(result.stdout)}


def test_cli_export_reports_and_never_overwrites(exported) -> None:
    out, rep = exported["out"], exported["report"]["ncnn"]
    assert rep["param_path"] == str(out) and rep["bin_path"] == str(out.with_suffix(".bin"))
    assert rep["route"] == "torchscript" and rep["size_bytes"] > 0
    assert rep["parity_max_abs_diff"] < 1e-3
    assert {"runtime_error_vs_float64", "fp32_error_vs_float64", "limit", "photo_psnr"} <= set(
        rep["parity"][0])
    before = out.read_bytes(), out.with_suffix(".bin").read_bytes()
    again = run("export", "espcn", "--scale", "2", "--ncnn", str(out), *SIZE)
    assert again.exit_code == 2 and again.output.startswith("error:")
    assert "already exists" in again.output and "--force" in again.output
    assert (out.read_bytes(), out.with_suffix(".bin").read_bytes()) == before


def test_cli_export_bad_output_exits_2(tmp_path) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    (tmp_path / "taken.bin").write_text("keep")
    cases = [
        (["--ncnn", str(tmp_path / "missing" / "m.param")], "does not exist"),
        (["--ncnn", str(afile / "m.param")], "is a file, not a folder"),
        (["--ncnn", str(tmp_path / "m.onnx")], "ending in .param"),
        (["--ncnn", str(tmp_path / "taken.param")], "taken.bin already exists"),
        (["--ncnn", str(tmp_path / "m.param"), "--int8", "--data", "builtin",
          "--onnx", str(tmp_path / "m.onnx")], "without --int8"),
        ([], "nothing to write"),
    ]
    for args, message in cases:
        result = run("export", "espcn", "--scale", "2", *args, *SIZE)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and result.output.count("\n") == 1, result.output
    assert (tmp_path / "taken.bin").read_text() == "keep"


def test_bench_times_ncnn_beside_ort(tmp_path, capsys) -> None:
    from srprune.cli.bench import _print_table
    from srprune.measure.bench import benchmark

    kept = tmp_path / "kept"
    model = build_model("espcn", 2, pretrained=False)
    (rec,) = benchmark([("espcn", model)], (16, 16), runs=2, warmup=0, onnx_dir=kept,
                       runtimes=("ncnn", "ort"))  # ORT's numbers stay the main ones
    row = rec.as_dict()
    assert row["runtime"] == "onnxruntime" and row["latency_ms"]["median"] > 0
    assert row["ncnn_latency_ms"]["median"] > 0 and row["ncnn_speedup"] == 1.0
    assert row["ncnn_parity_max_abs_diff"] < 1e-3 and row["ncnn_fp16"] is False
    assert sorted(p.name for p in kept.iterdir()) == ["espcn-x2.bin", "espcn-x2.onnx",
                                                      "espcn-x2.param"]
    _print_table([rec], with_torch=False, roofline=False)
    table = capsys.readouterr().out
    assert "ncnn beside it" in table and "ncnn ms" in table and "ncnn speed-up" in table
    again = run("bench", "espcn", "--scale", "2", *SIZE, "--runtime", "ncnn", "--onnx-out",
                str(kept))
    assert again.exit_code == 2 and "espcn-x2.param already exists" in again.output


def test_bench_ncnn_row_has_a_positive_median() -> None:
    result = run("bench", "espcn", "--scale", "2", *SIZE, "--runs", "2", "--warmup", "0",
                 "--runtime", "ncnn", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["runtime"] == "ncnn" and row["opset"] is None
    assert row["latency_ms"]["median"] > 0 and row["parity"]["runtime"] == "ncnn"
    assert row["exporter"] == "pnnx (torchscript)"


@pytest.mark.parametrize("args, message", [
    (["espcn", "--runtime", "tflite"], "--runtime takes"),
    (["espcn", "--ncnn-fp16"], "needs --runtime ncnn"),
])
def test_bench_bad_runtime_exits_2(args, message) -> None:
    result = run("bench", *args, "--scale", "2", *SIZE)
    assert result.exit_code == 2 and message in result.output


def test_bench_refuses_onnx_files_for_ncnn(tmp_path) -> None:
    from srprune.measure.export import export_onnx

    path = export_onnx(build_model("espcn", 2, pretrained=False), tmp_path / "e.onnx",
                       (16, 16)).path
    result = run("bench", str(path), *SIZE, "--runtime", "ort,ncnn")
    assert result.exit_code == 2 and "is an ONNX file" in result.output
