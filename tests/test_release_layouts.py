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


class BasicsrResBlock(torch.nn.Module):
    """BasicSR's ResidualBlockNoBN, as its EDSR uses it."""

    def __init__(self, c: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x))) * self.res_scale


class BasicsrEDSR(torch.nn.Module):
    """BasicSR's EDSR layout (RGB in [0, 1], its mean outside the state dict)."""

    def __init__(self, c: int = 16, blocks: int = 2, scale: int = 2) -> None:
        super().__init__()
        self.img_range = 255.0
        self.mean = torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1)
        self.conv_first = torch.nn.Conv2d(3, c, 3, padding=1)
        self.body = torch.nn.Sequential(*[BasicsrResBlock(c, 1.0) for _ in range(blocks)])
        self.conv_after_body = torch.nn.Conv2d(c, c, 3, padding=1)
        ups: list[torch.nn.Module] = []
        for _ in range(scale.bit_length() - 1):
            ups += [torch.nn.Conv2d(c, 4 * c, 3, padding=1), torch.nn.PixelShuffle(2)]
        self.upsample = torch.nn.Sequential(*ups)
        self.conv_last = torch.nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(x)) / self.img_range + self.mean


@pytest.mark.parametrize("scale", [2, 4])
def test_a_basicsr_edsr_release_is_detected_and_exact(scale, tmp_path):
    torch.manual_seed(3)
    net = BasicsrEDSR(16, 3, scale).eval()
    path = tmp_path / "edsr.pth"
    torch.save({"params": net.state_dict()}, path)
    model = resolve_model(str(path))
    assert model.scale == scale and model.config["n_feats"] == 16
    assert "another project's key layout" in model.meta["detected"]
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x * 255) / 255, net(x), atol=1e-5)


def test_the_rlfn_prune_release_layout_is_detected(tmp_path):
    """bytedance/RLFN's test_demo loads RLFN_Prune: 46 channels, 48 inside, 4 blocks."""
    torch.manual_seed(4)
    source = build_model("rlfn", 4, pretrained=False, feature_channels=46, mid_channels=48,
                         n_blocks=4)
    path = tmp_path / "rlfn_ntire.pth"
    torch.save(source.net.state_dict(), path)
    model = resolve_model(str(path))
    assert (model.config["feature_channels"], model.config["mid_channels"],
            model.config["n_blocks"]) == (46, 48, 4)
    x = torch.rand(1, 3, 16, 16) * 255
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
