"""``srprune compare``: the grid's files, resuming, failing cells, bad input, Ray, the maths.

One tiny grid (drn-t cut to one block, random weights, 2 criteria x 1 ratio x 2 seeds, one
fine-tuning step, 32x32 evaluation images, 8x8 latency input) is run once per module and
copied where a test changes it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main
from srprune.compare.stats import Group, Spread, pareto_front
from srprune.compare.verdict import judge

TINY = ["--arch-opt", "n_blocks=1", "--preset", "fast", "--calib-batches", "1",
        "--calib-batch", "1", "--calib-patch", "8", "--finetune-steps", "1",
        "--finetune-batch", "1", "--finetune-patch", "8", "--input-size", "8", "8",
        "--bench-runs", "1", "--bench-warmup", "0", "--threads", "1"]


def photo(size: int, seed: int) -> np.ndarray:
    """A smooth colour image with a little noise (PSNR differences stay small but real)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, size)
    img = np.stack([np.outer(np.sin(6 * x + seed), np.cos(5 * x)), np.outer(x, x),
                    np.outer(np.cos(3 * x), x)], -1) * 120 + 128
    return (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare-images")
    data, evals = root / "data", root / "eval"
    data.mkdir()
    evals.mkdir()
    for i in range(2):
        Image.fromarray(photo(48, i)).save(data / f"d{i}.png")
        Image.fromarray(photo(32, 10 + i)).save(evals / f"e{i}.png")
    return {"data": data, "eval": evals, "root": root}


def grid_args(folders: dict[str, Path], out: Path, *extra: str, criteria: str = "l1,random",
              ratios: str = "0.3", seeds: str = "0,1") -> list[str]:
    return ["compare", "drn-t", "--criteria", criteria, "--ratios", ratios, "--seeds", seeds,
            "--data", str(folders["data"]), "--eval", str(folders["eval"]), *TINY,
            "--out", str(out), *extra]


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def grid(folders: dict[str, Path]) -> Path:
    out = folders["root"] / "grid"
    code, _, err = run(grid_args(folders, out))
    assert code == 0, err
    return out


def rows_of(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in json.loads((out / "results.json").read_text())["rows"]}


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ the outputs


def test_grid_writes_every_output(grid: Path) -> None:
    results = json.loads((grid / "results.json").read_text())
    rows = results["rows"]
    assert [r["key"] for r in rows] == ["l1__uniform__r0.3__s0", "l1__uniform__r0.3__s1",
                                        "random__uniform__r0.3__s0",
                                        "random__uniform__r0.3__s1"]
    for row in rows:
        assert row["status"] == "ok" and row["error"] is None
        assert 0.25 < row["ratio_achieved"] < 0.35
        assert row["params"] < results["reference"]["params"]
        quality = row["quality"]["eval"]
        assert [p["name"] for p in quality["per_image"]] == ["e0", "e1"]
        assert math.isclose(quality["psnr"], np.mean([p["psnr"] for p in quality["per_image"]]))
        assert row["latency"]["median_ms"] > 0 and row["latency"]["efficiency"] > 0
        assert Path(row["artifact"]).is_file()
        assert row["command"].startswith(f"srprune compress {grid / 'model.srp'} --ratio 0.3")
        assert len(row["widths"]["kept"]) == len(row["widths"]["original"]) > 0
        assert row["psnr_pruned"] is None  # not asked for (--eval-pruned)
    assert results["reference"]["latency"]["median_ms"] > 0
    assert len(results["verdicts"]) == 1 and results["verdicts"][0]["ratio"] == 0.3

    with (grid / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["key"] for r in table] == [r["key"] for r in rows]
    assert all(r["status"] == "ok" and r["command"].startswith("srprune compress ")
               for r in table)
    assert float(table[0]["psnr_eval"]) == pytest.approx(rows[0]["quality"]["eval"]["psnr"])

    md = (grid / "table.md").read_text()
    assert "| ratio | method | params | MACs | removed | eval PSNR/SSIM | latency ms |" in md
    assert "| 0 | unpruned |" in md and "| 0.3 | l1 |" in md and "| 0.3 | random |" in md
    assert md.count("**") == 2  # the best mean PSNR of the ratio, in bold
    assert "## Verdict per ratio" in md and "* ratio 0.3: " in md
    mean = np.mean([r["quality"]["eval"]["psnr"] for r in rows if r["criterion"] == "l1"])
    std = np.std([r["quality"]["eval"]["psnr"] for r in rows if r["criterion"] == "l1"],
                 ddof=1)
    assert f"{mean:.3f}±{std:.3f}/" in md

    for name in ("psnr_vs_latency.png", "psnr_vs_macs.png", "widths.png"):
        with Image.open(grid / name) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    html = (grid / "report.html").read_text()
    assert html.count('<img alt="') == 3  # the plots
    # side-by-side crops: HR, bicubic, unpruned and one model per method, on each eval image
    crops = re.findall(r'<img class="crop" alt="([^"]+)" src="data:image/png;base64,', html)
    assert [alt.rsplit(": ", 1)[1] for alt in crops[:5]] == [
        "HR", "bicubic", "unpruned", "l1 @ 0.3 (seed 0)", "random @ 0.3 (seed 0)"]
    assert {alt.split(",")[0] for alt in crops} == {"e0", "e1"}
    assert "dB</span>" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert "Verdict per ratio" in html and "unpruned" in html
    assert not list(grid.rglob("*.tmp"))


def test_the_command_of_a_row_reproduces_its_cell(grid: Path, tmp_path: Path) -> None:
    row = rows_of(grid)["random__uniform__r0.3__s1"]
    args = shlex.split(row["command"])
    assert args[:2] == ["srprune", "compress"] and "&&" not in args
    args[args.index("--out") + 1] = str(tmp_path / "again.srp")
    code, out, err = run([*args[1:], "--json"])
    assert code == 0, err
    assert json.loads(out)["quality_after"]["psnr"] == pytest.approx(
        row["quality"]["eval"]["psnr"], abs=2e-4)


# ------------------------------------------------------------------ resuming


def test_rerun_keeps_finished_cells_and_redoes_an_unfinished_one(grid: Path,
                                                                 tmp_path: Path,
                                                                 folders) -> None:
    out = tmp_path / "grid"
    shutil.copytree(grid, out)
    before = rows_of(grid)
    lost = "l1__uniform__r0.3__s1"
    (out / "cells" / f"{lost}.json").unlink()  # what a kill in the middle of the cell leaves:
    (out / "artifacts" / f"{lost}.srp").write_bytes(b"half")  # no row, a stale artifact
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    code, _, err = run(grid_args(folders, out))
    assert code == 0, err
    assert "3 of 4 cells already done" in err and "cell 1/1 l1__uniform__r0.3__s1" in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()
            if p.name in stamps} == stamps  # the finished cells were not touched
    after = rows_of(out)
    assert after[lost]["quality"] == before[lost]["quality"]  # redone, same result
    assert after[lost]["artifact"] == str(out / "artifacts" / f"{lost}.srp")

    # a third run has nothing to do, and reuses the latency run too
    bench = (out / "bench.json").stat().st_mtime_ns
    code, _, err = run(grid_args(folders, out))
    assert code == 0 and "4 of 4 cells already done" in err
    assert (out / "bench.json").stat().st_mtime_ns == bench


