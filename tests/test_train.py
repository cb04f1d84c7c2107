"""Dual-regression training: the loss, exact resume, weights files and the CLI."""

from __future__ import annotations

import hashlib
import json
import shlex
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import srprune
from srprune.api import compress_model
from srprune.cli import main
from srprune.data.images import PatchSampler
from srprune.errors import Interrupted, SrpruneError
from srprune.models import build_model, load_weights
from srprune.models.zoo import build_srnet
from srprune.training.loss import dr_loss
from srprune.training.trainer import (
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    read_train_checkpoint,
)


def images(n: int = 2, size: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(n)]


def tiny() -> object:
    return build_model("drn-t", 4, pretrained=False, n_blocks=1)


def test_dr_loss_terms_by_hand():
    model = tiny()
    sampler = PatchSampler(images(), 4, 6, 2, seed=0)
    lr, hr = sampler.next_batch()
    total, primal, dual = dr_loss(model, lr, hr, dual_weight=0.1)
    outs = model.outputs(lr[0])
    l1 = torch.nn.functional.l1_loss
    expect_primal = l1(outs[2], hr) + l1(outs[0], lr[0]) + l1(outs[1], lr[1])
    expect_dual = l1(model.duals[0](outs[1]), lr[0]) + l1(model.duals[1](outs[2]), lr[1])
    assert torch.allclose(primal, expect_primal)
    assert torch.allclose(dual, expect_dual)
    assert torch.allclose(total, expect_primal + 0.1 * expect_dual)
    no_dual, _, _ = dr_loss(model, lr, hr, dual_weight=0.0)
    assert torch.allclose(no_dual, expect_primal)


def test_single_output_models_chain_the_dual_nets():
    model = build_srnet(scale=4, n_feats=8, n_blocks=1)
    sampler = PatchSampler(images(), 4, 6, 2, seed=0)
    lr, hr = sampler.next_batch()
    _, _, dual = dr_loss(model, lr, hr)
    sr = model(lr[0])
    down2 = model.duals[1](sr)
    expect = (torch.nn.functional.l1_loss(down2, lr[1])
              + torch.nn.functional.l1_loss(model.duals[0](down2), lr[0]))
    assert torch.allclose(dual, expect)


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    trainer = Trainer(tiny(), PatchSampler(images(), 4, 6, 4, seed=0),
                      TrainConfig(steps=30, batch=4, patch=6, lr=2e-3))
    log = trainer.run()
    assert np.mean(log.loss[-5:]) < np.mean(log.loss[:5])


def test_resume_reproduces_the_seeded_loss_trajectory(tmp_path):
    def fresh() -> Trainer:
        torch.manual_seed(7)
        return Trainer(tiny(), PatchSampler(images(), 4, 6, 2, seed=5),
                       TrainConfig(steps=8, batch=2, patch=6, lr=1e-3, checkpoint_every=4))

    straight = fresh().run()
    first = fresh()
    first.run(until=4, checkpoint=tmp_path / "c.ckpt")
    second = fresh()
    second.resume(tmp_path / "c.ckpt")
    resumed = second.run()
    assert resumed.loss == straight.loss
    assert resumed.steps == list(range(1, 9))


def test_cosine_schedule():
    cfg = TrainConfig(steps=100, lr=1e-3, lr_min=1e-6)
    assert cfg.lr_at(0) == pytest.approx(1e-3)
    assert cfg.lr_at(50) == pytest.approx((1e-3 + 1e-6) / 2)
    assert cfg.lr_at(100) == pytest.approx(1e-6)


def test_wrong_scale_data_is_refused():
    model = tiny()
    sampler = PatchSampler(images(), 2, 6, 2, seed=0)  # x2 data for a x4 model
    lr, hr = sampler.next_batch()
    with pytest.raises(SrpruneError, match="does not match HR"):
        dr_loss(model, [lr[0], lr[0]], hr)


