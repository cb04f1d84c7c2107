"""srprune: make super-resolution networks physically smaller and really faster.

The public API is ``__all__``; each name is imported on first use, so ``import srprune`` stays
cheap. Scripts compress with :func:`compress`, load artifacts with :func:`load`, train with
:func:`train`; plugin authors subclass :class:`ScoreCriterion`, :class:`SelectionCriterion` or
:class:`Strategy` (typed against :class:`Unit`, :class:`Context` and :class:`CostModel`), or
register a :class:`ModelSpec`.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("srprune")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

# public name -> (module, attribute)
_EXPORTS = {
    "compress": ("srprune.api", "compress_model"),
    "load": ("srprune.api", "load"),
    "train": ("srprune.api", "train_model"),
    "build_model": ("srprune.models", "build_model"),
    "SRModel": ("srprune.models.srmodel", "SRModel"),
    "ModelSpec": ("srprune.models.spec", "ModelSpec"),
    "RunConfig": ("srprune.config", "RunConfig"),
    "CompressResult": ("srprune.prune.engine", "CompressResult"),
    "Criterion": ("srprune.criteria.base", "Criterion"),
    "ScoreCriterion": ("srprune.criteria.base", "ScoreCriterion"),
    "SelectionCriterion": ("srprune.criteria.base", "SelectionCriterion"),
    "Strategy": ("srprune.search.base", "Strategy"),
    "Unit": ("srprune.prune.contracts", "Unit"),
    "Context": ("srprune.prune.contracts", "Context"),
    "CostModel": ("srprune.prune.contracts", "CostModel"),
    "register_criterion": ("srprune.criteria.base", "register_criterion"),
    "register_strategy": ("srprune.search.base", "register_strategy"),
    "register_model": ("srprune.models.spec", "register_model"),
    "srprune_factory": ("srprune.models.trust", "srprune_factory"),
    "SrpruneError": ("srprune.errors", "SrpruneError"),
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'srprune' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(import_module(module), attribute)
