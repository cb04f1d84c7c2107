"""Compressed-model artifacts: architecture name + config + plan + tensors, never pickled code.

Loading rebuilds the unpruned architecture from its config, then resizes every layer whose
saved weights are smaller (convs, linears, norms, PReLU) before a strict ``load_state_dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.io.checkpoint import read_checkpoint, save_checkpoint
from srprune.models.srmodel import SRModel

FORMAT = "srprune-artifact"
VERSION = 1
SUFFIXES = (".srp", ".pt", ".pth")


def is_artifact_path(spec: str | Path) -> bool:
    """True when a model argument names a file rather than a registered model."""
    text = str(spec)
    return Path(text).suffix in SUFFIXES or "/" in text or Path(text).is_file()


def save_artifact(model: SRModel, path: str | Path, meta: dict[str, Any] | None = None,
                  force: bool = False) -> Path:
    """Save ``model`` (its current, possibly pruned, shapes) as one ``weights_only`` file."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "config": model.config,
        "scale": model.scale,
        "name": getattr(model, "arch_name", model.arch),
        "plan": model.plan,
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "duals": ([{k: v.detach().cpu() for k, v in d.state_dict().items()} for d in model.duals]
                  if model.duals is not None else None),
        "meta": meta or {},
    }
    return save_checkpoint(payload, path, force=force)


def load_artifact(path: str | Path) -> SRModel:
    """Load an artifact written by :func:`save_artifact`."""
    from srprune.models.zoo import build_arch

    data = read_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SrpruneError(f"{path} is not an srprune artifact (no '{FORMAT}' header); "
                           "use a model name with --weights for plain state_dicts")
    if data.get("version", 0) > VERSION:
        raise SrpruneError(f"{path} was written by a newer srprune (artifact v{data['version']})")
    model = build_arch(data["arch"], dict(data["config"]))
    resize_to_state(model.net, data["state_dict"], path)
    model.net.load_state_dict(data["state_dict"], strict=True)
    if data.get("duals") is not None and model.duals is not None:
        for dual, state in zip(model.duals, data["duals"]):
            dual.load_state_dict(state, strict=True)
    model.plan = data.get("plan")
    model.arch_name = data.get("name", data["arch"])  # type: ignore[attr-defined]
    model.meta = data.get("meta", {})  # type: ignore[attr-defined]
    return model.eval()


def resize_to_state(net: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Shrink layers of a freshly built net so their parameters match ``state``'s shapes."""
    own = net.state_dict()
    extra = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if extra or missing:
        key = (extra or missing)[0]
        raise SrpruneError(f"{path}: artifact does not fit its architecture (key {key})")
    for name, module in net.named_modules():
        prefix = f"{name}." if name else ""
        shapes = {p: tuple(state[prefix + p].shape) for p, _ in module.named_parameters(
            recurse=False)}
        shapes.update({b: tuple(state[prefix + b].shape) for b, t in module.named_buffers(
            recurse=False) if t is not None})
        if all(tuple(getattr(module, k).shape) == s for k, s in shapes.items()):
            continue
        _resize_module(module, shapes, f"{path}: layer {name or '<root>'}")


def _resize_module(module: nn.Module, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    for key, shape in shapes.items():
        old = getattr(module, key)
        new = torch.empty(shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(module, key, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module.register_buffer(key, new)
    if isinstance(module, nn.modules.conv._ConvNd):
        w = module.weight.shape
        transposed = module.transposed
        module.out_channels = w[1] * module.groups if transposed else w[0]
        module.in_channels = w[0] if transposed else w[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
        n = next(iter(shapes.values()))[0]
        if hasattr(module, "num_features"):
            module.num_features = n
        elif hasattr(module, "num_channels"):
            module.num_channels = n
    elif isinstance(module, nn.PReLU):
        module.num_parameters = module.weight.shape[0]
    else:
        raise SrpruneError(f"{where}: cannot resize a {type(module).__name__}")
