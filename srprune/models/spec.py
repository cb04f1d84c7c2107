"""``ModelSpec``: how a registered model (built-in or plugin) is described and built."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srprune.errors import SrpruneError
from srprune.models.srmodel import SRModel
from srprune.registry import MODELS

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: what ``srprune list models`` shows and how to build it per scale.

    ``configs`` maps each supported scale to the builder's keyword arguments;
    ``builder(scale=s, **configs[s])`` must return an :class:`SRModel`. ``small`` overrides
    give a build with the same structures at a size CI can afford (fewer blocks). A model
    plugin registers one of these (entry-point group ``srprune.models``).
    """

    name: str
    description: str
    configs: dict[int, dict[str, Any]]  # scale -> builder keyword arguments
    builder: Callable[..., SRModel] | None = None  # builder(scale=..., **config) -> SRModel
    family: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    small: dict[str, Any] = field(default_factory=dict)  # overrides for a CI-sized build

    @property
    def scales(self) -> list[int]:
        return sorted(self.configs)

    def config_for(self, scale: int | None) -> dict[str, Any]:
        scale = self.default_scale if scale is None else scale
        if scale not in self.configs:
            raise SrpruneError(
                f"model '{self.name}' does not support scale {scale}; supported: "
                + ", ".join(f"x{s}" for s in self.scales)
            )
        return {"scale": scale, **self.configs[scale]}

    @property
    def default_scale(self) -> int:
        return 4 if 4 in self.configs else self.scales[0]

    def default_weights(self, scale: int) -> Path | None:
        """The weights shipped in the package for this model and scale, if any."""
        path = WEIGHTS_DIR / f"{self.name}-x{scale}.pt"
        return path if path.exists() else None

    def small_config(self, scale: int | None) -> dict[str, Any]:
        """The config at ``scale`` with ``small`` applied (nested dicts merged one level):
        the same structures at a size tests can afford."""
        config = self.config_for(scale)
        for key, value in self.small.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return config

    def build(self, config: dict[str, Any]) -> SRModel:
        """Call the builder with a full config (one-line error for bad configs)."""
        if self.builder is None:
            raise SrpruneError(f"model '{self.name}' has no builder")
        params = inspect.signature(self.builder).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(config) - set(params))
            if unknown:
                raise SrpruneError(f"model '{self.name}' has no option '{unknown[0]}' "
                                   f"(--arch-opt); its options: {', '.join(params)}")
        try:
            model = self.builder(**config)
        except (TypeError, ValueError) as exc:
            raise SrpruneError(f"cannot build '{self.name}' with {config}: {exc}") from None
        if not isinstance(model, SRModel):
            raise SrpruneError(f"model '{self.name}': its builder returned a "
                               f"{type(model).__name__}, not an SRModel")
        model.name = self.name
        if not model.config:
            model.config = dict(config)
        return model


def register_model(spec: ModelSpec) -> ModelSpec:
    """Register a model in this process (plugins packages use the ``srprune.models`` entry
    point instead); a name registered twice is an error naming both sources."""
    MODELS.add(spec.name, spec, f"{spec.builder.__module__ if spec.builder else 'unknown'}"
                                f" (register_model)")
    return spec
