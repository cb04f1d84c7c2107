"""The shipped CPU-trained drn-t x4 weights really super-resolve."""

from __future__ import annotations

from srprune.data import builtin_eval_set
from srprune.evaluate import evaluate_model
from srprune.models import build_model, model_spec


def test_shipped_weights_exist_and_load_by_default():
    spec = model_spec("drn-t")
    assert spec.default_weights(4) is not None
    model = build_model("drn-t", 4)  # loads the shipped file, strict keys and shapes
    assert model.duals is not None


def test_shipped_drn_t_beats_bicubic():
    # The full six-photo figure (RESULTS.md) is >= +1.0 dB; on these three small photos a
    # looser bound keeps the test fast and immune to noise while still failing for an
    # untrained or broken model (random weights score about -10 dB).
    images = builtin_eval_set(4)
    subset = [images[i] for i in range(3)]  # astronaut, chelsea, coffee
    result = evaluate_model(build_model("drn-t", 4), subset)
    assert result["psnr"] - result["bicubic_psnr"] > 0.5
    assert result["ssim"] > result["bicubic_ssim"]