def test_cli_train_then_eval(photo_dir, tmp_path):
    out = tmp_path / "w.pt"
    r = CliRunner().invoke(main, ["train", "drn-t", "--data", str(photo_dir), "--steps", "3",
                                  "--batch", "2", "--patch", "8", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"] == 3
    model = load_weights(build_model("drn-t", 4, pretrained=False), out)
    assert model.n_params > 0
    r = CliRunner().invoke(main, ["eval", "drn-t", "--weights", str(out), "--data",
                                  str(photo_dir), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert {"psnr", "ssim", "bicubic_psnr", "per_image"} <= set(data)
    assert len(data["per_image"]) == 2


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d, "no images"),
    (lambda d: (d / "bad.png").write_bytes(b"junk") and d, "bad.png"),
    (lambda d: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "s.png") or d,
     "smaller than the HR patch"),
])
def test_cli_train_bad_data_exit_2(tmp_path, make, message):
    folder = tmp_path / "d"
    folder.mkdir()
    make(folder)
    r = CliRunner().invoke(main, ["train", "drn-t", "--data", str(folder), "--steps", "1",
                                  "--patch", "8", "--out", str(tmp_path / "w.pt")])
    assert r.exit_code == 2
    assert message in r.stderr


# --- nothing lost, nothing crashes ------------------------------------------------------------

