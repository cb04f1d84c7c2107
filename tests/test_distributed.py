"""Training under torchrun: 2 CPU processes (gloo) against one process with the same global batch.

Tolerances (measured: losses agree to 3e-7 relative, weights to 3e-5 absolute; splitting the
batch changes only the order of float sums): per-step losses within 1e-4 relative, weights
within 1e-3 absolute + 1e-4 relative. Training each rank on its half of the batch without
averaging gradients misses the loss curve by far more than that (checked below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main
from srprune.data.images import PatchSampler, open_image_set
from srprune.errors import SrpruneError
from srprune.training import distributed
from srprune.training.distributed import World

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torchrun needs torch.distributed with gloo")

LOSS_RTOL = 1e-4
WEIGHT_ATOL, WEIGHT_RTOL = 1e-3, 1e-4
LAUNCHER = "import sys\nfrom srprune.cli import main\nsys.exit(main())\n"
# a run killed hard (no Ctrl-C, no clean-up) just before the update of step 7
KILLED = """import os, sys
from srprune.training.trainer import Trainer
real_update = Trainer._update
def update(self):
    if self.step == 6:
        os._exit(9)
    real_update(self)
Trainer._update = update
from srprune.cli import main
sys.exit(main())
"""


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(
            folder / f"p{i}.png")
    return folder


def torchrun(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 SCRIPT ARGS`` on CPU, 2 minutes at most."""
    path = tmp_path / f"launch_{abs(hash(script))}.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV_KEYS}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(path), *args], capture_output=True, text=True, env=env, timeout=240)


def train_args(photos: Path, out: Path, *extra: str, steps: int = 10,
               batch: int = 4) -> list[str]:
    return ["train", "drn-t", "--data", str(photos), "--steps", str(steps), "--batch",
            str(batch), "--patch", "8", "--lr", "2e-3", "--seed", "3", "--out", str(out),
            *extra]


def single(args: list[str]) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output


def log_of(checkpoint: Path) -> np.ndarray:
    return np.array(torch.load(checkpoint, weights_only=True)["log"]["loss"])


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)


def test_killed_torchrun_run_resumes_to_the_single_process_result(photos, tmp_path):
    ref = tmp_path / "single" / "w.pt"
    ref.parent.mkdir()
    single(train_args(photos, ref))
    half = tmp_path / "half" / "w.pt"  # what each rank would do without averaging gradients
    half.parent.mkdir()
    single(train_args(photos, half, batch=2))

    out = tmp_path / "ddp" / "w.pt"
    out.parent.mkdir()
    args = train_args(photos, out, "--checkpoint-every", "3")
    killed = torchrun(tmp_path, KILLED, *args)
    assert killed.returncode != 0, killed.stderr
    assert not out.exists()
    assert torch.load(f"{out}.ckpt", weights_only=True)["step"] == 6

    resumed = torchrun(tmp_path, LAUNCHER, *args, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)  # one JSON document: rank 0 alone reports
    assert report["processes"] == 2 and report["resumed"]["step"] == 6
    assert sorted(p.name for p in out.parent.iterdir()) == ["w.pt", "w.pt.ckpt"]

    ours, theirs = log_of(f"{out}.ckpt"), log_of(f"{ref}.ckpt")
    assert len(ours) == len(theirs) == 10
    np.testing.assert_allclose(ours, theirs, rtol=LOSS_RTOL)
    assert np.max(np.abs(log_of(f"{half}.ckpt") - theirs) / theirs) > 100 * LOSS_RTOL
    a, b = torch.load(out, weights_only=True), torch.load(ref, weights_only=True)
    assert_same_weights(a["net"], b["net"])
    for x, y in zip(a["duals"], b["duals"], strict=True):
        assert_same_weights(x, y)


