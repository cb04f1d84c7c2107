"""Depth pruning: finding residual blocks, removing them, the latency strategy's ``depth``
option, and artifacts that replay the removal."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.latency_table import LatencyTable
from srprune.measure.profile import TimeSplit
from srprune.models import build_model
from srprune.models.artifacts import load_artifact, save_artifact
from srprune.models.depth import find_residual_blocks, remove_blocks
from srprune.models.srmodel import SRModel
from srprune.prune.engine import compress
from srprune.search.latency import LatencyTarget
from tests.test_latency_strategy import _batches, fake_measure, macs_ms

SIZE = (16, 16)


class Scaled(nn.Module):
    """x + 0.1 * conv(relu(conv(x))): residual with a scaled branch."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.conv2(torch.relu(self.conv1(x)))


class Plain(nn.Module):
    """A shape-preserving block without a skip: not removable."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(Scaled(8), Plain(8), Scaled(8))
        self.shared = Scaled(8)  # called twice: not removable
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        x = self.shared(self.shared(self.body(x)))
        return self.tail(x)


def tiny_drn(blocks: int = 3) -> SRModel:
    torch.manual_seed(0)
    return build_model("drn-t", 4, pretrained=False, n_blocks=blocks).eval()


def test_finds_scaled_residual_blocks_only():
    net = Net().eval()
    found = find_residual_blocks(net, torch.rand(1, 3, 12, 12))
    assert [b.name for b in found] == ["body.0", "body.2"]
    assert found[0].signature == found[1].signature


def test_finds_drn_rcabs_innermost_with_one_signature_per_stage():
    model = tiny_drn(2)
    found = find_residual_blocks(model.net, torch.rand(1, 3, 16, 16) * 255)
    assert [b.name for b in found] == ["up_blocks.0.0", "up_blocks.0.1",
                                       "up_blocks.1.0", "up_blocks.1.1"]
    assert found[0].signature == found[1].signature != found[2].signature
    assert find_residual_blocks(model.net, torch.rand(1, 3, 16, 16) * 255,
                                exclude=["up_blocks.0.1.body.0"])[1].name == "up_blocks.1.0"


def test_removing_a_block_equals_zeroing_it():
    model = tiny_drn(2)
    x = torch.rand(1, 3, 12, 12) * 255
    zeroed = build_model("drn-t", 4, pretrained=False, n_blocks=2).eval()
    zeroed.net.load_state_dict(model.net.state_dict())
    with torch.no_grad():
        for p in zeroed.net.up_blocks[1][0].parameters():
            p.zero_()
        expected = zeroed(x)
    before = model.n_params
    remove_blocks(model.net, ["up_blocks.1.0"])
    assert isinstance(model.net.up_blocks[1][0], nn.Identity)
    assert model.n_params < before
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-3)
    with pytest.raises(SrpruneError, match="no such module"):
        remove_blocks(model.net, ["up_blocks.9"])


@pytest.fixture
def analytic(tmp_path, monkeypatch):
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(LatencyTable, "_measure_ort", lambda self, shape: macs_ms(shape))
    monkeypatch.setattr(LatencyTarget, "_measure", fake_measure(1.0))
    # ORT's profile says: all of the run is convs (the analytic table decides everything)
    monkeypatch.setattr("srprune.search.latency.profile_split",
                        lambda *a, **k: TimeSplit(conv=1.0, width_scaled=0.0, fixed=0.0))


def test_depth_removes_a_block_that_does_nothing_first(analytic, tmp_path):
    """A block whose branch is almost zero costs no quality: the search removes it before
    narrowing anything; the engine then cuts widths in the shallower net."""
    model = tiny_drn()
    with torch.no_grad():
        model.net.up_blocks[0][1].body[2].weight.mul_(1e-4)
        model.net.up_blocks[0][1].body[2].bias.zero_()
    options = {"speedup": 1.05, "align": 1, "refine": 0, "depth": True}
    result = compress(model, None, _batches(), criterion="l1", strategy="latency",
                              strategy_options=options, input_size=SIZE)
    report = result.strategy_report
    losses = report["block_loss"]
    assert "up_blocks.0.1" in report["removed_blocks"] == list(losses)
    assert losses["up_blocks.0.1"] == min(losses.values()) < 1e-2
    assert report["blocks_offered"] == 6 and report["met"]
    assert isinstance(model.net.up_blocks[0][1], nn.Identity)
    assert model.removed_blocks == report["removed_blocks"]
    assert result.plan["removed_blocks"] == report["removed_blocks"]
    assert result.summary()["removed_blocks"] == report["removed_blocks"]
    assert not any(name.startswith("up_blocks.0.1.") for name in result.plan["units"])
    # the artifact replays the removal: same outputs after loading
    path = save_artifact(model, tmp_path / "deep.srp")
    loaded = load_artifact(path)
    assert loaded.removed_blocks == model.removed_blocks
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_depth_reaches_targets_widths_alone_cannot(analytic):
    """With every unit at its floor the widths alone cannot reach the target; with depth the
    search removes blocks and meets it."""
    options = {"speedup": 4.0, "align": 1, "refine": 0, "levels": 2}
    with pytest.raises(SrpruneError, match="out of reach"):
        compress(tiny_drn(), None, _batches(), criterion="l1", strategy="latency",
                         strategy_options=options, input_size=SIZE)
    result = compress(tiny_drn(), None, _batches(), criterion="l1",
                              strategy="latency", strategy_options={**options, "depth": True},
                              input_size=SIZE)
    assert result.strategy_report["removed_blocks"]
    assert result.strategy_report["predicted_ms"] <= result.strategy_report["target_ms"]


def test_depth_needs_data_and_measured_quality(analytic):
    with pytest.raises(SrpruneError, match="needs calibration images"):
        compress(tiny_drn(), None, criterion="l1", strategy="latency",
                         strategy_options={"speedup": 1.2, "depth": True}, input_size=SIZE)
    with pytest.raises(SrpruneError, match="quality=measured"):
        LatencyTarget(speedup=1.2, depth=True, quality="l1-mass")


def test_a_strategy_removing_something_that_is_not_a_block_is_refused(analytic):
    class Bad(LatencyTarget):
        def plan(self, units, ratio, ctx, cost):
            self.removed_blocks = ["up_blocks.0"]  # a whole stage: changes shape
            return {u.name: u.width for u in units}

    from srprune.prune import engine

    monkey = pytest.MonkeyPatch()
    monkey.setattr(engine, "make_strategy", lambda name, options: Bad(speedup=1.2))
    try:
        with pytest.raises(SrpruneError, match="not a residual block"):
            engine.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                            input_size=SIZE)
    finally:
        monkey.undo()


def test_a_damaged_removed_blocks_list_is_one_clear_error(tmp_path):
    model = tiny_drn(2)
    remove_blocks(model.net, ["up_blocks.0.0"])
    model.removed_blocks = ["up_blocks.0.0"]
    path = save_artifact(model, tmp_path / "m.srp")
    data = torch.load(path, weights_only=True)
    assert data["version"] == 3
    data["removed_blocks"] = ["up_blocks.7.7"]
    torch.save(data, tmp_path / "bad.srp")
    with pytest.raises(SrpruneError, match="damaged artifact: cannot remove block"):
        load_artifact(tmp_path / "bad.srp")
    data["removed_blocks"] = "up_blocks.0.0"
    torch.save(data, tmp_path / "bad2.srp")
    with pytest.raises(SrpruneError, match="'removed_blocks' is not a list"):
        load_artifact(tmp_path / "bad2.srp")
    plain = tiny_drn(2)
    assert torch.load(save_artifact(plain, tmp_path / "p.srp"),
                      weights_only=True)["version"] == 1


def test_a_saved_plan_replays_its_removed_blocks(analytic, tmp_path):
    options = {"speedup": 1.3, "align": 1, "refine": 0, "depth": True}
    first = compress(tiny_drn(), None, _batches(), criterion="l1", strategy="latency",
                     strategy_options=options, input_size=SIZE)
    assert first.plan["removed_blocks"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(first.plan))
    again = compress(tiny_drn(), None, criterion="l1", strategy="from-file",
                     strategy_options={"plan": str(plan)}, input_size=SIZE)
    assert again.plan == first.plan
    assert again.after.params == first.after.params
    plan.write_text(json.dumps({**first.plan, "removed_blocks": "up_blocks.0.0"}))
    with pytest.raises(SrpruneError, match="'removed_blocks' is not a list"):
        compress(tiny_drn(), None, criterion="l1", strategy="from-file",
                 strategy_options={"plan": str(plan)}, input_size=SIZE)


def test_depth_with_trunks_in_scope(analytic):
    """Trunk units keep their names when blocks go, so a plan narrowing trunks and removing
    blocks is cut as planned."""
    result = compress(tiny_drn(), None, _batches(), criterion="l1", strategy="latency",
                      scope="all", strategy_options={"speedup": 3.0, "align": 1, "refine": 0,
                                                     "depth": True}, input_size=SIZE)
    report = result.strategy_report
    assert report["removed_blocks"] and report["met"]
    assert any(w < result.plan["original"][n] for n, w in result.plan["units"].items())


def test_cli_depth_removes_blocks_and_the_artifact_loads(analytic, photo_dir, tmp_path):
    from tests.test_latency_strategy import _cli

    out = tmp_path / "deep.srp"
    args = ["compress", "drn-t", "--scale", "4", "--strategy", "latency", "--speedup", "1.3",
            "--input-size", "16", "16", "--strategy-opt", "depth=true",
            "--strategy-opt", "refine=0", "--out", str(out)]
    refused = _cli(*args)
    assert refused.exit_code == 2 and not out.exists()
    assert refused.output.strip() == ("error: strategy 'latency' needs calibration images: "
                                      "pass --data DIR")
    result = _cli(*args, "--data", str(photo_dir), "--calib-patch", "8",
                  "--calib-batches", "1", "--calib-batch", "2")
    assert result.exit_code == 0, result.output
    assert "residual block(s) removed whole" in result.output
    info = _cli("info", str(out), "--json")
    assert info.exit_code == 0, info.output
    loaded = load_artifact(out)
    assert json.loads(info.stdout)["removed_blocks"] == loaded.removed_blocks
    assert loaded.removed_blocks and all(
        isinstance(dict(loaded.net.named_modules())[b], nn.Identity)
        for b in loaded.removed_blocks)


def test_cli_depth_on_a_model_without_blocks_says_widths_only(analytic, photo_dir, tmp_path):
    from tests.test_latency_strategy import _cli

    result = _cli("compress", "fsrcnn", "--scale", "4", "--strategy", "latency", "--speedup",
                  "1.2", "--input-size", "16", "16", "--strategy-opt", "depth=true",
                  "--strategy-opt", "refine=0", "--data", str(photo_dir), "--calib-patch",
                  "8", "--calib-batches", "1", "--calib-batch", "2",
                  "--out", str(tmp_path / "f.srp"))
    assert result.exit_code == 0, result.output
    assert "depth: the model has no residual block to remove" in result.output
    assert "removed whole" not in result.output


# Removable residual blocks of every registered architecture at its CI-sized configuration
# (tests/test_contracts.py builds the same): found by the zero-weights test, never by name.
# carn's blocks are relu(x + f(x)) on inputs a ReLU made non-negative (the identity there);
# carn-m applies one shared block three times (not removable alone); rfdn, rlfn and span
# have no identity skip around a block; swinir-light's blocks take two arguments.
ZOO_BLOCKS = {"carn": 8, "carn-m": 0, "compact": 0, "drn-l": 4, "drn-s": 4, "drn-s30": 4,
              "drn-s50": 4, "drn-s70": 4, "drn-t": 4, "edsr": 2, "edsr-baseline": 2,
              "espcn": 0, "esrgan": 6, "fsrcnn": 0, "imdn": 6, "msrresnet": 2, "omnisr": 7,
              "pan": 4, "plksr": 4, "rcan": 4, "rfdn": 0, "rlfn": 0, "safmn": 2, "span": 0,
              "srnet-t": 4, "swinir-light": 0}


@pytest.mark.parametrize("name", sorted(ZOO_BLOCKS))
def test_zoo_blocks_are_found_and_removing_them_keeps_the_output_shape(name):
    from srprune.registry import MODELS

    spec = MODELS.get(name)
    scale = 4 if 4 in spec.configs else sorted(spec.configs)[0]
    torch.manual_seed(0)
    model = spec.build(spec.small_config(scale)).eval()
    x = torch.rand(1, 3, 24, 24) * 255
    blocks = find_residual_blocks(model.net, x)
    assert len(blocks) == ZOO_BLOCKS[name]
    with torch.no_grad():
        before = model(x).shape
        remove_blocks(model.net, [b.name for b in blocks])
        assert model(x).shape == before
