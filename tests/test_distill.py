"""Distillation from the unpruned model: the loss terms, the layers, the settings and the CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

import srprune
from srprune.cli import main
from srprune.config import DISTILL_WEIGHT, RunConfig
from srprune.data.images import PatchSampler
from srprune.errors import SrpruneError
from srprune.hooks import capture_layer
from srprune.models import build_model
from srprune.training.distill import Distiller, consumer_layers, feature_l1
from srprune.training.loss import dr_loss
from srprune.training.trainer import TrainConfig, Trainer


def images(n: int = 2, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(n)]


def pruned_pair(ratio: float = 0.5, scope: str = "internal"):
    """(teacher, student): drn-t with its shipped weights, and an l1-pruned copy of it."""
    teacher = build_model("drn-t", 4)
    student = copy.deepcopy(teacher)
    srprune.compress(student, ratio, criterion="l1", scope=scope)
    return teacher, student


def test_consumer_layers_are_the_convs_whose_inputs_were_pruned():
    teacher, student = pruned_pair()
    layers = consumer_layers(teacher.net, student.net)
    convs = dict(student.net.named_modules())
    theirs = dict(teacher.net.named_modules())
    assert layers
    for name, module in convs.items():
        if isinstance(module, torch.nn.Conv2d):
            reduced = module.in_channels < theirs[name].in_channels
            assert (name in layers) == reduced
    assert consumer_layers(teacher.net, teacher.net) == []


def test_feature_l1_compares_channel_means_when_widths_differ():
    a, b = torch.rand(2, 4, 5, 5), torch.rand(2, 6, 5, 5)
    assert torch.allclose(feature_l1(a, b), (a.mean(1) - b.mean(1)).abs().mean())
    c = torch.rand(2, 4, 5, 5)
    assert torch.allclose(feature_l1(a, c), (a - c).abs().mean())


def test_the_distillation_term_by_hand():
    teacher, student = pruned_pair()
    lr, hr = PatchSampler(images(), 4, 8, 2, seed=0).next_batch()
    distiller = Distiller(teacher, student, weight=0.7, feature_weight=0.2)
    with distiller.watch():
        dr_loss(student, lr, hr)
    term = distiller.loss(lr[0])
    with torch.no_grad():
        expect = 0.7 * F.l1_loss(student(lr[0]), teacher(lr[0]))
        feats = []
        for name in distiller.layers:
            s_mod = dict(student.net.named_modules())[name]
            t_mod = dict(teacher.net.named_modules())[name]
            with capture_layer(s_mod, "output") as ours, capture_layer(t_mod, "output") as theirs:
                student(lr[0]), teacher(lr[0])
            feats.append(feature_l1(ours[0], theirs[0]))
        expect = expect + 0.2 * torch.stack(feats).mean()
    assert torch.allclose(term, expect, rtol=1e-5)
    term.backward()
    assert all(p.grad is None for p in teacher.net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.net.parameters())
    assert not teacher.net.training


def test_a_student_equal_to_its_teacher_has_nothing_to_learn_from_it():
    teacher = build_model("drn-t", 4)
    trainer = Trainer(copy.deepcopy(teacher), PatchSampler(images(), 4, 8, 2, seed=0),
                      TrainConfig(steps=2, batch=2, patch=8, distill_weight=1.0),
                      teacher=teacher)
    first = trainer.train_step()
    assert first["distill"] == pytest.approx(0.0, abs=1e-4)
    second = trainer.train_step()  # the student moved, the teacher did not
    assert second["distill"] > 1e-4


def test_distillation_changes_the_fine_tuning_and_is_reported(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, img in enumerate(images(2, 64)):
        Image.fromarray(img).save(folder / f"p{i}.png")

    def run(**distill):
        result = srprune.compress(build_model("drn-t", 4), 0.5, criterion="l1", data=str(folder),
                                  calib_batches=1, calib_batch=2, calib_patch=8,
                                  finetune_steps=3, finetune_batch=2, finetune_patch=8,
                                  finetune_keep="last", **distill)
        return result.model.net.state_dict(), result.finetune

    plain, plain_report = run(distill_weight=0.0)
    distilled, report = run(distill_weight=1.0, distill_features=0.5)
    assert (report["distill_weight"], report["distill_features"]) == (1.0, 0.5)
    assert (plain_report["distill_weight"], plain_report["distill_features"]) == (0.0, 0.0)
    assert any(not torch.equal(plain[k], distilled[k]) for k in plain)
    default, default_report = run()  # fine-tuning a pruned model distils by default
    assert (default_report["distill_weight"], default_report["distill_features"]) == (
        DISTILL_WEIGHT, 0.0)
    assert any(not torch.equal(plain[k], default[k]) for k in plain)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("distill_weight", -1.0, r"distill_weight \(--distill-weight\) must be a finite number"),
    ("distill_features", float("nan"), r"distill_features \(--distill-features\) must be"),
    ("bf16", "yes", r"bf16 \(--bf16\) must be true or false"),
])
def test_run_config_checks_the_new_settings(key, value, message):
    with pytest.raises(SrpruneError, match=message):
        RunConfig.build(ratio=0.5, **{key: value})


def test_run_config_carries_the_distillation_settings():
    config = RunConfig.build(ratio=0.5, distill_weight=0.5, distill_features=0.1)
    assert (config.finetune.distill_weight, config.finetune.distill_features) == (0.5, 0.1)
    settings = config.settings()
    assert settings["distill_weight"] == 0.5 and settings["bf16"] is False


def test_feature_distillation_of_an_unpruned_model_is_refused():
    teacher = build_model("drn-t", 4)
    with pytest.raises(SrpruneError, match="no layer of the student has fewer input channels"):
        Distiller(teacher, copy.deepcopy(teacher), 0.0, feature_weight=1.0)


def test_cli_train_distils_a_pruned_artifact_from_its_teacher(photo_dir, tmp_path):
    pruned = tmp_path / "p.srp"
    r = CliRunner().invoke(main, ["compress", "drn-t", "--ratio", "0.5", "--out", str(pruned)])
    assert r.exit_code == 0, r.output
    base = ["train", str(pruned), "--data", str(photo_dir), "--steps", "2", "--batch", "2",
            "--patch", "8"]
    r = CliRunner().invoke(main, [*base, "--distill-weight", "1", "--out",
                                  str(tmp_path / "x.srp")])
    assert r.exit_code == 2
    assert r.output.strip() == ("error: --distill-weight and --distill-features need --teacher "
                                "MODEL (the unpruned model to distil from)")
    r = CliRunner().invoke(main, [*base, "--teacher", "drn-t", "--distill-weight", "1",
                                  "--distill-features", "0.5", "--out", str(tmp_path / "t.srp"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    config = json.loads(r.stdout)["config"]
    assert (config["distill_weight"], config["distill_features"]) == (1.0, 0.5)
    assert srprune.load(tmp_path / "t.srp").n_params == srprune.load(pruned).n_params
    r = CliRunner().invoke(main, [*base, "--teacher", "drn-t", "--out", str(tmp_path / "d.srp"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["config"]["distill_weight"] == DISTILL_WEIGHT
    r = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "n.srp"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["config"]["distill_weight"] == 0.0  # no teacher, no distillation


def test_cli_train_refuses_a_negative_distillation_weight(photo_dir, tmp_path):
    r = CliRunner().invoke(main, ["train", "drn-t", "--data", str(photo_dir), "--steps", "1",
                                  "--distill-weight", "-2", "--teacher", "drn-t", "--out",
                                  str(tmp_path / "w.pt")])
    assert r.exit_code == 2
    assert r.output.strip() == "error: --distill-weight must be a finite number >= 0, got -2.0"


def test_ctrl_c_during_distilled_finetuning_continues_exactly(photo_dir, tmp_path):
    import shlex

    from srprune.api import compress_model
    from srprune.errors import Interrupted

    settings = {"criterion": "l1", "data": str(photo_dir), "calib_batches": 1, "calib_batch": 2,
                "calib_patch": 8, "finetune_steps": 4, "finetune_batch": 2,
                "finetune_patch": 8, "finetune_keep": "last", "distill_weight": 1.0,
                "distill_features": 0.5}

    def stop(stage, done, _total):
        if stage == "finetune" and done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "p.srp"
    with pytest.raises(Interrupted) as exc:
        compress_model(build_model("drn-t", 4), 0.5, out=str(out), progress=stop, **settings)
    message = str(exc.value)
    assert (f"a training checkpoint to {out}.ckpt and the unpruned teacher to "
            f"{out}.teacher.srp; continue with") in message
    assert srprune.load(f"{out}.teacher.srp").n_params == build_model("drn-t", 4).n_params
    whole = compress_model(build_model("drn-t", 4), 0.5, **settings).model

    command = shlex.split(message.split("continue with: srprune ")[1])
    assert command[command.index("--teacher") + 1] == f"{out}.teacher.srp"
    command[command.index("NEW.srp")] = str(tmp_path / "new.srp")
    r = CliRunner().invoke(main, command)
    assert r.exit_code == 0, r.output
    resumed = srprune.load(tmp_path / "new.srp")
    for key, value in whole.net.state_dict().items():
        assert torch.equal(resumed.net.state_dict()[key], value), key
