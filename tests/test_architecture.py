"""The folder tree is the architecture: no import cycles, and rooms import only downwards.

Every ``import`` statement is read from the source (function-level ones included), so a cycle
hidden behind a deferred import fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "srprune"

# Which rooms a room may import (besides itself). "core" is the leaf modules at the top of the
# package (errors, registry, config, hooks). Keep docs/architecture.md in step with this table.
ALLOWED = {
    "core": set(),
    "io": {"core"},
    "data": {"core"},
    "models": {"core", "io", "data"},
    "quality": {"core", "models", "data"},
    "measure": {"core", "models", "io"},
    "training": {"core", "models", "data", "io", "quality"},
    "prune": {"core", "models", "measure", "io"},
    "criteria": {"core", "prune", "training", "models", "io", "data"},
    "search": {"core", "prune", "training", "models", "io", "data", "measure"},
    "api": {"core", "criteria", "search", "prune", "training", "measure", "quality", "models",
            "data", "io"},
    "compare": {"core", "api", "measure", "quality", "models", "data", "io"},
    "deploy": {"core", "models", "measure", "quality", "data", "io", "training"},
    "upscale": {"core", "models", "measure", "io"},
    "cli": {"root", "core", "api", "prune", "training", "measure", "quality", "models", "data",
            "io", "compare", "deploy", "upscale"},
    "root": {"core", "api"},
}
CORE = {"errors", "registry", "config", "hooks"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """srprune modules imported anywhere in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                     for alias in node.names]
        else:
            continue
        found.update(n for n in names if n in modules and n != here)
    return found


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    if parts[1] in CORE:
        return "core"
    return parts[1]


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_room_is_known():
    rooms = {room(m) for m in all_modules()}
    assert rooms <= set(ALLOWED), f"rooms without a rule: {sorted(rooms - set(ALLOWED))}"


@pytest.mark.parametrize("module", sorted(all_modules()))
def test_imports_point_down(module):
    modules = all_modules()
    mine = room(module)
    wrong = sorted(t for t in imports_of(modules[module], modules)
                   if room(t) != mine and room(t) not in ALLOWED[mine])
    assert not wrong, f"{module} ({mine}) imports {wrong}: not allowed by ALLOWED[{mine!r}]"


def test_only_the_graph_module_knows_torch_pruning():
    users = sorted(module_name(p) for p in PACKAGE.rglob("*.py")
                   if "torch_pruning" in p.read_text())
    assert users == ["srprune.prune.graph"]


def test_public_api_is_declared_and_importable():
    import srprune

    for name in srprune.__all__:
        assert getattr(srprune, name) is not None, name
