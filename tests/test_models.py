"""DRN reference models: exact keys, shapes, parameter counts and channel configs."""

from __future__ import annotations

import pytest
import torch

from srprune.errors import SrpruneError
from srprune.models import build_model, load_weights
from srprune.models.channel_config import CONFIG_DIR, format_widths, parse_widths
from srprune.models.drn import full_widths

FULL = [("drn-s", 4), ("drn-l", 4), ("drn-s", 8), ("drn-l", 8)]


@pytest.mark.parametrize(("name", "scale"), FULL)
def test_state_dict_matches_official_keys_and_shapes(name, scale, official_keys):
    ref = official_keys[f"{name}-x{scale}"]
    model = build_model(name, scale)
    own = {k: list(v.shape) for k, v in model.net.state_dict().items()}
    assert own == ref["primal"]
    assert list(own) == list(ref["primal"])  # same order as the authors' code
    duals = [{k: list(v.shape) for k, v in d.state_dict().items()} for d in model.duals]
    assert duals == ref["dual"]
    assert model.n_params == ref["n_params"]


@pytest.mark.parametrize(("name", "scale"), FULL)
def test_authors_checkpoint_layout_loads_strictly(name, scale, tmp_path):
    source = build_model(name, scale)
    path = tmp_path / "official.pt"
    torch.save(source.net.state_dict(), path)  # the authors' release format: a plain state_dict
    target = build_model(name, scale)
    load_weights(target, path)
    for key, value in source.net.state_dict().items():
        assert torch.equal(value, target.net.state_dict()[key])


def test_every_expected_param_count(expected_counts):
    for key, row in expected_counts.items():
        if not key.startswith("drn"):
            continue
        name, scale = key.rsplit("-x", 1)
        assert build_model(name, int(scale)).n_params == row["params"], key


def test_dual_param_counts(expected_counts):
    for key, n in expected_counts["dual_params"].items():
        name, scale = key.rsplit("-x", 1)
        model = build_model(name, int(scale))
        assert sum(p.numel() for p in model.duals.parameters()) == n


def test_drn_forward_shapes_and_dual_shapes():
    model = build_model("drn-t", 8, pretrained=False)
    x = torch.rand(2, 3, 8, 12) * 255
    outs = model.outputs(x)
    assert [tuple(o.shape) for o in outs] == [(2, 3, 8 * f, 12 * f) for f in (1, 2, 4, 8)]
    for k, dual in enumerate(model.duals):
        assert dual(outs[k + 1]).shape == outs[k].shape


def test_meanshift_is_trainable_and_initialised_to_the_mean():
    net = build_model("drn-s", 4).net
    assert net.sub_mean.weight.requires_grad
    assert torch.allclose(net.sub_mean.bias, -255 * torch.tensor([0.4488, 0.4371, 0.4040]))
    x = torch.rand(1, 3, 4, 4) * 255
    assert torch.allclose(net.add_mean(net.sub_mean(x)), x, atol=1e-4)


def test_drn_t_is_cpu_sized():
    assert build_model("drn-t", 4, pretrained=False).n_params <= 500_000


def test_channel_config_round_trip():
    text = (CONFIG_DIR / "search_x4p05.txt").read_text()
    widths = parse_widths(text, "x", 4, 16, 30)
    assert format_widths(widths).split() == text.split()
    assert len(widths.rcab) == 2 and len(widths.rcab[0]) == 30
    model = build_model("drn-s", 4, widths=widths.as_lines())
    assert model.n_params == 2267417


@pytest.mark.parametrize(("text", "message"), [
    ("16\n" * 63, "63 lines, expected 64"),
    ("16\n" * 63 + "x\n", "line 64 is not an integer"),
    ("17\n" + "16\n" * 63, "line 1 width 17 is outside 1..16"),
    ("0\n" + "16\n" * 63, "line 1 width 0 is outside"),
])
def test_malformed_channel_configs(text, message):
    with pytest.raises(SrpruneError, match=message):
        parse_widths(text, "bad.txt", 4, 16, 30)


def test_full_widths_layout():
    w = full_widths(8, 8, 2)
    assert w.down == [8, 16, 32]
    assert w.up == [64, 64, 32]
    assert len(w.as_lines()) == 3 + 3 * 3


def test_unknown_model_and_scale():
    with pytest.raises(SrpruneError, match="unknown model 'nope'"):
        build_model("nope")
    with pytest.raises(SrpruneError, match="does not support scale 3"):
        build_model("drn-s", 3)


def test_weights_mismatch_and_pickled_code_are_refused(tmp_path):
    model = build_model("drn-t", 4, pretrained=False)
    bad = tmp_path / "other.pt"
    torch.save(build_model("drn-s", 4).net.state_dict(), bad)
    with pytest.raises(SrpruneError, match="weights do not match"):
        load_weights(model, bad)
    code = tmp_path / "code.pt"
    torch.save({"net": torch.nn.Conv2d(1, 1, 1)}, code)  # a pickled module, not tensors
    with pytest.raises(SrpruneError, match=r"pickled Python code .*Conv2d"):
        load_weights(model, code)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SrpruneError, match="not a readable checkpoint"):
        load_weights(model, junk)
