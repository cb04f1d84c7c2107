"""Build a registered criterion or strategy from user options, with one-line errors.

Options arrive as strings or JSON values from ``--criterion-opt key=value``. Before calling
the constructor, each name is checked against the constructor's keyword arguments (following
``**options`` pass-through to base classes), and each value against the kind its default or
annotation implies (number, integer, flag), so a typo or ``gamma=abc`` is one line naming the
option and what would work, never a Python ``TypeError`` about an internal class.
"""

from __future__ import annotations

import inspect
from typing import Any

from srprune.errors import SrpruneError
from srprune.registry import Registry


def constructor_options(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword options a class accepts, following ``**kwargs`` into its base classes."""
    options: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                options.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return options


def _expected_kind(param: inspect.Parameter) -> str | None:
    default, note = param.default, str(param.annotation)
    if isinstance(default, bool) or note in ("bool", "bool | None"):
        return "bool"
    if isinstance(default, int) or note in ("int", "int | None"):
        return "int"
    if isinstance(default, float) or note in ("float", "float | None"):
        return "float"
    return None


def _fits(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, (int, float))


def instantiate(registry: Registry, kind: str, name: str,
                options: dict[str, Any] | None = None) -> Any:
    """``registry.get(name)(**options)`` with every bad option reported as one line."""
    cls = registry.get(name)
    options = dict(options or {})
    known = constructor_options(cls)
    listing = ", ".join(sorted(known)) or "none"
    for key, value in options.items():
        if key not in known:
            raise SrpruneError(f"{kind} '{name}' has no option '{key}'; its options: {listing}")
        expected = _expected_kind(known[key])
        if value is not None and expected and not _fits(value, expected):
            word = {"bool": "true or false", "int": "an integer", "float": "a number"}[expected]
            raise SrpruneError(f"{kind} '{name}' option {key}: expected {word}, got {value!r}")
    try:
        return cls(**options)
    except SrpruneError as exc:  # the class's own check: make sure it names the plugin
        if str(exc).startswith((name, f"{kind} '{name}'")):
            raise
        raise SrpruneError(f"{kind} '{name}': {exc}") from None
    except (TypeError, ValueError) as exc:
        raise SrpruneError(f"{kind} '{name}': {exc}") from None