def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error(r, code: int, *texts: str) -> str:
    """The run ended with ``code`` and exactly one ``error:`` line on stderr naming ``texts``;
    any other stderr line is a progress line of a stage that had started (``[stage] ...``)."""
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and all(ln.startswith("[") for ln in lines[:-1]), r.stderr
    lines = errors
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def no_training(monkeypatch):
    """Any training step fails the test: checks must come before any work."""
    def forbidden(*_args, **_kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("srprune.training.trainer.dr_loss", forbidden)


def train_args(photo_dir, *extra: str, steps: int = 2) -> list[str]:
    return ["train", "drn-t", "--data", str(photo_dir), "--steps", str(steps), "--patch", "8",
            "--batch", "2", *extra]


def test_cli_train_never_overwrites_a_given_checkpoint(photo_dir, tmp_path, no_training):
    precious = tmp_path / "precious.srp"
    precious.write_bytes(b"months of work")
    before = digest(precious)
    r = CliRunner().invoke(main, train_args(photo_dir, "--checkpoint", str(precious), "--out",
                                            str(tmp_path / "newout.pt")))
    one_error(r, 2, f"{precious} already exists; pass --resume to continue that run or --force "
                    "to overwrite it")
    assert digest(precious) == before
    assert not (tmp_path / "newout.pt").exists()


def test_cli_train_never_overwrites_an_earlier_runs_default_checkpoint(photo_dir, tmp_path,
                                                                       no_training):
    old = tmp_path / "old_run.pt.ckpt"
    old.write_bytes(b"an earlier run")
    before = digest(old)
    r = CliRunner().invoke(main, train_args(photo_dir, "--out", str(tmp_path / "old_run.pt")))
    one_error(r, 2, "old_run.pt.ckpt already exists; pass --resume")
    assert digest(old) == before
    assert not (tmp_path / "old_run.pt").exists()


def test_cli_train_force_overwrites_the_checkpoint(photo_dir, tmp_path):
    old = tmp_path / "w.pt.ckpt"
    old.write_bytes(b"stale")
    r = CliRunner().invoke(main, train_args(photo_dir, "--out", str(tmp_path / "w.pt"),
                                            "--force"))
    assert r.exit_code == 0, r.output
    assert read_train_checkpoint(old)["step"] == 2


@pytest.mark.parametrize(("target", "message"), [
    (lambda t: ["--out", str(t / "nowhere" / "w.pt")], "folder {t}/nowhere does not exist"),
    (lambda t: ["--out", str(t / "w.pt"), "--checkpoint", str(t / "nowhere" / "c")],
     "folder {t}/nowhere does not exist"),
    (lambda t: ["--out", str(t / "w.pt"), "--checkpoint", str(t)], "{t} is a folder"),
    (lambda t: ["--out", str(t / "w.pt"), "--checkpoint", str(t / "w.pt")], "same file"),
    (lambda t: ["--out", str(t / "ro" / "w.pt")], "cannot write {t}/ro/w.pt"),
    (lambda t: ["--out", str(t / "w.pt"), "--checkpoint", str(t / "ro" / "c")],
     "cannot write {t}/ro/c"),
])
def test_cli_train_checks_every_output_target_before_training(photo_dir, tmp_path, monkeypatch,
                                                              no_training, target, message):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mkstemp = tempfile.mkstemp

    def refuse(*args, **kwargs):  # a read-only folder, even for root
        if Path(kwargs.get("dir", "")) == read_only:
            raise PermissionError(13, "Permission denied")
        return mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = CliRunner().invoke(main, train_args(photo_dir, *target(tmp_path)))
    one_error(r, 2, message.format(t=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "ro"]
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize(("flag", "value"), [
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"), ("--lr", "-1e-3"), ("--steps", "0"),
    ("--steps", "-1"), ("--batch", "0"), ("--patch", "0"), ("--dual-weight", "-1"),
    ("--dual-weight", "nan"), ("--seed", "-1"),
])
def test_cli_train_bad_numbers_name_the_flag(photo_dir, tmp_path, no_training, flag, value):
    args = train_args(photo_dir, "--out", str(tmp_path / "w.pt"))
    args += [flag, value]  # the last occurrence wins
    r = CliRunner().invoke(main, args)
    one_error(r, 2, f"{flag} must be")
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "w.pt.ckpt").exists()


def make_trainer(steps: int = 6, batch: int = 2, patch: int = 6, seed: int = 1,
                 dual_weight: float = 0.1, model=None) -> Trainer:
    torch.manual_seed(7)
    return Trainer(model or tiny(), PatchSampler(images(), 4, patch, batch, seed=5),
                   TrainConfig(steps=steps, batch=batch, patch=patch, lr=1e-3, seed=seed,
                               dual_weight=dual_weight))


def interrupt_at(k: int):
    def on_step(step, _losses):
        if step == k:
            raise KeyboardInterrupt

    return on_step


def assert_resumes_exactly(path, straight: Trainer) -> None:
    again = make_trainer()
    again.resume(path)
    log = again.run()
    assert log.loss == straight.log.loss and log.steps == straight.log.steps
    assert same_weights(again.model.net.state_dict(), straight.model.net.state_dict())
    for a, b in zip(again.model.duals, straight.model.duals):
        assert same_weights(a.state_dict(), b.state_dict())


def test_ctrl_c_between_steps_saves_a_resumable_checkpoint(tmp_path):
    straight = make_trainer()
    straight.run()
    trainer = make_trainer()
    with pytest.raises(Interrupted, match=r"interrupted at step 3/6; checkpoint saved to") as exc:
        trainer.run(checkpoint=tmp_path / "c.ckpt", on_step=interrupt_at(3))
    assert isinstance(exc.value, TrainingInterrupted) and exc.value.exit_code == 130
    assert exc.value.checkpoint == tmp_path / "c.ckpt"
    assert read_train_checkpoint(tmp_path / "c.ckpt")["step"] == 3
    assert_resumes_exactly(tmp_path / "c.ckpt", straight)


def test_ctrl_c_within_a_step_puts_its_batch_back(tmp_path, monkeypatch):
    straight = make_trainer()
    straight.run()
    calls = {"n": 0}

    def loss_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # in step 4, after its batch was drawn
            raise KeyboardInterrupt
        return dr_loss(*args, **kwargs)

    monkeypatch.setattr("srprune.training.trainer.dr_loss", loss_then_interrupt)
    trainer = make_trainer()
    with pytest.raises(TrainingInterrupted, match="interrupted at step 3/6"):
        trainer.run(checkpoint=tmp_path / "c.ckpt")
    monkeypatch.undo()
    assert read_train_checkpoint(tmp_path / "c.ckpt")["sampler"]["batches_drawn"] == 3
    assert_resumes_exactly(tmp_path / "c.ckpt", straight)


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="needs Python's default SIGINT handler")
def test_ctrl_c_during_the_weight_update_waits_for_it(tmp_path, monkeypatch):
    straight = make_trainer()
    straight.run()
    trainer = make_trainer()
    first = trainer.optimizers[0]
    real_step = first.step

    def step_with_sigint(*args, **kwargs):
        if trainer.step == 2:  # Ctrl-C arrives between the primal and the dual updates
            signal.raise_signal(signal.SIGINT)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(first, "step", step_with_sigint)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 3/6"):
        trainer.run(checkpoint=tmp_path / "c.ckpt")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert_resumes_exactly(tmp_path / "c.ckpt", straight)


def test_ctrl_c_without_a_checkpoint_path_says_nothing_was_saved():
    with pytest.raises(TrainingInterrupted, match="nothing saved") as exc:
        make_trainer().run(on_step=interrupt_at(2))
    assert exc.value.checkpoint is None and exc.value.step == 2


