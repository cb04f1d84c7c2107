"""The ``latency`` strategy and its cached latency table.

The search tests replace the conv timing with an analytic cost (MACs), so the chosen widths
are deterministic; the end-to-end check still times the real models with ONNX Runtime.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import srprune
from srprune.errors import SrpruneError
from srprune.measure import latency_table
from srprune.measure.latency_table import ConvShape, LatencyTable, conv_inputs, machine_key
from srprune.measure.profile import TimeSplit
from srprune.models import build_model
from srprune.search.latency import LatencyTarget

SIZE = (16, 16)


def macs_ms(shape: ConvShape) -> float:
    """A deterministic stand-in for a measurement: 1 ms per 100 k MACs (+ a fixed cost), more
    than the whole model takes, so the prediction follows the convolutions."""
    h, w = shape.size
    macs = shape.c_in // shape.groups * shape.c_out * shape.kernel[0] * shape.kernel[1] * h * w
    return 0.01 + macs / 1e5


@pytest.fixture
def analytic_table(tmp_path, monkeypatch):
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(LatencyTable, "_measure_ort", lambda self, shape: macs_ms(shape))
    # ORT's profile says: all of the run is convs (the analytic table decides everything)
    monkeypatch.setattr("srprune.search.latency.profile_split",
                        lambda *a, **k: TimeSplit(conv=1.0, width_scaled=0.0, fixed=0.0))
    return tmp_path / "cache"


def tiny_drn():
    torch.manual_seed(0)
    return build_model("drn-t", 4, pretrained=False, n_blocks=1).eval()


def test_the_plan_meets_the_predicted_target_and_is_verified(analytic_table):
    model = tiny_drn()
    # refine=0: the plan follows the analytic table alone (measured rounds on a loaded
    # machine would steer it by noise: the fake-timing tests below cover them); the final
    # end-to-end check is still timed for real
    result = srprune.compress(model, None, criterion="l1", strategy="latency",
                              strategy_options={"speedup": 2.0, "runs": 3, "refine": 0},
                              input_size=SIZE)
    report = result.strategy_report
    assert report["predicted_ms"] <= report["target_ms"]
    assert report["target_ms"] == pytest.approx(report["unpruned_ms"] / 2.0, rel=1e-3)
    assert report["measured_ms"] > 0 and report["measured_unpruned_ms"] > 0
    assert report["measured_speedup"] == pytest.approx(
        report["measured_unpruned_ms"] / report["measured_ms"], rel=1e-2)
    assert result.ratio_requested is None and result.ratio_achieved > 0.2
    assert result.summary()["strategy_report"] == report
    # the table was measured once and cached: a second run measures nothing new
    saved = json.loads(next(analytic_table.glob("latency-*.json")).read_text())
    assert saved["machine"] == machine_key(1) and saved["entries"]


def test_a_second_search_reads_the_cache_and_gives_the_same_plan(analytic_table):
    plans, measured = [], []
    for _ in range(2):
        model = tiny_drn()
        result = srprune.compress(model, None, criterion="l1", strategy="latency",
                                  strategy_options={"speedup": 1.5, "runs": 2, "refine": 0},
                                  input_size=SIZE)
        plans.append(result.plan["units"])
        measured.append(result.strategy_report["shapes_measured"])
    assert plans[0] == plans[1]
    assert measured[0] > 0 and measured[1] == 0


def test_the_plan_only_narrows_units(analytic_table):
    """Some unit is narrowed, none is widened."""
    model = tiny_drn()
    result = srprune.compress(model, None, criterion="l1", strategy="latency",
                              strategy_options={"speedup": 1.2, "runs": 2, "refine": 0},
                              input_size=SIZE)  # refine=0: no plan steered by timing noise
    kept = result.plan["units"]
    original = result.plan["original"]
    assert any(kept[n] < original[n] for n in kept)
    assert all(kept[n] <= original[n] for n in kept)


def test_an_unreachable_target_is_one_clear_error(analytic_table):
    with pytest.raises(SrpruneError, match="out of reach: the smallest model"):
        srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                         strategy_options={"target_ms": 1e-6, "runs": 2}, input_size=SIZE)


@pytest.mark.parametrize("options", [{}, {"speedup": 2.0, "target_ms": 1.0},
                                     {"speedup": 0.5}, {"target_ms": -1.0},
                                     {"speedup": 2.0, "quality": "psnr"},
                                     {"speedup": 2.0, "refine": -1},
                                     {"speedup": 2.0, "batches": 0}])
def test_bad_targets_are_refused(options):
    with pytest.raises(SrpruneError):
        LatencyTarget(**options)


def test_a_damaged_or_foreign_cache_is_one_clear_error(tmp_path):
    path = tmp_path / "table.json"
    path.write_text("{not json")
    with pytest.raises(SrpruneError, match="unreadable"):
        LatencyTable(path=path)
    path.write_text(json.dumps({"format": "srprune-latency-table", "machine": machine_key(1),
                                "entries": {"conv": -3}}))
    with pytest.raises(SrpruneError, match="damaged"):
        LatencyTable(path=path)
    path.write_text(json.dumps({"format": "srprune-latency-table", "machine": "other",
                                "entries": {}}))
    with pytest.raises(SrpruneError, match="another machine"):
        LatencyTable(path=path)


def test_a_real_measurement_is_positive_and_cached(tmp_path):
    table = LatencyTable(path=tmp_path / "t.json", runs=2, warmup=1)
    shape = ConvShape.of(nn.Conv2d(4, 6, 3, padding=1), 4, 6, (8, 8))
    first = table(shape)
    assert first > 0 and table.measured == 1
    assert table(shape) == first and table.measured == 1
    table.save()
    reloaded = LatencyTable(path=tmp_path / "t.json", sample=0)  # no re-timing: no noise
    assert reloaded.entries == {shape.key(): first} and reloaded.rejected is None


def test_depthwise_convs_stay_depthwise_at_any_width():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert ConvShape.of(conv, 5, 5, (4, 4)).groups == 5
    assert ConvShape.of(nn.Conv2d(8, 8, 3, groups=2), 6, 8, (4, 4)).groups == 2


def test_conv_inputs_gives_each_calls_input_size():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.PixelShuffle(2),
                        nn.Conv2d(1, 3, 3, stride=2, padding=1))
    assert conv_inputs(net, (6, 5)) == {"0": [(6, 5)], "2": [(12, 10)]}
    assert latency_table.cache_dir().name


def _cli(*args: str):
    from click.testing import CliRunner

    from srprune.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_latency_target_prints_target_prediction_and_measurement(analytic_table,
                                                                     tmp_path):
    out = tmp_path / "fast.srp"
    # timed for real on a shared machine the pruned model may miss the target (exit 3);
    # what is checked here is the report, so a miss is allowed
    result = _cli("compress", "drn-t", "--scale", "4", "--strategy", "latency", "--speedup",
                  "1.5", "--input-size", "16", "16", "--strategy-opt", "runs=2",
                  "--allow-miss", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["strategy_report"]
    assert report["threads"] == 1 and report["input_size"] == [16, 16]
    assert report["predicted_ms"] <= report["target_ms"] and out.exists()
    assert report["clock"] == "process CPU time (1 thread)"
    text = _cli("compress", "drn-t", "--scale", "4", "--strategy", "latency", "--speedup",
                "1.5", "--input-size", "16", "16", "--strategy-opt", "runs=2",
                "--strategy-opt", "refine=0", "--allow-miss", "--out", str(out), "--force")
    assert text.exit_code == 0, text.output
    line = " ".join(text.output.split())
    assert "in one interleaved run of process CPU time (speed-up" in line, line


def test_cli_latency_flags_need_the_latency_strategy(tmp_path):
    result = _cli("compress", "drn-t", "--ratio", "0.5", "--speedup", "2",
                  "--out", str(tmp_path / "x.srp"))
    assert result.exit_code == 2
    assert result.output.startswith("error: --target-latency and --speedup go with")
    assert not (tmp_path / "x.srp").exists()


def _analytic_ms(model, input_size) -> float:
    """The analytic table's sum over the model's convs at their real widths."""
    sizes = conv_inputs(model.net, input_size)
    return sum(macs_ms(ConvShape.of(m, m.in_channels, m.out_channels, size))
               for name, m in model.net.named_modules() if isinstance(m, nn.Conv2d)
               for size in sizes.get(name, []))


def fake_measure(factor: float):
    """A stand-in for the end-to-end timing: the analytic sum, times ``factor`` for any
    model smaller than the first one timed (the unpruned model)."""
    full = {}

    def measure(self, *models, input_size=None):
        size = input_size or self.report.get("input_size")
        times = []
        for m in models:
            ms = _analytic_ms(m, size)
            full.setdefault("ms", ms)
            times.append(ms if ms >= full["ms"] else factor * ms)
        return times[0] if len(times) == 1 else times

    return measure


def test_a_plan_that_misses_when_measured_is_narrowed_until_it_meets(analytic_table,
                                                                      monkeypatch):
    """Pruned models measure 30 % slower than predicted: the first measured round misses,
    the next narrows further and meets the target."""
    monkeypatch.setattr(LatencyTarget, "_measure", fake_measure(1.3))
    result = srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                              strategy_options={"speedup": 1.5, "align": 1, "levels": 16},
                              input_size=SIZE)
    report = result.strategy_report
    rounds = report["refinements"]
    assert len(rounds) == 2
    shares = [r["measured_ms"] / r["measured_unpruned_ms"] for r in rounds]
    assert shares[0] > 1 / 1.5 >= shares[1]
    assert report["predicted_ms"] < report["target_ms"] / 1.2
    assert report["met"] and report["measured_speedup"] >= 1.5


def test_refine_zero_measures_nothing_before_pruning(analytic_table, monkeypatch):
    calls = []
    original = LatencyTarget._measure

    def counting(self, *models, input_size=None):
        calls.append(len(models))
        return original(self, *models, input_size=input_size)

    monkeypatch.setattr(LatencyTarget, "_measure", counting)
    result = srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                              strategy_options={"speedup": 1.5, "runs": 2, "refine": 0},
                              input_size=SIZE)
    assert calls == [1, 2]  # the unpruned model for the plan, then the final check
    assert result.strategy_report["refinements"] == []


def _batches(n: int = 2, size: int = 8) -> list:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        hr = torch.rand(2, 3, size * 4, size * 4, generator=g) * 255
        out.append(([nn.functional.avg_pool2d(hr, 4), nn.functional.avg_pool2d(hr, 2)], hr))
    return out


def test_with_calibration_data_the_search_uses_measured_sensitivity(analytic_table):
    from srprune.prune.engine import compress

    options = {"speedup": 1.5, "runs": 2, "refine": 0, "align": 1}
    measured = compress(tiny_drn(), None, _batches(), criterion="l1", strategy="latency",
                        strategy_options=options, input_size=SIZE)
    assert measured.strategy_report["quality_proxy"] == "measured"
    assert measured.strategy_report["predicted_ms"] <= measured.strategy_report["target_ms"]
    mass = compress(tiny_drn(), None, _batches(), criterion="l1", strategy="latency",
                    strategy_options={**options, "quality": "l1-mass"}, input_size=SIZE)
    assert mass.strategy_report["quality_proxy"] == "l1-mass"


def test_sensitivity_table_values(analytic_table):
    from types import SimpleNamespace

    from srprune.prune.graph import SRGraph

    model = tiny_drn()
    graph = SRGraph(model.net, model.scale)
    units = graph.units("internal")
    strategy = LatencyTarget(speedup=1.5, align=1)
    steps = {u.name: max(1, u.width // 4) for u in units}
    floor = {u.name: steps[u.name] for u in units}
    x = _batches()[0][0][0]
    reference = model(x).detach().clone()
    ctx = SimpleNamespace(batches=_batches(), device="cpu", model=model,
                          report=lambda *a: None)
    table = strategy._sensitivity(ctx, units, steps, floor)
    torch.testing.assert_close(model(x), reference)  # weights restored
    for unit in units:
        values = table[unit.name]
        assert values[unit.width] == 0.0
        assert min(values) == floor[unit.name]
        narrowest = values[floor[unit.name]]
        assert narrowest > 0 and narrowest >= 0.5 * max(values.values())
    assert LatencyTarget(speedup=1.5)._sensitivity(
        SimpleNamespace(batches=[], device="cpu", model=model, report=None), units, steps,
        floor) is None


def test_a_plan_much_faster_than_needed_when_measured_is_widened(analytic_table, monkeypatch):
    """Pruned models measure 15 % faster than predicted: the search gives widths back (the
    prediction ends above the target) and the final plan still meets it."""
    kept = {}
    for refine in (0, 2):
        monkeypatch.setattr(LatencyTarget, "_measure", fake_measure(0.85))
        result = srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                                  strategy_options={"speedup": 1.5, "align": 1, "levels": 16,
                                                    "refine": refine}, input_size=SIZE)
        kept[refine] = sum(result.plan["units"].values())
        report = result.strategy_report
    assert report["predicted_ms"] > report["target_ms"]
    assert report["met"] and report["measured_speedup"] >= 1.5
    assert kept[2] > kept[0]
    shares = [r["measured_ms"] / r["measured_unpruned_ms"] for r in report["refinements"]]
    assert shares[0] < (1 / 1.5) * 0.97 and len(shares) >= 2


def _feature_elements(model) -> int:
    """Conv output elements of one forward pass at SIZE (what feature-tensor work scales
    with in the strategy's cost model)."""
    from srprune.measure.cost import layer_channels, meta_calls

    calls, _ = meta_calls(model.net, SIZE)
    modules = dict(model.net.named_modules())
    return sum(layer_channels(modules[n])[0] * c.out_positions for n, c in calls.items())


def test_non_conv_work_that_scales_with_widths_is_predicted_exactly(analytic_table,
                                                                    monkeypatch):
    """A world where 90 % of the unpruned time is non-conv work on feature tensors (its
    time proportional to their elements): with ``nonconv=fixed`` a 1.8x target is out of
    reach; with the profile's split the plan meets it and the prediction is exact."""
    from srprune.search import latency

    full = _feature_elements(tiny_drn())
    conv_full = _analytic_ms(tiny_drn(), SIZE)
    per_element = 9 * conv_full / full

    def measure(self, *models, input_size=None):
        times = [_analytic_ms(m, SIZE) + per_element * _feature_elements(m) for m in models]
        return times[0] if len(times) == 1 else times

    monkeypatch.setattr(LatencyTarget, "_measure", measure)
    monkeypatch.setattr(latency, "profile_split", lambda *a, **k: TimeSplit(
        conv=conv_full, width_scaled=9 * conv_full, fixed=0.0))
    options = {"speedup": 1.8, "align": 1, "levels": 16, "refine": 0}
    with pytest.raises(SrpruneError, match="out of reach"):
        srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                         strategy_options={**options, "nonconv": "fixed"}, input_size=SIZE)
    result = srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                              strategy_options=options, input_size=SIZE)
    report = result.strategy_report
    assert report["nonconv"] == "profile"
    assert report["nonconv_ms"]["width_scaled"] == pytest.approx(9 * conv_full, rel=1e-3)
    assert report["nonconv_ms"]["fixed"] == pytest.approx(0, abs=1e-3)
    assert report["measured_ms"] == pytest.approx(report["predicted_ms"], rel=1e-4)
    assert report["met"] and report["measured_speedup"] >= 1.8


