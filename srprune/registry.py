"""Named registries for models, criteria and search strategies.

Built-ins register with a decorator; installed packages add entries through the entry-point
groups ``srprune.models``, ``srprune.criteria`` and ``srprune.search``. Registering one name
twice is an error that names both sources.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from srprune.errors import SrpruneError

T = TypeVar("T")

# Modules whose import registers the built-in entries of each registry.
_BUILTIN_MODULES = {
    "models": ("srprune.models.zoo",),
    "criteria": ("srprune.criteria",),
    "strategies": ("srprune.search",),
}
_SINGULAR = {"models": "model", "criteria": "criterion", "strategies": "strategy"}
_ENTRY_POINT_GROUPS = {
    "models": "srprune.models",
    "criteria": "srprune.criteria",
    "strategies": "srprune.search",
}


class Registry(Generic[T]):
    """Maps names to objects (builders or classes) and remembers where each came from."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, source: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` adds the decorated object."""

        def add(obj: T) -> T:
            self.add(name, obj, source or f"{obj.__module__}.{obj.__qualname__}")
            return obj

        return add

    def add(self, name: str, obj: T, source: str) -> None:
        """Add one entry; a name that is already taken raises and names both sources."""
        if name in self._items:
            raise SrpruneError(
                f"duplicate {self.kind} name '{name}': registered by {self._sources[name]} "
                f"and again by {source}"
            )
        self._items[name] = obj
        self._sources[name] = source

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in _BUILTIN_MODULES[self.kind]:
            importlib.import_module(module)
        for ep in entry_points(group=_ENTRY_POINT_GROUPS[self.kind]):
            if ep.name in self._items and self._sources[ep.name] == f"entry point {ep.value}":
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the cause
                raise SrpruneError(
                    f"{self.kind} plugin '{ep.name}' ({ep.value}) failed to load: {exc}"
                ) from exc
            spec_name = getattr(obj, "name", ep.name) if self.kind == "models" else ep.name
            if spec_name != ep.name:  # artifacts record the spec's name and look it up
                raise SrpruneError(f"model plugin entry point '{ep.name}' ({ep.value}) holds "
                                   f"a spec named '{spec_name}'; the two names must match")
            self.add(ep.name, obj, f"entry point {ep.value}")

    def get(self, name: str) -> T:
        """Look a name up; an unknown name raises with the list of known ones."""
        self._load()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise SrpruneError(f"unknown {_SINGULAR[self.kind]} '{name}'; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def source(self, name: str) -> str:
        self._load()
        return self._sources[name]

    def items(self) -> dict[str, Any]:
        self._load()
        return dict(sorted(self._items.items()))


MODELS: Registry = Registry("models")
CRITERIA: Registry = Registry("criteria")
STRATEGIES: Registry = Registry("strategies")