def test_compress_finetuning_under_torchrun_matches_one_process(photos, tmp_path):
    def args(out: Path) -> list[str]:
        return ["compress", "drn-t", "--ratio", "0.5", "--criterion", "l1", "--data",
                str(photos), "--preset", "fast", "--calib-patch", "8", "--finetune-steps", "4",
                "--finetune-batch", "4", "--finetune-patch", "8", "--finetune-eval-every", "2",
                "--distill-weight", "0.5", "--out", str(out), "--json"]

    ref = tmp_path / "single" / "p.srp"
    ref.parent.mkdir()
    r = CliRunner().invoke(main, args(ref))
    assert r.exit_code == 0, r.output
    expected = json.loads(r.stdout)["finetune"]

    out = tmp_path / "ddp" / "p.srp"
    out.parent.mkdir()
    run = torchrun(tmp_path, LAUNCHER, *args(out))
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)["finetune"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["p.srp"]
    assert got["processes"] == 2 and got["distill_weight"] == 0.5
    v, w = got["validation"], expected["validation"]
    assert (v["best_step"], v["kept"]) == (w["best_step"], w["kept"])
    assert [s for s, _ in v["evals"]] == [2, 4]
    np.testing.assert_allclose([p for _, p in v["evals"]], [p for _, p in w["evals"]],
                               atol=1e-3)
    from srprune import load

    assert_same_weights(load(out).net.state_dict(), load(ref).net.state_dict())


def test_the_ranks_shares_make_up_the_single_process_batch(photos):
    images = open_image_set(photos, 4)
    whole = PatchSampler(images, 4, 8, 6, seed=2)
    shares = [PatchSampler(images, 4, 8, 6, seed=2, rank=r, ranks=3) for r in range(3)]
    for _ in range(3):
        lr, hr = whole.next_batch()
        parts = [s.next_batch() for s in shares]
        assert all(p[1].shape[0] == 2 for p in parts)
        assert torch.equal(hr, torch.cat([p[1] for p in parts]))
        for k, level in enumerate(lr):
            assert torch.equal(level, torch.cat([p[0][k] for p in parts]))
    assert all(s.state_dict() == whole.state_dict() for s in shares)


def test_world_from_the_torchrun_environment():
    assert distributed.from_env({}) == World(0, 1, 0)
    assert distributed.from_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}) == World(
        2, 4, 0)
    for env, message in (({"WORLD_SIZE": "2"}, "RANK is not"),
                         ({"WORLD_SIZE": "2", "RANK": "2"}, "outside 0..1"),
                         ({"WORLD_SIZE": "two", "RANK": "0"}, "not an integer")):
        with pytest.raises(SrpruneError, match=message):
            distributed.from_env(env)


def test_the_global_batch_must_split_evenly():
    distributed.check_batch(8, "--batch", World(1, 4))
    with pytest.raises(SrpruneError, match=r"--batch 6 is the global batch and must be "
                                           r"divisible by the 4 processes"):
        distributed.check_batch(6, "--batch", World(1, 4))


def test_a_trainer_refuses_a_world_without_a_process_group(monkeypatch, photos):
    from srprune.models import build_model
    from srprune.training.trainer import TrainConfig, Trainer

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    sampler = PatchSampler(open_image_set(photos, 4), 4, 8, 4, rank=0, ranks=2)
    with pytest.raises(SrpruneError, match="no process group is running"):
        Trainer(build_model("drn-t", 4), sampler, TrainConfig(steps=1, batch=4, patch=8))


@pytest.mark.parametrize("command", ["train", "compress"])
@pytest.mark.parametrize("flag", ["--bf16", "--channels-last"])
def test_gpu_flags_on_cpu_are_one_error_line(photos, tmp_path, command, flag):
    args = (train_args(photos, tmp_path / "w.pt", steps=1) if command == "train" else
            ["compress", "drn-t", "--ratio", "0.5", "--data", str(photos), "--finetune-steps",
             "1", "--out", str(tmp_path / "p.srp")])
    r = CliRunner().invoke(main, [*args, flag])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0]
    assert "is for CUDA devices; this run is on cpu" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
