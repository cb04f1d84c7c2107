"""Keep-best judges fine-tuning on images it never trains on (a seeded split of --data)."""

from __future__ import annotations

from srprune.api import compress_model
from srprune.data.images import PatchSampler, open_image_set
from srprune.models import build_model
from srprune.training.validation import MIN_IMAGES_TO_HOLD_OUT, split_holdout
from tests.conftest import write_photos


def test_a_folder_is_split_into_training_and_held_out_images(tmp_path):
    images = open_image_set(write_photos(tmp_path / "ten", 40, n=10), 2)
    train, held = split_holdout(images, seed=0)
    assert held is not None and len(held) == 1 and len(train) == 9
    assert not set(train.names) & set(held.names)
    assert set(train.names) | set(held.names) == set(images.names)
    again, held_again = split_holdout(images, seed=0)
    assert held_again.names == held.names and again.names == train.names
    assert (held[0].hr == images[images.names.index(held.names[0])].hr).all()
    # a sampler never draws a held-out image
    sampler = PatchSampler(train, 2, 8, 4, seed=0)
    assert len(sampler) == 9


def test_a_small_folder_holds_nothing_out(tmp_path):
    images = open_image_set(write_photos(tmp_path / "few", 40, n=MIN_IMAGES_TO_HOLD_OUT - 1), 2)
    train, held = split_holdout(images, seed=0)
    assert held is None and train is images


def test_the_report_names_the_held_out_images(tmp_path):
    folder = write_photos(tmp_path / "photos", 48, n=5)
    model = build_model("drn-t", 4)
    result = compress_model(model, 0.3, data=str(folder), finetune_steps=2, finetune_batch=2,
                            finetune_patch=8, calib_batches=1, calib_batch=2, calib_patch=8,
                            input_size=(8, 8))
    validation = result.finetune["validation"]
    held = validation["images"]
    assert held.startswith("held out: p") and "," not in held, held
    assert validation["patches"] == 16
