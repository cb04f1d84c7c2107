"""The command line: outputs, JSON keys, and one clear error line with exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from srprune import __version__
from srprune.cli import main
from srprune.models.channel_config import CONFIG_DIR


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version():
    code, out, _ = run("--version")
    assert code == 0 and __version__ in out


def test_list_models_json():
    code, out, _ = run("list", "models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert {"drn-s", "drn-l", "drn-s30", "drn-s50", "drn-s70", "drn-t"} <= set(rows)
    assert rows["drn-s"]["scales"] == [4, 8]


def test_list_criteria_and_strategies():
    code, out, _ = run("list", "criteria", "--json")
    assert code == 0 and {"l1", "random"} <= {r["name"] for r in json.loads(out)}
    code, out, _ = run("list", "strategies", "--json")
    assert code == 0 and {"uniform", "from-file"} <= {r["name"] for r in json.loads(out)}


def test_info_json_drn_s():
    code, out, _ = run("info", "drn-s", "--scale", "4", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["params"] == 4804065
    assert {"params", "macs", "paper_macs", "input_size", "outputs"} <= set(data)
    assert data["outputs"][-1] == [1, 3, 384, 384]


def test_info_table_and_channel_config():
    code, out, _ = run("info", "drn-s", "--channels", str(CONFIG_DIR / "search_x4p07.txt"),
                       "--json")
    assert code == 0 and json.loads(out)["params"] == 1427545


@pytest.mark.parametrize(("args", "message"), [
    (("info", "drn-x"), "unknown model 'drn-x'"),
    (("info", "drn-s", "--scale", "3"), "does not support scale 3"),
    (("info", "missing.srp"), "checkpoint not found"),
    (("compress", "drn-t", "--ratio", "1.2", "--out", "{tmp}/a.srp"), "outside [0, 1)"),
    (("compress", "drn-t", "--ratio", "0.5", "--criterion", "nope", "--out", "{tmp}/a.srp"),
     "unknown criterion 'nope'"),
    (("compress", "drn-t", "--ratio", "0.5", "--strategy", "nope", "--out", "{tmp}/a.srp"),
     "unknown strategy 'nope'"),
    (("compress", "drn-t", "--strategy", "from-file", "--out", "{tmp}/a.srp"),
     "needs a plan file"),
])
def test_bad_input_one_line_exit_2(args, message, tmp_path):
    code, out, err = run(*[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_bad_channel_config_exit_2(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("16\n" * 10)
    code, _, err = run("info", "drn-s", "--channels", str(bad))
    assert code == 2 and "10 lines, expected 64" in err


def test_compress_json_and_artifact(tmp_path):
    out = tmp_path / "t.srp"
    code, stdout, err = run("compress", "drn-t", "--ratio", "0.5", "--out", str(out), "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert abs(data["ratio_achieved"] - 0.5) < 0.02
    assert data["params_after"] < data["params_before"]
    code, stdout, _ = run("info", str(out), "--json")
    assert code == 0 and json.loads(stdout)["params"] == data["params_after"]


def test_compress_refuses_to_overwrite_and_keeps_the_file(tmp_path):
    out = tmp_path / "t.srp"
    out.write_bytes(b"precious")
    code, _, err = run("compress", "drn-t", "--ratio", "0.5", "--out", str(out))
    assert code == 2 and "--force" in err
    assert out.read_bytes() == b"precious"


def test_compress_refuses_pickled_code_and_leaves_it_untouched(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"net": torch.nn.Conv2d(1, 1, 1)}, evil)
    before = evil.read_bytes()
    code, _, err = run("compress", "drn-t", "--weights", str(evil), "--ratio", "0.5",
                       "--out", str(tmp_path / "o.srp"))
    assert code == 2 and "pickled Python code" in err
    assert evil.read_bytes() == before


def test_compress_from_file_exact_params(tmp_path):
    code, stdout, err = run("compress", "drn-s", "--scale", "4", "--strategy", "from-file",
                            "--plan", str(CONFIG_DIR / "search_x4p05.txt"),
                            "--out", str(tmp_path / "s50.srp"), "--json")
    assert code == 0, err
    assert json.loads(stdout)["params_after"] == 2267417
