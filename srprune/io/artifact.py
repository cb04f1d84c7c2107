"""The artifact file format: architecture name + config + plan + tensors, never pickled code.

One ``torch.save`` file of plain containers and tensors, written atomically and read with
``weights_only=True``. This module knows the format only; ``models.artifacts`` turns an
``SRModel`` into it and back (rebuilding the unpruned architecture from its registered name,
then shrinking every layer to the saved shapes with :func:`resize_to_state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.io.checkpoint import read_checkpoint, save_checkpoint

FORMAT = "srprune-artifact"
VERSION = 3  # 2: adds "channel_splits"; 3: adds "removed_blocks" (the lowest version that
# holds what a file has is written, so files without them stay readable by older releases)
SUFFIXES = (".srp", ".pt", ".pth")
# other model files the front door opens (checkpoints, ncnn pairs, ONNX: named as such)
FILE_SUFFIXES = (".safetensors", ".param", ".bin", ".onnx")
StateDict = dict[str, torch.Tensor]


@dataclass
class ArtifactData:
    """The contents of one artifact file."""

    arch: str  # the builder family (e.g. "drn")
    name: str  # the registered model name that rebuilds it (e.g. "drn-t" or a plugin's)
    scale: int
    config: dict[str, Any]  # keyword arguments of the builder (unpruned architecture)
    state_dict: StateDict
    duals: list[StateDict] | None = None
    plan: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # split calls the pruned net replays with new sizes ({call number: sizes}; see
    # srprune.models.splits)
    splits: dict[int, list[int]] = field(default_factory=dict)
    # residual blocks depth pruning replaced with nn.Identity (module names, replayed on load)
    removed: list[str] = field(default_factory=list)


def is_artifact_path(spec: str | Path) -> bool:
    """True when a model argument names a file rather than a registered model."""
    text = str(spec)
    return (Path(text).suffix in SUFFIXES + FILE_SUFFIXES or "/" in text
            or Path(text).is_file())


def write_artifact(data: ArtifactData, path: str | Path, force: bool = False) -> Path:
    """Write ``data`` atomically (refusing to replace a file unless ``force``)."""
    version = 3 if data.removed else 2 if data.splits else 1
    payload = {"format": FORMAT, "version": version, "arch": data.arch,
               "name": data.name, "scale": data.scale, "config": data.config,
               "plan": data.plan, "state_dict": data.state_dict, "duals": data.duals,
               "meta": data.meta}
    if data.splits:
        payload["channel_splits"] = {int(k): list(v) for k, v in data.splits.items()}
    if data.removed:
        payload["removed_blocks"] = list(data.removed)
    return save_checkpoint(payload, path, force=force)


def read_artifact(path: str | Path) -> ArtifactData:
    """Read and check an artifact file (one-line ``SrpruneError`` for anything wrong)."""
    data = read_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SrpruneError(f"{path} is not an srprune artifact (no '{FORMAT}' header); "
                           "use a model name with --weights for plain state_dicts")
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version > VERSION:
        raise SrpruneError(f"{path} was written by a newer srprune (artifact "
                           f"v{brief(version)})")
    checks = {"arch": str, "config": dict, "state_dict": dict}
    for key, kind in checks.items():
        if not isinstance(data.get(key), kind):
            raise SrpruneError(f"{path}: damaged artifact: '{key}' is not a {kind.__name__}")
    check_state(data["state_dict"], f"{path}: damaged artifact: 'state_dict'")
    if not all(isinstance(k, str) for k in data["config"]):
        raise SrpruneError(f"{path}: damaged artifact: 'config' has a key that is not a name")
    duals = data.get("duals")
    if duals is not None:
        if not isinstance(duals, list):
            raise SrpruneError(f"{path}: damaged artifact: 'duals' is not a list of state_dicts")
        for i, dual in enumerate(duals):
            if not isinstance(dual, dict):
                raise SrpruneError(f"{path}: damaged artifact: 'duals' is not a list of "
                                   "state_dicts")
            check_state(dual, f"{path}: damaged artifact: dual net {i}")
    plan, meta = data.get("plan"), data.get("meta") or {}
    if plan is not None and not isinstance(plan, dict):
        raise SrpruneError(f"{path}: damaged artifact: 'plan' is not a dict")
    name = data.get("name", data["arch"])
    scale = data.get("scale", data["config"].get("scale"))
    if not isinstance(name, str) or isinstance(scale, bool) or not isinstance(scale, int) \
            or scale < 1:
        raise SrpruneError(f"{path}: damaged artifact: bad 'name' or 'scale'")
    if data["config"].get("scale", scale) != scale:
        raise SrpruneError(f"{path}: damaged artifact: scale x{scale} but its config says "
                           f"x{brief(data['config']['scale'])}")
    return ArtifactData(arch=data["arch"], name=name, scale=scale, config=dict(data["config"]),
                        state_dict=data["state_dict"], duals=duals, plan=plan,
                        meta=meta if isinstance(meta, dict) else {},
                        splits=_split_table(data.get("channel_splits"), path),
                        removed=_removed_blocks(data.get("removed_blocks"), path))


def _removed_blocks(value: object, path: str | Path) -> list[str]:
    """The saved list of removed blocks, checked ([] when there is none)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v and v.isprintable() and len(v) <= 200 for v in value):
        raise SrpruneError(f"{path}: damaged artifact: 'removed_blocks' is not a list of "
                           "module names")
    return list(value)


