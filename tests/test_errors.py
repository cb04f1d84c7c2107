"""How failures end: one stderr line and an exit code that tells the user's mistake from ours."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from srprune.cli import main
from srprune.errors import InternalError


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_click_usage_errors_are_one_line_exit_2():
    code, _, err = run("compress", "drn-t", "--ratio", "abc", "--out", "x.srp")
    assert code == 2
    assert one_error_line(err).startswith("error: Invalid value for '--ratio'")
    code, _, err = run("nope")
    assert code == 2 and one_error_line(err) == "error: No such command 'nope'."


def test_an_internal_invariant_is_a_bug_report_line_exit_1(monkeypatch, tmp_path):
    import srprune.cli.info as info

    def broken(*args, **kwargs):
        raise InternalError("layer x has 3 channels and 4 weights")

    monkeypatch.setattr(info, "load_model_arg", broken)
    code, _, err = run("info", "drn-t")
    assert code == 1
    line = one_error_line(err)
    assert line.startswith("internal error: layer x has 3 channels") and "report" in line


def test_registered_name_wins_over_a_file_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "drn-t").write_bytes(b"not a model")
    code, out, err = run("info", "drn-t", "--input-size", "16", "16", "--json")
    assert code == 0, err
    assert '"weights": "shipped"' in out


def test_models_without_trained_weights_say_so(tmp_path):
    code, out, err = run("info", "drn-s", "--input-size", "16", "16", "--json")
    assert code == 0 and '"weights": "random"' in out
    assert one_error_line(err).startswith("note: drn-s x4 has no trained weights here")
    code, _, err = run("info", "drn-t", "--input-size", "16", "16")
    assert code == 0 and "note:" not in err


def test_channels_on_an_artifact_is_refused(tmp_path):
    out = tmp_path / "t.srp"
    assert run("compress", "drn-t", "--ratio", "0.3", "--out", str(out))[0] == 0
    cfg = tmp_path / "widths.txt"
    cfg.write_text("4\n")
    code, _, err = run("info", str(out), "--channels", str(cfg))
    assert code == 2 and "--channels applies to registered DRN models" in one_error_line(err)


def test_bad_criterion_option_names_the_option_not_a_class(tmp_path):
    code, _, err = run("compress", "drn-t", "--ratio", "0.5", "--criterion", "dr",
                       "--criterion-opt", "bogus=1", "--data", "builtin",
                       "--out", str(tmp_path / "x.srp"))
    line = one_error_line(err)
    assert code == 2 and "criterion 'dr' has no option 'bogus'" in line
    assert "DualRegression" not in line
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("flag", ["--calib-batches", "--calib-batch", "--calib-patch"])
def test_zero_calibration_budget_is_refused_not_replaced(flag, tmp_path):
    code, _, err = run("compress", "drn-t", "--ratio", "0.5", flag, "0",
                       "--out", str(tmp_path / "x.srp"))
    assert code == 2 and f"({flag}) must be an integer >= 1" in one_error_line(err)


def test_bench_refuses_an_input_that_cannot_fit_before_any_work():
    code, _, err = run("bench", "drn-t", "--input-size", "100000", "100000")
    assert code == 2 and "input size 100000x100000 is too large" in one_error_line(err)


def test_eval_on_cuda_without_cuda_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    code, _, err = run("eval", "drn-t", "--device", "cuda")
    assert code == 2 and "this torch has no CUDA device" in one_error_line(err)


def test_eval_accepts_builtin_like_compress_eval(monkeypatch):
    import srprune.quality.evaluate as evaluate

    seen = []

    def fake(model, image_set, **kwargs):
        seen.append(image_set.description)
        return {"psnr": 1.0, "ssim": 0.5, "bicubic_psnr": 1.0, "bicubic_ssim": 0.5,
                "per_image": []}

    monkeypatch.setattr(evaluate, "evaluate_model", fake)
    assert run("eval", "drn-t", "--data", "builtin", "--json")[0] == 0
    assert run("eval", "drn-t", "--json")[0] == 0
    assert seen[0] == seen[1]


def test_from_file_reports_widths_from_the_plan_not_a_ratio(tmp_path):
    plan = tmp_path / "plan.txt"
    code, out, _ = run("info", "drn-t", "--json", "--input-size", "16", "16")
    assert code == 0
    import json

    from srprune.models import build_model
    from srprune.prune.graph import SRGraph

    model = build_model("drn-t", 4)
    units = SRGraph(model.net, 4).units()
    plan.write_text("".join(f"{max(1, u.width // 2)}\n" for u in units))
    code, out, err = run("compress", "drn-t", "--strategy", "from-file", "--plan", str(plan),
                         "--out", str(tmp_path / "x.srp"), "--json")
    assert code == 0, err
    assert json.loads(out)["ratio_requested"] is None
    code, out, err = run("compress", "drn-t", "--strategy", "from-file", "--plan", str(plan),
                         "--out", str(tmp_path / "y.srp"))
    assert code == 0 and "widths from the plan file" in out and "ratio asked" not in out


def test_outputs_get_the_mode_of_a_new_file(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        out = tmp_path / "t.srp"
        assert run("compress", "drn-t", "--ratio", "0.3", "--out", str(out))[0] == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        os.umask(0o077)
        out2 = tmp_path / "u.srp"
        assert run("compress", "drn-t", "--ratio", "0.3", "--out", str(out2))[0] == 0
        assert stat.S_IMODE(out2.stat().st_mode) == 0o600
    finally:
        os.umask(old)
