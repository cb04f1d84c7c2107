"""docs/plugins.md stays true: every ```python block runs, the toml block matches them.

Each python block is executed on its own (a reader copies one at a time), in a fresh
namespace, in a scratch directory; what it registers is removed again afterwards so the
snippets' names never leak into other tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from srprune import registry
from srprune.registry import CRITERIA, MODELS, STRATEGIES

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
NAMES = re.compile(r'register_(?:criterion|strategy)\("([^"]+)"\)|\bname="([^"]+)"')


def blocks(language: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(DOC.read_text()) if m.group(1) == language]


def registered_names(code: str) -> list[str]:
    """The plugin names a snippet registers (for test ids and checks)."""
    return [a or b for a, b in NAMES.findall(code)]


PYTHON = blocks("python")
REGISTRIES = (MODELS, CRITERIA, STRATEGIES)


@pytest.fixture
def scratch_registries(monkeypatch):
    """Registrations made in the test are undone afterwards (the registries' dicts restored)."""
    for reg in REGISTRIES:
        reg.names()  # built-ins and entry points loaded into the real dicts first
        monkeypatch.setattr(reg, "_items", dict(reg._items))
        monkeypatch.setattr(reg, "_sources", dict(reg._sources))


def test_the_page_has_the_three_kinds_of_snippet():
    assert len(PYTHON) >= 3
    kinds = " ".join(PYTHON)
    for call in ("register_criterion(", "register_strategy(", "register_model("):
        assert call in kinds
    assert len(blocks("toml")) == 1


@pytest.mark.parametrize("code", PYTHON,
                         ids=["-".join(registered_names(c)) or f"block{i}"
                              for i, c in enumerate(PYTHON)])
def test_python_snippet_runs(code, scratch_registries, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = {reg.kind: set(reg.names()) for reg in REGISTRIES}
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_plugins_snippet"})
    added = set().union(*(set(reg.names()) - before[reg.kind] for reg in REGISTRIES))
    assert added == set(registered_names(code))
    printed = capsys.readouterr().out
    assert any(name in printed for name in added), printed  # the snippet used its plugin


def test_python_snippets_leave_the_registries_alone():
    snippet_names = {n for code in PYTHON for n in registered_names(code)}
    assert not snippet_names & {n for reg in REGISTRIES for n in reg.names()}


def test_toml_entry_points_name_the_snippets_objects():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads(blocks("toml")[0])
    groups = data["project"]["entry-points"]
    assert set(groups) == set(registry._ENTRY_POINT_GROUPS.values())
    for group, entries in groups.items():
        for name, value in entries.items():
            module, _, attr = value.partition(":")
            assert module and attr, value
            defining = [c for c in PYTHON
                        if re.search(rf"^(class {attr}\b|{attr} = )", c, re.MULTILINE)]
            assert len(defining) == 1, f"{group}: {attr} is not defined by one snippet"
            # the entry-point name is the registered name (a model's artifacts store it)
            assert name in registered_names(defining[0]), (group, name, attr)
