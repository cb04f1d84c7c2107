"""ORT's NCHWc channel block, probed, and the latency strategy's aligned widths."""

from __future__ import annotations

import pytest
import torch

import srprune
from srprune.errors import SrpruneError
from srprune.measure import nchwc
from srprune.measure.latency_table import LatencyTable
from srprune.models import build_model
from srprune.search.latency import LatencyTarget
from tests.test_latency_strategy import SIZE, macs_ms


def test_the_probed_alignment_is_what_ort_does_with_a_chain_of_convs(tmp_path):
    multiple = nchwc.nchwc_alignment()
    assert multiple in nchwc.PROBES
    if not nchwc._second_conv_is_blocked(48, tmp_path):  # no blocked layout on this CPU
        assert multiple == 1
        return
    for width in (17 * multiple, 13 * multiple):  # above 16, multiples: accepted
        assert nchwc._second_conv_is_blocked(width, tmp_path)
    if multiple > 1:  # above 16 and off the multiple: refused
        assert not nchwc._second_conv_is_blocked(16 * multiple + multiple // 2 + 1, tmp_path)


def test_aligned():
    assert nchwc.aligned(48, 16) and not nchwc.aligned(40, 16)
    assert nchwc.aligned(45, 1)


@pytest.mark.parametrize("align", [8, 16])
def test_the_latency_plan_keeps_widths_on_the_block(tmp_path, monkeypatch, align):
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(LatencyTable, "_measure_ort", lambda self, shape: macs_ms(shape))
    torch.manual_seed(0)
    model = build_model("drn-t", 4, pretrained=False, n_blocks=2, n_feats=16).eval()
    result = srprune.compress(model, None, criterion="l1", strategy="latency", scope="all",
                              strategy_options={"speedup": 1.6, "runs": 2, "align": align},
                              input_size=SIZE)
    kept, original = result.plan["units"], result.plan["original"]
    assert result.strategy_report["align"] == align
    assert any(kept[n] < original[n] for n in kept)
    for name, width in kept.items():
        if original[name] % align == 0:
            assert width % align == 0 and width >= align, (name, width)


def test_align_one_allows_any_width(tmp_path, monkeypatch):
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(LatencyTable, "_measure_ort", lambda self, shape: macs_ms(shape))
    torch.manual_seed(0)
    model = build_model("drn-t", 4, pretrained=False, n_blocks=2, n_feats=16).eval()
    result = srprune.compress(model, None, criterion="l1", strategy="latency", scope="all",
                              strategy_options={"speedup": 1.6, "runs": 2, "align": 1,
                                                "levels": 16},
                              input_size=SIZE)
    kept = result.plan["units"]
    assert any(width % 8 for width in kept.values())


@pytest.mark.parametrize("align", [0, "eight", -8])
def test_a_bad_align_is_refused(align):
    with pytest.raises(SrpruneError, match="align"):
        LatencyTarget(speedup=2.0, align=align)