def test_cli_ctrl_c_then_resume_gives_the_uninterrupted_weights(photo_dir, tmp_path,
                                                               monkeypatch):
    straight = tmp_path / "straight.pt"
    r = CliRunner().invoke(main, train_args(photo_dir, "--out", str(straight), steps=4))
    assert r.exit_code == 0, r.output
    calls = {"n": 0}

    def loss_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return dr_loss(*args, **kwargs)

    monkeypatch.setattr("srprune.training.trainer.dr_loss", loss_then_interrupt)
    out = tmp_path / "w.pt"
    args = train_args(photo_dir, "--out", str(out), steps=4)
    r = CliRunner().invoke(main, args)
    one_error(r, 130, f"interrupted at step 2/4; checkpoint saved to {out}.ckpt; continue with "
                      "the same command plus --resume")
    assert not out.exists()
    monkeypatch.undo()
    r = CliRunner().invoke(main, [*args, "--resume", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["resumed"] == {"checkpoint": f"{out}.ckpt", "step": 2,
                                               "adopted": {}}
    a, b = torch.load(straight, weights_only=True), torch.load(out, weights_only=True)
    assert same_weights(a["net"], b["net"])
    assert all(same_weights(x, y) for x, y in zip(a["duals"], b["duals"]))


def test_ctrl_c_during_compress_finetuning_saves_model_and_checkpoint(photo_dir, tmp_path):
    # keep "last": the continuation (srprune train) returns the last step's weights
    settings = {"criterion": "l1", "data": str(photo_dir), "calib_batches": 1, "calib_batch": 2,
                "calib_patch": 8, "finetune_steps": 4, "finetune_batch": 2,
                "finetune_patch": 8, "finetune_keep": "last"}

    def stop(stage, done, _total):
        if stage == "finetune" and done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "p.srp"
    torch.manual_seed(0)
    with pytest.raises(Interrupted) as exc:
        compress_model(tiny(), 0.5, out=str(out), progress=stop, **settings)
    message = str(exc.value)
    assert message.startswith("interrupted at fine-tuning step 2/4; saved the pruned model as "
                              f"it is to {out} and a training checkpoint to {out}.ckpt")
    assert srprune.load(out).meta["interrupted"]["finetune_step"] == 2
    torch.manual_seed(0)
    whole = compress_model(tiny(), 0.5, out=str(tmp_path / "whole.srp"), **settings).model

    command = shlex.split(message.split("continue with: srprune ")[1])
    command[command.index("NEW.srp")] = str(tmp_path / "new.srp")
    r = CliRunner().invoke(main, command)
    assert r.exit_code == 0, r.output
    assert "with that run's --batch 2, --patch 8, --seed 0, --lr 0.0005" in " ".join(
        r.stdout.split())
    resumed = srprune.load(tmp_path / "new.srp")
    assert same_weights(resumed.net.state_dict(), whole.net.state_dict())
    for a, b in zip(resumed.duals, whole.duals):
        assert same_weights(a.state_dict(), b.state_dict())


def test_ctrl_c_during_compress_finetuning_without_out_saves_nothing(photo_dir, tmp_path):
    def stop(stage, done, _total):
        if stage == "finetune" and done == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"step 1/2; nothing saved \(no output path"):
        compress_model(tiny(), 0.5, criterion="l1", data=str(photo_dir), calib_batches=1,
                       calib_batch=2, calib_patch=8, finetune_steps=2, finetune_batch=2,
                       finetune_patch=8, progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.fixture
def checkpoint6(tmp_path):
    """A checkpoint of ``make_trainer()`` at step 2."""
    path = tmp_path / "c.ckpt"
    trainer = make_trainer()
    trainer.run(until=2)
    trainer.save(path)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda: make_trainer(model=build_model("drn-t", 4, pretrained=False, n_blocks=1,
                                            n_feats=16)),
     r"does not fit this model: net\.\S+ is \(8, 3, 3, 3\) in the checkpoint but "
     r"\(16, 3, 3, 3\) in the model"),
    (lambda: make_trainer(model=build_model("drn-t", 4, pretrained=False, n_blocks=2)),
     r"does not fit this model: it lacks net\.\S+ \(model shape"),
    (lambda: make_trainer(model=build_model("drn-t", 8, pretrained=False, n_blocks=1)),
     r"does not fit this model"),
    (lambda: make_trainer(steps=1), r"is at step 2, beyond the 1 steps of this run"),
    (lambda: make_trainer(batch=3), r"was made with batch 2, this run has batch 3"),
    (lambda: make_trainer(seed=2), r"was made with seed 1, this run has seed 2"),
    (lambda: make_trainer(dual_weight=0.0), r"was made with dual_weight 0.1"),
])
def test_resume_refuses_another_run_and_changes_nothing(checkpoint6, make, message):
    trainer = make()
    before = {k: v.clone() for k, v in trainer.model.net.state_dict().items()}
    with pytest.raises(SrpruneError, match=message):
        trainer.resume(checkpoint6)
    assert trainer.step == 0
    assert same_weights(before, trainer.model.net.state_dict())


