"""Which code a model file may make srprune import and call: none, unless the user says so.

An artifact of a model built from an import path (``package.module:Factory``) records that
path, and rebuilding the model means importing the module and calling the factory. A file is
data, so the path it records is only a *request*: it is honoured when the user opted in,

* for that exact path, by naming it themselves (a model argument on the command line, or
  ``trust_import={"package.module:Factory"}`` in the API): then any callable may be named,
  and what it returns is checked, as for an import path typed on the command line;
* for any path, with ``--trust-import`` / ``trust_import=True``: then the target must be an
  ``nn.Module`` subclass or a function marked with :func:`srprune_factory`, checked by
  inspection after the import and before anything is called.

Otherwise loading refuses before importing anything, with one line that says what to pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from srprune.errors import SrpruneError

FACTORY_MARK = "__srprune_factory__"
TrustImport = bool | Iterable[str] | None
F = TypeVar("F", bound=Callable[..., Any])


def srprune_factory(function: F) -> F:
    """Mark ``function`` as a model factory that artifacts may name (``--trust-import``).

    Without the mark, an artifact loaded with ``--trust-import`` may name only ``nn.Module``
    classes: a file must not be able to make srprune call ``os.system``.
    """
    setattr(function, FACTORY_MARK, True)
    return function


def trust_level(path: str, trust_import: TrustImport) -> str:
    """``"named"`` (the user named this path), ``"any"`` (``--trust-import``) or ``"none"``."""
    if trust_import is True:
        return "any"
    if trust_import and not isinstance(trust_import, (bool, str)) and path in set(trust_import):
        return "named"
    if isinstance(trust_import, str) and trust_import == path:
        return "named"
    return "none"


def refuse_untrusted(source: str, path: str) -> SrpruneError:
    """The one-line refusal for an artifact whose import path nobody trusted."""
    return SrpruneError(
        f"{source} was built from the import path {path}: loading it would import and run "
        f"that code; pass --trust-import (srprune.load(..., trust_import=True)) or give "
        f"{path} on the command line to allow it")


def check_artifact_target(target: Any, path: str) -> None:
    """What ``--trust-import`` allows an artifact to call: an ``nn.Module`` subclass or a
    function marked with :func:`srprune_factory`; checked before anything is called."""
    if isinstance(target, type) and issubclass(target, nn.Module):
        return
    if callable(target) and getattr(target, FACTORY_MARK, False) is True:
        return
    kind = "class" if isinstance(target, type) else type(target).__name__
    raise SrpruneError(
        f"{path} (recorded in the artifact) is a {kind}, neither an nn.Module subclass nor a "
        "function marked @srprune_factory; refusing to call it (give the path on the command "
        "line to use it anyway)")


IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_import_path(spec: str) -> bool:
    """``package.module:Factory`` (and not a file that happens to exist)."""
    return bool(IMPORT_PATH.match(spec)) and not Path(spec).exists()


def command_line_imports(specs: Iterable[str]) -> frozenset[str]:
    """The import paths among a command's model arguments: the user named them."""
    from srprune.registry import MODELS

    return frozenset(s for s in specs if s not in MODELS.names() and is_import_path(s))