def test_a_profile_without_conv_time_falls_back_to_the_table_as_measured(analytic_table,
                                                                         monkeypatch):
    monkeypatch.setattr("srprune.search.latency.profile_split",
                        lambda *a, **k: TimeSplit(conv=0.0, width_scaled=5.0, fixed=1.0))
    result = srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                              strategy_options={"speedup": 1.5, "runs": 2, "refine": 0},
                              input_size=SIZE)
    report = result.strategy_report
    assert report["nonconv"] == "fixed (the profile timed no conv)"
    assert report["conv_scale"] == 1.0 and report["nonconv_ms"]["width_scaled"] == 0.0


def test_nonconv_must_be_profile_or_fixed():
    with pytest.raises(SrpruneError, match="nonconv must be 'profile' or 'fixed'"):
        LatencyTarget(speedup=2.0, nonconv="guess")


# -- plausibility of a cached table ------------------------------------------------------


def _write_table(path, entries: dict[str, float]) -> None:
    path.write_text(json.dumps({"format": "srprune-latency-table", "machine": machine_key(1),
                                "entries": entries}))


SHAPES = [ConvShape(c, c, (3, 3), (1, 1), (1, 1), (1, 1), 1, (16, 16)) for c in (8, 16, 32)]


def test_a_shape_key_parses_back_and_counts_its_macs():
    conv = nn.Conv2d(6, 10, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 1), groups=2)
    shape = ConvShape.of(conv, 6, 10, (9, 7))
    assert ConvShape.parse(shape.key()) == shape
    out = conv(torch.zeros(1, 6, 9, 7)).shape
    assert shape.macs() == 3 * 10 * 3 * 5 * out[2] * out[3]
    assert ConvShape.parse("conv8-8@16x16") is None
    assert shape.floor_ms(1) >= latency_table.MIN_RUN_MS