def _tamper(key, value):
    def change(data):
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return change


def _first_net_tensor(value):
    def change(data):
        data["net"][next(iter(data["net"]))] = value
    return change


def _optimizer_state(data):
    state = data["optimizers"][0]["state"]
    first = next(iter(state))
    state[first]["exp_avg"] = torch.zeros(3)


@pytest.mark.parametrize(("change", "message"), [
    (_tamper("net", KeyError), "'net' is missing"),
    (_tamper("step", "3"), "'step' has the wrong type"),
    (_tamper("step", -1), "'step' has the wrong type"),
    (_tamper("log", {"steps": []}), "'log' has the wrong type"),
    (_tamper("torch_rng", torch.zeros(3, dtype=torch.uint8)), "'torch_rng' has the wrong size"),
    (_tamper("sampler", {"rng": "x"}), "was made with sampler scale None"),
    (_tamper("duals", []), "it holds 0 dual nets, the model has 2"),
    (_tamper("optimizers", []), "0 optimiser states for 3 optimisers"),
    (_tamper("format", "something else"), "is not an srprune training checkpoint"),
    (_first_net_tensor("weights"), "'net' has the wrong type"),
    (_first_net_tensor(torch.zeros(2)), "is (2,) in the checkpoint but (3, 3, 1, 1)"),
    (_optimizer_state, "exp_avg of tensor 0 is (3,), its parameter (3, 3, 1, 1)"),
    (lambda data: data["config"].pop("batch"), "config 'batch' is missing"),
    (lambda data: data["sampler"].update(rng={"state": 1}), "bad sampler state"),
])
def test_cli_resume_of_a_tampered_checkpoint_is_one_line(photo_dir, tmp_path, change, message):
    out = tmp_path / "w.pt"
    args = train_args(photo_dir, "--out", str(out), steps=3)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    out.unlink()
    ckpt = tmp_path / "w.pt.ckpt"
    data = torch.load(ckpt, weights_only=True)
    change(data)
    torch.save(data, ckpt)
    before = digest(ckpt)
    r = CliRunner().invoke(main, [*args, "--resume"])
    one_error(r, 2, str(ckpt), message)
    assert digest(ckpt) == before and not out.exists()


def test_cli_resume_with_another_model_or_scale_is_one_line(photo_dir, tmp_path):
    args = train_args(photo_dir, "--out", str(tmp_path / "a.pt"), steps=1)
    assert CliRunner().invoke(main, args).exit_code == 0
    ckpt = tmp_path / "a.pt.ckpt"
    before = digest(ckpt)
    r = CliRunner().invoke(main, [*train_args(photo_dir, "--out", str(tmp_path / "b.pt")),
                                  "--checkpoint", str(ckpt), "--resume", "--scale", "8"])
    one_error(r, 2, f"{ckpt} does not fit this model")
    r = CliRunner().invoke(main, ["train", "drn-s", "--data", str(photo_dir), "--steps", "1",
                                  "--patch", "8", "--batch", "2", "--checkpoint", str(ckpt),
                                  "--resume", "--out", str(tmp_path / "c.pt")])
    one_error(r, 2, f"{ckpt} does not fit this model")
    assert digest(ckpt) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "a.pt.ckpt", "photos"]


