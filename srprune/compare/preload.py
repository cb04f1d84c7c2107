"""What every local cell process needs, imported once in the fork server it is forked from.

Importing this module loads srprune's cell code, the registries (built-in criteria,
strategies and models, and plugins) and the parts of torch that meta-device cost counting
imports lazily (``torch._refs``, ``torch._decomp``, ``torch._dynamo``): about four seconds a
fresh process would otherwise spend on every cell. Nothing here starts a thread pool, so
forking afterwards is safe.
"""

from __future__ import annotations

import importlib

import srprune.compare.cell  # noqa: F401  (the cell code itself)
from srprune.registry import CRITERIA, MODELS, STRATEGIES

LAZY_TORCH_MODULES = ("torch._refs", "torch._decomp", "torch._dynamo")


def preload() -> None:
    for name in LAZY_TORCH_MODULES:
        importlib.import_module(name)
    for registry in (CRITERIA, STRATEGIES, MODELS):
        registry.names()


preload()