def test_a_table_faster_than_the_hardware_allows_is_measured_again(tmp_path):
    path = tmp_path / "t.json"
    _write_table(path, {s.key(): 1e-9 for s in SHAPES})
    with pytest.warns(UserWarning, match="3 of 3 cached times are below what the hardware "
                                         "allows .*; measuring it again"):
        table = LatencyTable(path=path, measure=macs_ms)
    assert table.entries == {} and "1e-09 ms" in table.rejected
    assert table(SHAPES[0]) == macs_ms(SHAPES[0]) and table.measured == 1


def test_one_entry_below_its_floor_condemns_the_table(tmp_path):
    """The floor scales with MACs: 0.1 ms is fine for a small conv, impossible for 25 G MACs
    on one thread (at 1 T MAC/s that takes at least 25 ms; 13 ms on two threads)."""
    path = tmp_path / "t.json"
    big = ConvShape(256, 256, (3, 3), (1, 1), (1, 1), (1, 1), 1, (208, 208))
    assert 25e9 < big.macs() < 26e9
    _write_table(path, {SHAPES[0].key(): 0.1, big.key(): 20.0})
    with pytest.warns(UserWarning, match="1 of 2 cached times .* 20 ms for 25,518,145,536 "
                                         "MACs, at least 25.5 ms"):
        table = LatencyTable(path=path, measure=macs_ms)
    assert table.rejected and table.entries == {}
    _write_table(path, {SHAPES[0].key(): 0.1, big.key(): 30.0})
    assert LatencyTable(path=path, sample=0).rejected is None
    two = json.loads(path.read_text())
    two["machine"] = machine_key(2)
    two["entries"][big.key()] = 20.0
    path.write_text(json.dumps(two))
    assert LatencyTable(threads=2, path=path, sample=0).rejected is None


