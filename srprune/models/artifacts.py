"""``SRModel`` <-> artifact file: save any model that was built by name, load it back.

Loading rebuilds the unpruned architecture through the registry (the model's registered
name, so built-in and plugin models alike), shrinks every layer to the saved shapes, then
loads the tensors with a strict ``load_state_dict``. Models built outside the registry load
through their built-in builder family (``drn``, ``srnet``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srprune.errors import SrpruneError
from srprune.io.artifact import (
    ArtifactData,
    is_artifact_path,
    read_artifact,
    resize_to_state,
    write_artifact,
)
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.models.zoo import ARCH_BUILDERS
from srprune.registry import MODELS

__all__ = ["is_artifact_path", "load_artifact", "save_artifact"]


def save_artifact(model: SRModel, path: str | Path, meta: dict[str, Any] | None = None,
                  force: bool = False) -> Path:
    """Save ``model`` (its current, possibly pruned, shapes) as one ``weights_only`` file."""
    duals = ([{k: v.detach().cpu() for k, v in d.state_dict().items()} for d in model.duals]
             if model.duals is not None else None)
    data = ArtifactData(
        arch=model.arch, name=model.name or model.arch, scale=model.scale,
        config=dict(model.config),
        state_dict={k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        duals=duals, plan=model.plan, meta=dict(meta or {}))
    return write_artifact(data, path, force=force)


def load_artifact(path: str | Path) -> SRModel:
    """Load an artifact written by :func:`save_artifact`."""
    data = read_artifact(path)
    model = _rebuild(data, path)
    resize_to_state(model.net, data.state_dict, path)
    model.net.load_state_dict(data.state_dict, strict=True)
    if data.duals is not None and model.duals is not None:
        if len(data.duals) != len(model.duals):
            raise SrpruneError(f"{path}: has {len(data.duals)} dual nets, the architecture "
                               f"has {len(model.duals)}")
        for dual, state in zip(model.duals, data.duals):
            resize_to_state(dual, state, path)
            dual.load_state_dict(state, strict=True)
    model.plan = data.plan
    model.name = data.name
    model.meta = data.meta
    return model.eval()


def _rebuild(data: ArtifactData, path: str | Path) -> SRModel:
    """The unpruned architecture: by registered name, else by built-in builder family."""
    if data.name in MODELS.names():
        spec: ModelSpec = MODELS.get(data.name)
        return spec.build(dict(data.config))
    if data.arch in ARCH_BUILDERS:
        spec = ModelSpec(data.name, "", {}, builder=ARCH_BUILDERS[data.arch], family=data.arch)
        return spec.build(dict(data.config))
    raise SrpruneError(f"{path} holds model '{data.name}' (architecture '{data.arch}'), which "
                       "is not registered here; install the plugin that provides it")