def _split_table(value: object, path: str | Path) -> dict[int, list[int]]:
    """The saved channel-split table, checked ({} when there is none)."""
    if value is None:
        return {}
    ok = isinstance(value, dict) and all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 0
        and isinstance(v, list) and v
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
        for k, v in value.items())
    if not ok:
        raise SrpruneError(f"{path}: damaged artifact: 'channel_splits' is not a table of "
                           "call numbers and channel sizes")
    return {int(k): [int(x) for x in v] for k, v in value.items()}


def brief(value: object, limit: int = 40) -> str:
    """A value in a one-line message: its repr on one line, cut short."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show_key(key: object) -> str:
    """A state_dict key or unit name read from a file, safe in a one-line message."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 80:
        return key
    return brief(key, 80)


def check_state(state: dict, where: str) -> None:
    """Every item of a state_dict is ``name: dense CPU tensor``; else one-line SrpruneError."""
    for key, value in state.items():
        if not isinstance(key, str):
            raise SrpruneError(f"{where} has a key that is not a name: {brief(key)}")
        if not isinstance(value, torch.Tensor):
            raise SrpruneError(f"{where} holds non-tensors ({show_key(key)}: "
                               f"{type(value).__name__})")
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
            raise SrpruneError(f"{where}: tensor {show_key(key)} is not a plain dense tensor "
                               f"({value.layout}, {value.device.type})")
        check_values(key, value, where)


WEIGHT_SUFFIXES = (".weight", ".bias", "weight", "bias")


def check_values(key: str, value: torch.Tensor, where: str) -> None:
    """Weights are real floating point and finite: a NaN or an integer weight would load
    silently (``load_state_dict`` casts) and only show as ``nan`` dB later."""
    if value.is_complex():
        raise SrpruneError(f"{where}: tensor {show_key(key)} is {value.dtype}; the model "
                           "needs floating point")
    if value.is_floating_point():
        if value.numel() and not bool(torch.isfinite(value).all()):
            bad = "NaN" if bool(torch.isnan(value).any()) else "infinite"
            if bad == "NaN" or key.endswith(WEIGHT_SUFFIXES):
                raise SrpruneError(f"{where}: tensor {show_key(key)} holds {bad} values")
    elif key.endswith(WEIGHT_SUFFIXES) and value.dtype != torch.bool:
        raise SrpruneError(f"{where}: tensor {show_key(key)} is {value.dtype}; weights must "
                           "be floating point (an integer or quantized export is not a "
                           "training checkpoint)")


def check_fits(own: torch.Tensor, saved: torch.Tensor, key: str, where: str) -> None:
    """``saved`` can replace the model's ``own`` tensor: same rank, no empty dimension, and
    real floating point where the model has floating point (shapes may differ: pruning)."""
    if saved.dim() != own.dim():
        raise SrpruneError(f"{where}: tensor {key} has shape {tuple(saved.shape)}, the "
                           f"architecture needs {own.dim()} dimensions")
    if own.dim() and 0 in saved.shape:
        raise SrpruneError(f"{where}: tensor {key} has an empty dimension "
                           f"{tuple(saved.shape)}")
    if own.is_floating_point() and not saved.is_floating_point():
        raise SrpruneError(f"{where}: tensor {key} is {saved.dtype}, the architecture needs "
                           f"floating point ({own.dtype})")


def resize_to_state(net: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Shrink layers of a freshly built net so their parameters match ``state``'s shapes."""
    own = net.state_dict()
    extra = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if extra or missing:
        key = (extra or missing)[0]
        raise SrpruneError(f"{path}: artifact does not fit its architecture (key "
                           f"{show_key(key)})")
    for key, tensor in own.items():
        check_fits(tensor, state[key], key, f"{path}")
    for name, module in net.named_modules():
        prefix = f"{name}." if name else ""
        shapes = {p: tuple(state[prefix + p].shape) for p, _ in module.named_parameters(
            recurse=False)}
        shapes.update({b: tuple(state[prefix + b].shape) for b, t in module.named_buffers(
            recurse=False) if t is not None and prefix + b in state})
        if all(tuple(getattr(module, k).shape) == s for k, s in shapes.items()):
            continue
        _resize_module(module, shapes, f"{path}: layer {name or '<root>'}")


def _resize_module(module: nn.Module, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    first = getattr(module, next(iter(shapes)))
    old_width = int(first.shape[0]) if first.dim() else -1
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
        if 1 < module.groups == module.in_channels == module.out_channels and not transposed:
            module.groups = w[0]  # depthwise: one group per channel, pruned with them
        module.out_channels = w[1] * module.groups if transposed else w[0]
        module.in_channels = w[0] if transposed else w[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
        n = next(iter(shapes.values()))[0]
        if isinstance(module, nn.LayerNorm):
            module.normalized_shape = (n,)
        elif hasattr(module, "num_features"):
            module.num_features = n
        elif hasattr(module, "num_channels"):
            module.num_channels = n
    elif isinstance(module, nn.PReLU):
        module.num_parameters = module.weight.shape[0]
    elif all(len(shape) == 1 for shape in shapes.values()):
        # a per-channel layer of another library (e.g. a channels-first LayerNorm): its
        # tensors are resized above; an int attribute holding the old width follows them
        for key, value in vars(module).items():
            if not key.startswith("_") and isinstance(value, int) and value == old_width:
                setattr(module, key, next(iter(shapes.values()))[0])
    else:
        raise SrpruneError(f"{where}: cannot resize a {type(module).__name__}")