def test_a_plausible_table_that_times_differently_now_is_measured_again(tmp_path):
    path = tmp_path / "t.json"
    _write_table(path, {s.key(): 10 * macs_ms(s) for s in SHAPES})  # above every floor
    with pytest.warns(UserWarning, match="conv32-32.* is cached at .* but times at"):
        table = LatencyTable(path=path, measure=macs_ms)
    assert table.entries == {}


def test_a_table_that_agrees_is_trusted_and_one_noisy_timing_does_not_condemn_it(tmp_path):
    path = tmp_path / "t.json"
    cached = {s.key(): 1.5 * macs_ms(s) for s in SHAPES}
    _write_table(path, cached)
    calls: list[str] = []

    def noisy(shape: ConvShape) -> float:  # the first timing is 10x slow, then true again
        calls.append(shape.key())
        return macs_ms(shape) * (10 if len(calls) == 1 else 1)

    table = LatencyTable(path=path, measure=noisy)
    assert table.rejected is None and table.entries == cached and table.measured == 0
    # the two convs with the most MACs were timed, the first twice
    assert calls == [SHAPES[2].key(), SHAPES[2].key(), SHAPES[1].key()]


def test_a_search_on_a_fake_cache_measures_again_and_says_so(analytic_table):
    analytic_table.mkdir(parents=True, exist_ok=True)
    path = LatencyTable(1).path
    _write_table(path, {s.key(): 1e-9 for s in SHAPES})
    with pytest.warns(UserWarning, match="below what the hardware allows"):
        result = srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency",
                                  strategy_options={"speedup": 1.5, "runs": 2, "refine": 0},
                                  input_size=SIZE)
    report = result.strategy_report
    assert "below what the hardware allows" in report["table_rejected"]
    assert report["shapes_measured"] > 0
    saved = json.loads(path.read_text())["entries"]
    assert min(saved.values()) >= 0.01  # measured again (the analytic table), saved over it