def children(pid: int) -> list[tuple[int, bytes]]:
    """``(pid, command line)`` of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if parent == pid:
            found.append((int(stat.parent.name), cmdline))
    return found


def cell_workers() -> list[int]:
    """The cell processes of a ``--jobs`` run in this process: children of the fork server."""
    servers = [pid for pid, cmd in children(os.getpid()) if b"forkserver" in cmd]
    return [pid for server in servers for pid, _ in children(server)]


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_a_crashed_worker_is_recorded_and_its_cell_redone_next_run(folders,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "grid"
    args = grid_args(folders, out, "--jobs", "2", "--no-bench", criteria="l1", seeds="0,1")
    killed: list[int] = []

    def crash_one_worker() -> None:  # SIGKILL the first cell process seen: a hard crash
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in cell_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.01)

    killer = threading.Thread(target=crash_one_worker, daemon=True)
    killer.start()
    code, _, err = run(args)
    killer.join()
    assert killed and code == 1, err
    rows = rows_of(out)
    crashed = [k for k, r in rows.items() if r["status"] != "ok"]
    assert len(crashed) == 1 and len(rows) == 2
    assert rows[crashed[0]]["error"] == "the worker process was killed by signal 9"
    assert err.strip().splitlines()[-1].startswith(f"error: 1 of 2 cells failed (first: "
                                                   f"{crashed[0]}: the worker process was")
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")
            if p.stem != crashed[0]}

    code, _, err = run(args)  # the next run redoes the crashed cell only
    assert code == 0, err
    assert "1 of 2 cells already done" in err and f"cell 1/1 {crashed[0]}: PSNR" in err
    assert {n: (out / "cells" / n).stat().st_mtime_ns for n in kept} == kept
    assert all(r["status"] == "ok" for r in rows_of(out).values())


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(folders, tmp_path: Path) -> None:
    out = tmp_path / "grid"
    # no model keeps 1 % of its parameters when only block-inner channels are pruned
    code, _, err = run(grid_args(folders, out, "--no-bench", "--eval-pruned", "--scope",
                                 "internal", criteria="l1", ratios="0.3,0.99", seeds="0"))
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 cells failed (first: l1__uniform__r0.99__s0: "
                           "ratio 0.99 is out of reach")
    rows = rows_of(out)
    ok = rows["l1__uniform__r0.3__s0"]
    assert ok["status"] == "ok"
    assert ok["psnr_pruned"] != ok["quality"]["eval"]["psnr"]  # scored before fine-tuning
    failed = rows["l1__uniform__r0.99__s0"]
    assert failed["status"] == "failed" and "\n" not in failed["error"]
    assert failed["artifact"] is None and failed["command"].startswith("srprune compress")
    md = (out / "table.md").read_text()
    assert "| eval PSNR/SSIM | pruned | latency ms |" in md
    assert f"| {ok['psnr_pruned']:.3f} |" in md
    assert "## Failed cells" in md and "0 (1 failed)" in md
    assert "ratio 0.99: no finished cell, no verdict" in md
    assert "Latency: not measured (--no-bench)." in md
    assert rows["l1__uniform__r0.3__s0"]["latency"] is None


# ------------------------------------------------------------------ bad input


def benchmark_folder(root: Path, lr_factor: int, lr_size: int) -> Path:
    """EDSR benchmark layout with LR files only in X{lr_factor}, of lr_size pixels."""
    folder = root / f"bench-x{lr_factor}-{lr_size}"
    (folder / "HR").mkdir(parents=True)
    (folder / "LR_bicubic" / f"X{lr_factor}").mkdir(parents=True)
    Image.fromarray(photo(32, 0)).save(folder / "HR" / "a.png")
    Image.fromarray(photo(lr_size, 0)).save(folder / "LR_bicubic" / f"X{lr_factor}" /
                                            f"ax{lr_factor}.png")
    return folder


BAD = [
    ("unknown-criterion", {"criteria": "l1,nope"}, [], "unknown criterion 'nope'"),
    ("unknown-strategy", {}, ["--strategies", "uniform,nope"], "unknown strategy 'nope'"),
    ("strategy-without-ratio", {}, ["--strategies", "from-file"], "does not take a ratio"),
    ("empty-ratios", {"ratios": " , "}, [], "--ratios is empty"),
    ("ratio-out-of-range", {"ratios": "0.3,1.2"}, [], "1.2 is outside [0, 1)"),
    ("ratio-not-a-number", {"ratios": "0.3,half"}, [], "'half' is not a number"),
    ("ratio-twice", {"ratios": "0.3,0.3"}, [], "--ratios lists 0.3 twice"),
    ("negative-seed", {"seeds": "0,-1"}, [], "--seeds: -1 is negative"),
    ("too-many-jobs", {}, ["--jobs", "64"], "more than the"),
    ("address-without-ray", {}, ["--address", "auto"], "--address is for --backend ray"),
    ("bench-runs-zero", {}, ["--bench-runs", "0"], "--bench-runs must be at least 1"),
    ("finetune-steps-negative", {}, ["--finetune-steps", "-1"], "finetune_steps"),
]


@pytest.mark.parametrize(("case", "axes", "extra", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(case, axes, extra, message, folders,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(grid_args(folders, out, *extra, **axes))
    assert code == 2, err
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: ")
    assert message in err
    assert not out.exists() and stdout == ""


def test_data_driven_criteria_need_data(folders, tmp_path: Path) -> None:
    args = grid_args(folders, tmp_path / "out", criteria="cp", seeds="0")
    args[args.index("--data"):args.index("--data") + 2] = []
    args[args.index("--finetune-steps") + 1] = "0"
    code, _, err = run(args)
    assert code == 2 and err.startswith("error: criterion 'cp' needs calibration images")


@pytest.mark.parametrize(("factor", "size", "message"), [(2, 16, "missing LR folder"),
                                                          (4, 16, "scale mismatch")],
                         ids=["x2-folder-only", "x4-files-of-x2-size"])
def test_an_eval_folder_at_the_wrong_scale_is_refused(factor, size, message, folders,
                                                      tmp_path: Path) -> None:
    wrong = benchmark_folder(tmp_path, factor, size)
    args = grid_args(folders, tmp_path / "out")
    args[args.index("--eval") + 1] = str(wrong)
    code, _, err = run(args)
    assert code == 2 and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("change", [["--finetune-steps", "2"], ["--arch-opt", "n_feats=4"]],
                         ids=["other-settings", "other-model"])
def test_an_out_holding_another_grid_is_refused(change, grid: Path, folders,
                                                tmp_path: Path) -> None:
    out = tmp_path / "grid"
    shutil.copytree(grid, out)
    before = tree_digest(out)
    args = grid_args(folders, out)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    code, _, err = run(args)
    assert code == 2 and err.startswith(f"error: --out {out} holds another grid: ")
    assert len(err.strip().splitlines()) == 1
    assert tree_digest(out) == before  # nothing lost, nothing added


def test_an_out_with_foreign_files_is_refused(folders, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run(grid_args(folders, out))
    assert code == 2 and "holds no compare grid" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------ Ray


def test_ray_backend_gives_the_same_rows_as_local(grid: Path, folders, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    # Ray runs its workers at niceness 15: on a busy shared machine they would wait minutes
    monkeypatch.setenv("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, _, err = run(grid_args(folders, out, "--backend", "ray", "--no-bench",
                                     criteria="random", seeds="1"))
    finally:
        ray.shutdown()
    assert code == 0, err
    local, remote = rows_of(grid), rows_of(out)
    assert sorted(remote) == ["random__uniform__r0.3__s1"]
    for key, row in remote.items():
        for field in ("status", "params", "macs", "ratio_achieved", "widths", "quality",
                      "psnr_pruned", "ssim_pruned"):
            assert row[field] == local[key][field], (key, field)
        assert Path(row["artifact"]).parent == out / "artifacts"
        assert Path(row["artifact"]).is_file()


# ------------------------------------------------------------------ the maths


def test_pareto_front_on_known_points() -> None:
    points = [(1.0, 30.0), (2.0, 31.0), (2.5, 30.5), (3.0, 32.0), (1.5, 29.0),
              (3.0, 31.5), (0.5, math.nan)]
    assert pareto_front(points) == [0, 1, 3]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # ties dominate nothing
    assert pareto_front([]) == []


def group(method: str, psnr_by_seed: dict[int, float], ratio: float = 0.5,
          removed: float = 0.5) -> Group:
    rows = [{"seed": s, "quality": {"set": {"psnr": p, "ssim": 0.9}}, "ratio_achieved": removed}
            for s, p in psnr_by_seed.items()]
    return Group(ratio, method, method, "uniform", rows)


def test_verdict_names_the_winner_margin_and_spread() -> None:
    clear = judge([group("l1", {0: 30.00, 1: 30.02, 2: 30.04}),
                   group("cp", {0: 30.20, 1: 30.21, 2: 30.22}),
                   group("random", {0: 29.0, 1: 29.1, 2: 29.2})], 0.5, "set")
    assert (clear.winner, clear.runner_up) == ("cp", "l1")
    assert clear.margin == pytest.approx(0.19)
    assert clear.spread == pytest.approx(0.02)  # l1's std over seeds, the larger one
    assert clear.decisive is True and (clear.ahead, clear.paired) == (3, 3)
    assert "cp wins on set with 30.210 dB, +0.190 dB over l1" in clear.text
    assert "the margin exceeds the seed spread" in clear.text

    close = judge([group("l1", {0: 30.0, 1: 30.3}), group("dr", {0: 30.2, 1: 30.2})],
                  0.5, "set")
    assert close.winner == "dr" and close.margin == pytest.approx(0.05)
    assert close.decisive is False and "within seed spread" in close.text
    assert (close.ahead, close.paired) == (1, 2)

    single = judge([group("l1", {0: 30.0}), group("dr", {0: 30.1})], 0.5, "set")
    assert single.decisive is None and "spread over seeds is unknown" in single.text
    assert "not the same size" not in clear.text + close.text + single.text
    tie = judge([group("l1", {0: 10.5620, 1: 10.5620}), group("cp", {0: 10.5618, 1: 10.5618})],
                0.5, "set")
    assert tie.decisive is False
    assert tie.text == "ratio 0.5: l1 and cp tie on set at 10.562 dB (a margin below 0.001 dB)"
    bigger = judge([group("dr+dr-search", {0: 30.3}, removed=0.668),
                    group("cp", {0: 30.0, 1: 30.1, 2: 30.2})], 0.7, "set")
    assert "(std up to 0.100 dB over 1 and 3 seeds; ahead in 1 of 1 seeds)" in bigger.text
    assert ("not the same size: dr+dr-search removed 0.668 of the parameters, cp 0.500"
            in bigger.text)
    alone = judge([group("l1", {0: 30.0}), Group(0.5, "dr", "dr", "uniform", [], failed=1)],
                  0.5, "set")
    assert alone.runner_up is None and "nothing to compare" in alone.text


def test_spread_shows_mean_and_sample_std() -> None:
    assert Spread((1.0, 2.0, 3.0)).show(2) == "2.00±1.00"
    assert Spread((28.5,)).show(3) == "28.500"
    assert Spread(()).show(3) == "-"
