"""Dual-regression training: the loss, exact resume, weights files and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main
from srprune.data.images import PatchSampler
from srprune.errors import SrpruneError
from srprune.models import build_model, load_weights
from srprune.models.zoo import build_srnet
from srprune.training.loss import dr_loss
from srprune.training.trainer import TrainConfig, Trainer


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


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, img in enumerate(images(2, 64)):
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


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
