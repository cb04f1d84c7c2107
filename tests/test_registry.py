"""Registries: built-ins, entry-point plugins, duplicate names."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from srprune import registry
from srprune.criteria import ScoreCriterion
from srprune.errors import SrpruneError


class Dummy(ScoreCriterion):
    """A dummy plugin criterion."""


def fresh_copy(source: registry.Registry) -> registry.Registry:
    """A new registry holding the built-ins of ``source``, entry points not yet read."""
    reg = registry.Registry(source.kind)
    for name in source.names():
        reg._items[name] = source.get(name)
        reg._sources[name] = source.source(name)
    return reg


def test_duplicate_names_raise_and_name_both_sources():
    reg = registry.Registry("criteria")
    reg._loaded = True
    reg.add("x", Dummy, "pkg_a.mod")
    with pytest.raises(SrpruneError, match="duplicate criteria name"):
        reg.add("x", Dummy, "pkg_b.mod")
    try:
        reg.add("x", Dummy, "pkg_b.mod")
    except SrpruneError as exc:
        assert "pkg_a.mod" in str(exc) and "pkg_b.mod" in str(exc)


def test_entry_points_are_loaded_and_clashes_reported(monkeypatch):
    from srprune.criteria.magnitude import L1Magnitude

    registry.CRITERIA.names()  # built-ins loaded before entry points are patched
    value = "srprune.criteria.magnitude:L1Magnitude"
    eps = [EntryPoint(name="dummy", value=value, group="srprune.criteria")]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: eps if group == "srprune.criteria" else [])
    reg = fresh_copy(registry.CRITERIA)
    assert reg.get("dummy") is L1Magnitude
    assert "l1" in reg.names()
    assert reg.source("dummy") == f"entry point {value}"

    clash = [EntryPoint(name="l1", value=value,
                        group="srprune.criteria")]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: clash if group == "srprune.criteria" else [])
    with pytest.raises(SrpruneError, match=r"duplicate .* 'l1'.*entry point"):
        fresh_copy(registry.CRITERIA).names()


def test_broken_plugin_is_one_clear_error(monkeypatch):
    registry.STRATEGIES.names()  # built-ins loaded before entry points are patched
    eps = [EntryPoint(name="broken", value="no_such_module_xyz:thing",
                      group="srprune.search")]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: eps if group == "srprune.search" else [])
    with pytest.raises(SrpruneError, match=r"plugin 'broken'.*failed to load"):
        fresh_copy(registry.STRATEGIES).names()


def test_unknown_names_list_the_known_ones():
    with pytest.raises(SrpruneError, match=r"unknown strategy 'zzz'; known: .*uniform"):
        registry.STRATEGIES.get("zzz")


def test_model_entry_point_name_must_match_its_spec(monkeypatch):
    from srprune.models.spec import ModelSpec

    registry.MODELS.names()

    class FakeEntryPoint:
        name, value, group = "alias", "pkg:SPEC", "srprune.models"

        def load(self):
            return ModelSpec("realname", "a spec", {4: {}})

    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [FakeEntryPoint()] if group == "srprune.models" else [])
    with pytest.raises(SrpruneError, match="holds a spec named 'realname'; the two names must"):
        fresh_copy(registry.MODELS).names()
