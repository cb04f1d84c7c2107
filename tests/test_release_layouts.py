"""Every release layout loads the same way through checkpoint detection and ``--weights``.

Public releases wrap their weights (``params_ema``, ``params``, ``state_dict``, ``model``) and
prefix their keys (``module.`` from DataParallel, ``model.``); some ship ``.safetensors``.
Both doors share one reader, so a file that detection opens is a file ``--weights`` takes, and
both reproduce the original net's output exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from srprune.cli import main
from srprune.models import build_model, load_weights, resolve_model

State = dict[str, torch.Tensor]


def prefixed(prefix: str) -> Callable[[State], State]:
    return lambda s: {prefix + k: v for k, v in s.items()}


LAYOUTS: dict[str, Callable[[State], object]] = {
    "plain": lambda s: s,
    "params_ema": lambda s: {"params_ema": s, "params": s},
    "params": lambda s: {"params": s},
    "state_dict-module": lambda s: {"state_dict": prefixed("module.")(s), "epoch": 7},
    "module": prefixed("module."),
    "model": prefixed("model."),
    "module-model": prefixed("module.model."),
    "safetensors": lambda s: s,
}


def write(layout: str, state: State, folder: Path) -> Path:
    data = LAYOUTS[layout](state)
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = folder / "w.safetensors"
        save_file({k: v.contiguous() for k, v in data.items()}, str(path))
        return path
    path = folder / "w.pth"
    torch.save(data, path)
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_weights_accepts_every_release_layout(layout, tmp_path):
    torch.manual_seed(1)
    source = build_model("espcn", 2, pretrained=False)
    path = write(layout, source.net.state_dict(), tmp_path)
    target = build_model("espcn", 2, pretrained=False)
    load_weights(target, path)
    x = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
    # the CLI takes the same file
    result = CliRunner().invoke(main, ["info", "espcn", "--scale", "2", "--weights", str(path),
                                       "--input-size", "8", "8"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("layout", ["params_ema", "state_dict-module", "module", "safetensors"])
def test_detection_opens_the_same_files(layout, tmp_path):
    torch.manual_seed(2)
    source = build_model("edsr-baseline", 2, pretrained=False)
    path = write(layout, source.net.state_dict(), tmp_path)
    model = resolve_model(str(path))
    assert model.meta["detected"].startswith("edsr-baseline x2")
    x = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def test_a_prefix_that_does_not_fit_is_named(tmp_path):
    source = build_model("espcn", 2, pretrained=False)
    path = write("module", {"extra." + k: v for k, v in source.net.state_dict().items()},
                 tmp_path)
    result = CliRunner().invoke(main, ["info", "espcn", "--scale", "2", "--weights", str(path)])
    assert result.exit_code == 2
    assert "weights do not match the model" in result.stderr
    assert "missing keys" in result.stderr