def test_cli_a_missed_target_exits_3_after_writing_and_reporting(analytic_table, tmp_path,
                                                                 monkeypatch):
    """Pruned models time as the unpruned one: the target is missed as measured. The report
    and the artifact are there; exit status 3, or 0 and a warning with --allow-miss."""

    def as_slow(self, *models, input_size=None):
        same = [_analytic_ms(models[0], input_size or SIZE)] * len(models)
        return same[0] if len(same) == 1 else same

    monkeypatch.setattr(LatencyTarget, "_measure", as_slow)
    base = ["compress", "drn-t", "--strategy", "latency", "--speedup", "1.5", "--input-size",
            "16", "16", "--strategy-opt", "refine=0", "--strategy-opt", "align=1"]
    out = tmp_path / "missed.srp"
    result = _cli(*base, "--out", str(out), "--json")
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["strategy_report"]["met"] is False and out.exists()
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: latency target NOT met (measured speed-up 1.00x, target 1.5x")
    result = _cli(*base, "--out", str(tmp_path / "table.srp"))
    assert result.exit_code == 3 and "target NOT met" in result.stdout
    allowed = _cli(*base, "--allow-miss", "--out", str(tmp_path / "allowed.srp"))
    assert allowed.exit_code == 0, allowed.output
    assert "warning: latency target NOT met" in allowed.stderr
    assert (tmp_path / "allowed.srp").exists()


def test_cli_a_met_target_exits_0_without_a_warning(analytic_table, tmp_path, monkeypatch):
    monkeypatch.setattr(LatencyTarget, "_measure", fake_measure(1.0))
    result = _cli("compress", "drn-t", "--strategy", "latency", "--speedup", "1.5",
                  "--input-size", "16", "16", "--strategy-opt", "refine=0",
                  "--strategy-opt", "align=1", "--out", str(tmp_path / "met.srp"))
    assert result.exit_code == 0, result.output
    assert "target met" in result.stdout and "warning" not in result.stderr


def test_cli_ratio_with_the_latency_strategy_is_refused(tmp_path):
    result = _cli("compress", "drn-t", "--ratio", "0.5", "--strategy", "latency",
                  "--speedup", "2", "--out", str(tmp_path / "x.srp"))
    assert result.exit_code == 2
    assert result.output.startswith("error: --ratio does not apply to --strategy latency")
    assert not (tmp_path / "x.srp").exists()


def test_auto_scope_lets_the_trunks_go_when_a_speed_target_needs_them():
    """ESRGAN keeps few MACs in block-inner channels (6 blocks: at most 23.7 %): a 1.5x target
    (at least a third of the MACs) widens ``auto`` to ``all`` with a warning; 1.2x does not."""
    import warnings

    from srprune.prune.engine import resolve_scope
    from srprune.prune.graph import SRGraph

    torch.manual_seed(0)
    model = build_model("esrgan", 4, pretrained=False, hyperparameters={"num_blocks": 6})
    graph = SRGraph(model.net, model.scale)
    assert LatencyTarget(speedup=1.5).mac_share_needed == pytest.approx(1 / 3)
    assert LatencyTarget(target_ms=5.0).mac_share_needed == 0.0
    with pytest.warns(UserWarning, match=r"at most 23\.7% of the MACs.*--scope all"):
        assert resolve_scope("auto", graph, 0.0, (16, 16),
                             LatencyTarget(speedup=1.5).mac_share_needed) == "all"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_scope("auto", graph, 0.0, (16, 16),
                             LatencyTarget(speedup=1.2).mac_share_needed) == "internal"
        assert resolve_scope("auto", graph, 0.0, (16, 16)) == "internal"
        assert resolve_scope("internal", graph, 0.0, (16, 16), 0.9) == "internal"


def test_an_unreachable_target_in_the_internal_scope_names_scope_all(analytic_table):
    with pytest.raises(SrpruneError, match=r"out of reach.*--scope all lets the trunks go"):
        srprune.compress(tiny_drn(), None, criterion="l1", strategy="latency", scope="internal",
                         strategy_options={"speedup": 50.0, "runs": 2, "refine": 0},
                         input_size=SIZE)


def test_one_thread_searches_trust_process_cpu_time_not_the_wall_clock():
    """A busy machine preempts the timed thread and inflates the wall time unevenly; at one
    thread the search reads the process CPU time, and says which clock it used."""
    from srprune.measure.latency import LatencyResult, LatencyStats

    wall, cpu = LatencyStats.from_samples([9.0, 10.0, 11.0]), LatencyStats.from_samples(
        [4.0, 5.0, 6.0])
    result = LatencyResult("m", "onnxruntime", 1, (1, 3, 8, 8), wall, 1.0, cpu_stats=cpu)
    one = LatencyTarget(speedup=1.5)
    assert one._clock(result) == 5.0 and one.report["clock"].startswith("process CPU")
    two = LatencyTarget(speedup=1.5, threads=2)
    assert two._clock(result) == 10.0 and two.report["clock"] == "wall"
    bare = LatencyResult("m", "onnxruntime", 1, (1, 3, 8, 8), wall, 1.0)
    assert one._clock(bare) == 10.0 and one.report["clock"] == "wall"
