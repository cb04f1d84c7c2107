"""Progress reaches logs: plain start/periodic/done lines on stderr when it is no terminal."""

from __future__ import annotations

import io
import json
import re

from click.testing import CliRunner

from srprune.cli import main
from srprune.cli.progress import ProgressReporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_start_periodic_and_done(capsys):
    clock, err = FakeClock(), io.StringIO()
    with ProgressReporter(stream=err, clock=clock) as report:
        assert report.mode == "plain"  # a StringIO is no terminal
        report("dr-search", 0, 60)
        for step in range(1, 61):
            clock.now += 0.5  # 30 s in all: lines at 10 s and 20 s, not at every step
            report("dr-search", step, 60)
    lines = err.getvalue().splitlines()
    assert lines == ["[dr-search] start (60 steps)",
                     "[dr-search] 20/60 (33 %) 10.0 s",
                     "[dr-search] 40/60 (66 %) 20.0 s",
                     "[dr-search] done 60/60 in 30.0 s"]
    assert capsys.readouterr().out == ""


def test_plain_lines_ignore_quiet_and_say_what_stopped():
    clock, err = FakeClock(), io.StringIO()
    with ProgressReporter(quiet=True, tty=False, stream=err, clock=clock) as report:
        report("search", 0, 1)
        report("eval: before", 0, 3)
        report("eval: before", 1, 3, note="baby")
        clock.now += 2.0
        report("search", 1, 1)
        report("search", 0, 1)  # a stage reported again after it finished starts over
    assert err.getvalue().splitlines() == ["[search] start", "[eval: before] start (3 steps)",
                                           "[search] done in 2.0 s", "[search] start",
                                           "[search] stopped after 0.0 s",
                                           "[eval: before] stopped at 1/3 after 2.0 s"]


def test_terminal_with_json_is_silent():
    err = io.StringIO()
    with ProgressReporter(quiet=True, tty=True, stream=err) as report:
        report("prune", 0, 4)
        report("prune", 4, 4)
    assert report.mode == "off" and err.getvalue() == ""


def test_terminal_gets_bars():
    err = io.StringIO()
    with ProgressReporter(tty=True, stream=err) as report:
        report("finetune", 0, 4)
        report("finetune", 2, 4, note="loss 1.234")
        report("finetune", 4, 4)
    assert report.mode == "bars" and "[finetune]" not in err.getvalue()


def test_compress_dr_search_logs_stages_on_stderr_and_keeps_stdout_json(tmp_path):
    out = tmp_path / "t.srp"
    result = CliRunner().invoke(main, [
        "compress", "drn-t", "--ratio", "0.5", "--strategy", "dr-search", "--preset", "fast",
        "--data", "builtin", "--calib-batches", "2", "--calib-batch", "2", "--calib-patch", "8",
        "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert data["strategy"] == "dr-search" and out.exists()
    err = result.stderr
    for stage in ("calibration", "dr-search", "prune"):  # start (N steps) ... done N/N in T s
        steps = re.search(rf"^\[{stage}\] start \((\d+) steps\)$", err, re.M)
        assert steps, err
        assert re.search(rf"^\[{stage}\] done {steps[1]}/{steps[1]} in \d+\.\d s$", err,
                         re.M), err
    assert "[search] start" in err and re.search(r"\[search\] done in \d+\.\d s", err)
    assert err.index("[search] start") < err.index("[dr-search] start") \
        < err.index("[dr-search] done") < err.index("[search] done") < err.index("[prune] start")