def test_cli_resume_adopts_the_runs_settings_unless_a_flag_insists(photo_dir, tmp_path):
    out = tmp_path / "w.pt"
    r = CliRunner().invoke(main, train_args(photo_dir, "--out", str(out), "--lr", "1e-3",
                                            steps=3))
    assert r.exit_code == 0, r.output
    out.unlink()
    ckpt = tmp_path / "w.pt.ckpt"
    before = digest(ckpt)
    base = ["train", "drn-t", "--data", str(photo_dir), "--steps", "4", "--out", str(out),
            "--resume"]
    r = CliRunner().invoke(main, [*base, "--batch", "4"])
    one_error(r, 2, f"{ckpt} was made with --batch 2, but --batch 4 was given; drop --batch")
    assert digest(ckpt) == before and not out.exists()
    r = CliRunner().invoke(main, [*base, "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["resumed"]["adopted"] == {"batch": 2, "patch": 8, "lr": 1e-3}
    assert result["config"]["batch"] == 2 and result["steps"] == 4


def test_ctrl_c_during_compress_finetuning_keeps_an_existing_checkpoint(photo_dir, tmp_path):
    def stop(stage, done, _total):
        if stage == "finetune" and done == 1:
            raise KeyboardInterrupt

    out = tmp_path / "p.srp"
    earlier = tmp_path / "p.srp.ckpt"
    earlier.write_bytes(b"an earlier run")
    before = digest(earlier)
    with pytest.raises(Interrupted, match=f"a training checkpoint to {tmp_path}/p.srp.1.ckpt "
                                          f"and the unpruned teacher to {tmp_path}/p.srp"
                                          r".teacher.srp;"):
        compress_model(tiny(), 0.5, criterion="l1", data=str(photo_dir), calib_batches=1,
                       calib_batch=2, calib_patch=8, finetune_steps=2, finetune_batch=2,
                       finetune_patch=8, out=str(out), progress=stop)
    assert digest(earlier) == before
    assert read_train_checkpoint(tmp_path / "p.srp.1.ckpt")["step"] == 1


def test_warm_up_then_cosine():
    config = TrainConfig(steps=100, lr=1e-3, lr_min=0.0, warmup=10)
    assert config.lr_at(0) == pytest.approx(1e-4)
    assert config.lr_at(9) == pytest.approx(1e-3)
    assert config.lr_at(10) == pytest.approx(1e-3)
    assert config.lr_at(55) == pytest.approx(5e-4)
    assert config.lr_at(100) == pytest.approx(0.0)
    plain = TrainConfig(steps=100, lr=1e-3, lr_min=0.0)
    assert plain.lr_at(0) == pytest.approx(1e-3) and plain.lr_at(50) == pytest.approx(5e-4)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_finetuning_never_returns_worse_weights_silently(photo_dir, keep):
    from srprune import compress

    def run(lr: float, keep: str, steps: int = 4):
        torch.manual_seed(0)
        model = build_model("drn-t", 4, n_blocks=1, pretrained=False)
        result = compress(model, 0.5, data=str(photo_dir), calib_batches=1, calib_batch=2,
                          calib_patch=8, finetune_steps=steps, finetune_batch=2,
                          finetune_patch=8, finetune_lr=lr, finetune_keep=keep,
                          finetune_eval_every=1)
        return model, (result.finetune or {}).get("validation")

    pruned, _ = run(1.0, keep, steps=0)  # the same pruning, no fine-tuning
    model, v = run(5.0, keep)  # a rate this large makes every step worse
    assert v["evals"] and [step for step, _ in v["evals"]] == [1, 2, 3, 4]
    assert all(psnr < v["start_psnr"] for _, psnr in v["evals"])
    if keep == "best":
        assert v["kept"] == "start" and v["best_step"] == 0
        assert v["best_psnr"] == v["start_psnr"]
        assert all(torch.equal(a, b) for a, b in
                   zip(model.net.state_dict().values(), pruned.net.state_dict().values()))
    else:
        assert v["kept"] == "last" and v["last_psnr"] < v["start_psnr"]


def test_training_from_random_weights_follows_the_seed(photo_dir, tmp_path):
    def weights(seed: int, name: str) -> dict:
        out = tmp_path / name
        r = CliRunner().invoke(main, [*train_args(photo_dir, "--out", str(out), steps=1),
                                      "--seed", str(seed)])
        assert r.exit_code == 0, r.output
        return torch.load(out, weights_only=True)["net"]

    a, b, c = weights(4, "a.pt"), weights(4, "b.pt"), weights(5, "c.pt")
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_cli_train_checkpoint_every_must_be_positive(photo_dir, tmp_path):
    r = CliRunner().invoke(main, train_args(photo_dir, "--out", str(tmp_path / "w.pt"),
                                            "--checkpoint-every", "0"))
    one_error(r, 2, "--checkpoint-every must be an integer >= 1, got 0")
    assert not (tmp_path / "w.pt.ckpt").exists()


def test_cli_train_threads(photo_dir, tmp_path):
    before = torch.get_num_threads()
    try:
        r = CliRunner().invoke(main, train_args(photo_dir, "--out", str(tmp_path / "w.pt"),
                                                "--threads", "0"))
        one_error(r, 2, "--threads must be an integer >= 1, got 0")
        r = CliRunner().invoke(main, train_args(photo_dir, "--out", str(tmp_path / "w.pt"),
                                                "--threads", "1"))
        assert r.exit_code == 0, r.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
