"""Pruned widths default to ORT's NCHWc block ("auto"); an explicit round_to wins; the
achieved ratio stays near the target; the artifact records the rounding used."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from srprune.api import compress_model
from srprune.cli import main
from srprune.errors import SrpruneError
from srprune.measure import nchwc
from srprune.models import build_model
from srprune.models.artifacts import load_artifact
from srprune.prune.engine import compress
from srprune.search.base import RATIO_TOLERANCE, aligned_plan, auto_multiples, check_round_to

BLOCK = {"alignment": 4, "block": 16}  # what ORT 1.32 probes on an AVX-512 CPU
EDSR = ["edsr-baseline", "--scale", "2", "--arch-opt", "n_resblocks=3", "--input-size", "16",
        "16"]


@pytest.fixture(autouse=True)
def _avx512_block(monkeypatch):
    """The same block on every machine (the probe itself is tested below)."""
    monkeypatch.setattr(nchwc, "_probed", lambda: dict(BLOCK))


def small_edsr() -> object:
    torch.manual_seed(0)
    return build_model("edsr-baseline", 2, pretrained=False, n_resblocks=3)


def wide_units(result: object, above: int) -> dict[str, int]:
    plan = result.plan
    return {n: w for n, w in plan["units"].items() if plan["original"][n] > above}


def test_the_default_keeps_widths_on_the_block():
    result = compress(small_edsr(), 0.5, criterion="l1", input_size=(16, 16))
    kept = wide_units(result, 16)
    assert kept and all(w % 16 == 0 for w in kept.values()), kept
    assert abs(result.ratio_achieved - 0.5) <= RATIO_TOLERANCE
    report = result.strategy_report
    assert report["round_to"] == 16 and report["round_to_asked"] == "auto"
    assert report["nchwc_block"] == 16 and report["nchwc_alignment"] == 4


@pytest.mark.parametrize("round_to", [8, 1])
def test_an_explicit_round_to_wins(round_to):
    result = compress(small_edsr(), 0.5, criterion="l1", input_size=(16, 16),
                      strategy_options={"round_to": round_to})
    assert result.strategy_report["round_to"] == round_to
    assert result.strategy_report["round_to_asked"] == round_to
    widths = list(result.plan["units"].values())
    assert all(w % round_to == 0 for w in widths)
    if round_to == 1:  # exact widths: the uniform keep fraction, not a multiple of 4
        assert any(w % 4 for w in widths), widths


@pytest.mark.parametrize("name, scale, options", [
    ("edsr-baseline", 2, {"n_resblocks": 3}),
    ("rlfn", 4, {}),  # 52 channels: off the block, full width allowed
    ("span", 4, {}),
    ("drn-t", 4, {}),  # 8 channels: narrower than the block, a finer multiple is used
])
@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_the_achieved_ratio_stays_within_the_tolerance(name, scale, options, ratio):
    torch.manual_seed(0)
    model = build_model(name, scale, pretrained=False, **options)
    exact = compress(build_model(name, scale, pretrained=False, **options), ratio,
                     criterion="l1", input_size=(16, 16), strategy_options={"round_to": 1})
    result = compress(model, ratio, criterion="l1", input_size=(16, 16))
    if abs(exact.ratio_achieved - ratio) <= RATIO_TOLERANCE:  # reachable at all
        assert abs(result.ratio_achieved - ratio) <= RATIO_TOLERANCE, result.strategy_report
    used = result.strategy_report["round_to"]
    assert used in auto_multiples()
    for width in wide_units(result, used).values():
        assert width % used == 0 or width in result.plan["original"].values()


def test_rounding_error_is_carried_between_units_of_one_width():
    units = [SimpleNamespace(name=f"u{i}", width=32) for i in range(6)]
    plan = aligned_plan(units, {u.name: 24.0 for u in units}, 16, 1)
    assert set(plan.values()) == {16, 32} and sum(plan.values()) == 6 * 24
    narrow = [SimpleNamespace(name="n", width=12)]
    assert aligned_plan(narrow, {"n": 6.0}, 16, 1) == {"n": 12}  # stays whole
    assert aligned_plan(narrow, {"n": 6.4}, 1, 1) == {"n": 6}  # exact


def test_auto_multiples_go_from_the_block_down_to_the_accepted_width():
    assert auto_multiples() == [16, 8, 4, 1]


@pytest.mark.parametrize("bad", [0, -4, "eight", 2.5, True])
def test_a_bad_round_to_is_one_clear_error(bad):
    with pytest.raises(SrpruneError, match="round_to must be 'auto' or an integer >= 1"):
        check_round_to(bad)


def test_the_artifact_records_the_rounding(tmp_path):
    out = tmp_path / "m.srp"
    code = CliRunner().invoke(main, ["compress", *EDSR, "--ratio", "0.5", "--out", str(out),
                                     "--json"])
    assert code.exit_code == 0, code.stderr
    summary = json.loads(code.stdout)
    assert summary["strategy_report"]["round_to"] == 16
    assert load_artifact(out).meta["strategy_report"]["round_to"] == 16
    exact = tmp_path / "e.srp"
    code = CliRunner().invoke(main, ["compress", *EDSR, "--ratio", "0.5", "--round-to", "1",
                                     "--out", str(exact), "--json"])
    assert code.exit_code == 0, code.stderr
    assert load_artifact(exact).meta["strategy_report"]["round_to_asked"] == 1


def test_round_to_with_a_plan_file_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["compress", "drn-t", "--strategy", "from-file", "--plan",
                                       str(tmp_path / "p.json"), "--round-to", "8", "--out",
                                       str(tmp_path / "m.srp")])
    assert result.exit_code == 2
    assert "--round-to does not apply to --strategy from-file" in result.stderr


def test_the_api_takes_round_to():
    result = compress_model(small_edsr(), 0.5, round_to=8, input_size=(16, 16))
    assert result.strategy_report["round_to"] == 8
    assert all(w % 8 == 0 for w in result.plan["units"].values())


def test_the_probe_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real probe
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path))
    nchwc._probed.cache_clear()
    try:
        first = (nchwc.nchwc_alignment(), nchwc.nchwc_block())
        assert (tmp_path / "nchwc.json").exists()
        assert first[1] in (1, *nchwc.BLOCKS)
        nchwc._probed.cache_clear()

        def no_probe(folder: object) -> int:
            raise AssertionError("probed again")

        monkeypatch.setattr(nchwc, "_probe_alignment", no_probe)
        monkeypatch.setattr(nchwc, "_probe_block", no_probe)
        assert (nchwc.nchwc_alignment(), nchwc.nchwc_block()) == first
    finally:
        nchwc._probed.cache_clear()
