"""``srprune bench``: JSON report, kept ONNX files, exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from srprune.cli import main
from srprune.models import build_model
from srprune.models.artifacts import save_artifact

FAST = ["--input-size", "16", "16", "--runs", "3", "--warmup", "1"]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("art") / "tiny drn.srp"
    save_artifact(build_model("drn-t", 4, pretrained=False), path)
    return str(path)


def test_json_report_has_the_documented_keys() -> None:
    result = CliRunner().invoke(main, ["bench", "drn-t", "drn-t", *FAST, "--torch",
                                       "--roofline", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["drn-t", "drn-t"]
    for row in rows:
        assert {"model", "params", "macs", "paper_macs", "latency_ms", "speedup", "gflops",
                "parity_max_abs_diff", "opset", "threads", "input_size",
                "roofline", "runtime", "parity"} <= set(row)
        assert row["runtime"] == "onnxruntime" and "ncnn_latency_ms" not in row
        assert row["parity"]["runtime_error_vs_float64"] <= row["parity"]["limit"]
        lat = row["latency_ms"]
        assert set(lat) == {"median", "p10", "p90"}
        assert lat["p10"] <= lat["median"] <= lat["p90"]
        assert row["parity_max_abs_diff"] < 1e-3
        assert row["input_size"] == [16, 16] and row["threads"] == 1
        assert row["gflops"] == pytest.approx(2 * row["macs"] / lat["median"] / 1e6)
        roof = row["roofline"]
        assert 0 < roof["efficiency"] == pytest.approx(row["gflops"] / roof["peak_gflops"])
        assert roof["peak_source"].startswith("interleaved")
        assert set(roof["sgemm_gflops"]) >= {"1"}  # standalone peaks: 1 thread and all CPUs
        assert row["torch_latency_ms"]["median"] > 0
    assert rows[0]["speedup"] == 1.0
    assert rows[0]["params"] == rows[1]["params"] > 0


def test_table_and_kept_onnx_files(artifact, tmp_path) -> None:
    out = tmp_path / "onnx"
    args = ["bench", artifact, *FAST, "--onnx-out", str(out)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "speed-up" in first.stdout and "tiny drn.srp" in first.stdout
    assert [p.name for p in out.iterdir()] == ["tiny_drn-x4.onnx"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2
    assert "already exists" in again.output and "--force" in again.output
    forced = CliRunner().invoke(main, [*args, "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)[0]["onnx_file"] == str(out / "tiny_drn-x4.onnx")


@pytest.mark.parametrize("args, message", [
    (["missing/model.srp"], "not found"),
    (["drn-t", "--input-size", "4", "16"], "too small"),
    (["drn-t", "--threads", "0"], "Invalid value"),
])
def test_bad_input_exits_2(args, message) -> None:
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_unreadable_file_exits_2(tmp_path) -> None:
    junk = tmp_path / "junk.srp"
    junk.write_bytes(b"definitely not a checkpoint")
    result = CliRunner().invoke(main, ["bench", str(junk)])
    assert result.exit_code == 2
    assert result.output.startswith("error:")


def test_export_failure_exits_2(monkeypatch) -> None:
    import srprune.measure.export

    def broken(*_args, **_kwargs):
        raise RuntimeError("no symbolic for this op\nlong traceback follows")

    monkeypatch.setattr(srprune.measure.export, "_export", broken)
    result = CliRunner().invoke(main, ["bench", "drn-t", *FAST])
    assert result.exit_code == 2
    assert "ONNX export of 'drn-t' failed" in result.output
    assert "legacy exporter: RuntimeError: no symbolic for this op" in result.output
    assert "long traceback" not in result.output
