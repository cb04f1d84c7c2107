"""The SR-correct graph and the pruning engine on generated SR nets and on DRN."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.cost import model_cost
from srprune.models import SRModel, build_model
from srprune.models.artifacts import load_artifact, save_artifact
from srprune.models.zoo import build_srnet
from srprune.prune.engine import compress
from srprune.prune.graph import SRGraph, check_consistency
from srprune.prune.plan import PlanCost

net_configs = st.fixed_dictionaries({
    "scale": st.sampled_from([2, 3, 4]),
    "n_feats": st.integers(4, 12),
    "n_blocks": st.integers(0, 2),
    "act": st.sampled_from(["relu", "prelu", "lrelu"]),
    "attention": st.booleans(),
    "concat_skip": st.booleans(),
    "up_act": st.booleans(),
    "bicubic_skip": st.booleans(),
})


def _input(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 10, 8, generator=torch.Generator().manual_seed(seed)) * 255


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=net_configs, ratio=st.floats(0.0, 0.9), scope=st.sampled_from(["internal", "all"]))
def test_pruned_generated_nets_run_with_consistent_shapes(config, ratio, scope):
    model = build_srnet(**config, duals=False)
    x = _input()
    with torch.no_grad():
        reference = model(x)
    try:
        result = compress(model, ratio, scope=scope, input_size=(10, 8))
    except SrpruneError as exc:  # only these two refusals are legitimate
        assert "out of reach" in str(exc) or "no prunable unit" in str(exc)
        return
    check_consistency(model.net)
    with torch.no_grad():
        out = model(x)
    assert out.shape == reference.shape
    assert torch.isfinite(out).all()
    assert result.after.params <= result.before.params
    if ratio == 0:
        assert torch.equal(out, reference)
    else:
        assert abs(result.ratio_achieved - ratio) < 0.25 or result.ratio_achieved < ratio


@settings(max_examples=25, deadline=None)
@given(config=net_configs, seed=st.integers(0, 1000))
def test_plan_cost_predicts_the_pruned_model_exactly(config, seed):
    model = build_srnet(**config, duals=False)
    graph = SRGraph(model.net, model.scale)
    cost = PlanCost(graph, (10, 8))
    rng = torch.Generator().manual_seed(seed)
    units = graph.units("all")
    plan = {u.name: int(torch.randint(1, u.width + 1, (1,), generator=rng)) for u in units}
    predicted_params, predicted_macs = cost.params(plan), cost.macs(plan)
    for unit in units:
        graph.prune(unit, range(plan[unit.name]))
    actual = model_cost(model, (10, 8))
    assert (predicted_params, predicted_macs) == (actual.params, actual.macs)


def test_ratio_zero_is_identity_on_drn():
    model = build_model("drn-t", 4, pretrained=False)
    x = _input()
    with torch.no_grad():
        before = model(x)
    compress(model, 0.0)
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_drn_units_match_the_authors_prunable_layers():
    model = build_model("drn-s", 8)
    units = SRGraph(model.net, 8).units("internal")
    assert len(units) == 96
    shuffles = [u for u in units if u.group_size > 1]
    assert [u.name for u in shuffles] == [f"up_blocks.{i}.30.0" for i in range(3)]
    assert all(u.group_size == 4 for u in shuffles)
    assert units[0].name == "down.0.dual_module.0.0"


@pytest.mark.parametrize(("pct", "params"), [(3, 3116637), (5, 2267417), (7, 1427545)])
def test_from_file_reproduces_the_authors_param_counts(pct, params):
    from srprune.models.channel_config import CONFIG_DIR

    model = build_model("drn-s", 4)
    result = compress(model, 0.0, strategy="from-file",
                      strategy_options={"plan": str(CONFIG_DIR / f"search_x4p0{pct}.txt")})
    assert result.after.params == params == model.n_params


def test_pixel_shuffle_keeps_blocks_of_r_squared_together():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4 * 6, 3, padding=1),
                        nn.PixelShuffle(2), nn.Conv2d(6, 3, 3, padding=1))
    model = SRModel(net=net, scale=2, arch="test")
    graph = SRGraph(net, 2)
    (unit,) = [u for u in graph.units("all") if u.group_size == 4]
    assert unit.width == 6
    x = _input()
    # zero the shuffled channels 1 and 4 (conv rows 4..7 and 16..19): pruning them is exact
    with torch.no_grad():
        for c in (1, 4):
            net[1].weight[4 * c:4 * c + 4] = 0
            net[1].bias[4 * c:4 * c + 4] = 0
        reference = model(x)
    graph.prune(unit, [0, 2, 3, 5])
    assert net[1].out_channels == 16 and net[3].in_channels == 4
    with torch.no_grad():
        assert torch.allclose(model(x), reference, atol=1e-4)


def test_output_reaching_convs_are_protected():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1),
                        nn.PixelShuffle(2))
    graph = SRGraph(net, 2)
    assert net[2] in graph.protected
    assert [u.name for u in graph.units("all")] == ["0"]


def test_non_sr_model_is_refused():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))
    with pytest.raises(SrpruneError, match="not an x2 SR model"):
        SRGraph(net, 2)


def test_no_prunable_unit_is_refused():
    model = SRModel(net=nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)),
                    scale=2, arch="test")
    with pytest.raises(SrpruneError, match="no prunable unit"):
        compress(model, 0.5)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_out_of_range(ratio):
    with pytest.raises(SrpruneError, match="outside"):
        compress(build_model("drn-t", 4, pretrained=False), ratio)


def test_uniform_hits_the_ratio_and_rounds_widths():
    model = build_model("drn-s", 4)
    result = compress(model, 0.5, strategy_options={"round_to": 8})
    assert abs(result.ratio_achieved - 0.5) < 0.02
    assert all(w % 8 == 0 for w in result.plan["units"].values())


def test_scope_all_prunes_trunks_of_drn():
    model = build_model("drn-t", 4, pretrained=False)
    # exact widths: on the NCHWc block (the default) the 8-wide trunk would stay whole
    result = compress(model, 0.5, scope="all", strategy_options={"round_to": 1})
    assert abs(result.ratio_achieved - 0.5) < 0.05
    assert model.net.head.out_channels < 8
    assert model(_input()).shape == (1, 3, 40, 32)


def test_artifact_round_trip_gives_identical_outputs(tmp_path):
    model = build_srnet(scale=4, n_feats=8, n_blocks=2, act="prelu", attention=True,
                        concat_skip=True)
    compress(model, 0.6, scope="all")
    path = save_artifact(model, tmp_path / "m.srp")
    loaded = load_artifact(path)
    x = _input()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.plan == model.plan
    raw = torch.load(path, weights_only=True)  # plain data: loads without unpickling code
    assert raw["format"] == "srprune-artifact"


def test_compress_leaves_the_original_model_object_alone_when_copied():
    model = build_model("drn-t", 4, pretrained=False)
    keep = copy.deepcopy(model)
    compress(model, 0.5)
    assert keep.n_params > model.n_params
