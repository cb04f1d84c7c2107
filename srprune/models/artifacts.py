"""``SRModel`` <-> artifact file: save any model that was built by name, load it back.

Loading rebuilds the unpruned architecture through the registry (the model's registered
name, so built-in and plugin models alike), shrinks every layer to the saved shapes, then
loads the tensors with a strict ``load_state_dict``. Models built outside the registry load
through their built-in builder family (``drn``, ``srnet``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

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


# An unpruned architecture bigger than this (and than 1000 times the tensors saved) is a
# damaged or hostile config, not a model: it is refused before anything is allocated.
MAX_PARAMS = 2**28  # 1 GiB of float32
PROBE_SIZE = (16, 16)  # LR input of the shape check (meta device: no arithmetic, no memory)


def load_artifact(path: str | Path) -> SRModel:
    """Load an artifact written by :func:`save_artifact`.

    Anything wrong with the file (unreadable, code-carrying, tampered: a config that does not
    build, tensors that do not fit the architecture or whose layers no longer fit each other)
    is a one-line ``SrpruneError`` naming the file.
    """
    data = read_artifact(path)
    model, reference = _rebuild(data, path)
    expected = _reference_shapes(reference)
    try:
        resize_to_state(model.net, data.state_dict, path)
        model.net.load_state_dict(data.state_dict, strict=True)
        if data.duals is not None and model.duals is not None:
            if len(data.duals) != len(model.duals):
                raise SrpruneError(f"{path}: has {len(data.duals)} dual nets, the architecture "
                                   f"has {len(model.duals)}")
            for dual, state in zip(model.duals, data.duals):
                resize_to_state(dual, state, path)
                dual.load_state_dict(state, strict=True)
    except SrpruneError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            ZeroDivisionError) as exc:
        raise SrpruneError(f"{path}: its tensors do not fit the architecture "
                           f"({_first_line(exc)})") from None
    if expected is not None:
        _check_shapes(model, expected, path)
    model.plan = data.plan
    model.name = data.name
    model.meta = data.meta
    return model.eval()


def _spec(data: ArtifactData, path: str | Path) -> ModelSpec:
    """The registered spec that rebuilds it, else one of its built-in builder family."""
    if data.name in MODELS.names():
        return MODELS.get(data.name)
    if data.arch in ARCH_BUILDERS:
        return ModelSpec(data.name, "", {}, builder=ARCH_BUILDERS[data.arch], family=data.arch)
    raise SrpruneError(f"{path} holds model '{data.name}' (architecture '{data.arch}'), which "
                       "is not registered here; install the plugin that provides it")


def _build(spec: ModelSpec, config: dict[str, Any], path: str | Path) -> SRModel:
    try:
        return spec.build(dict(config))
    except SrpruneError as exc:
        raise SrpruneError(f"{path}: damaged artifact: {exc}") from None
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            OverflowError, ZeroDivisionError, AssertionError, MemoryError) as exc:
        raise SrpruneError(f"{path}: damaged artifact: its config {config} does not build "
                           f"'{spec.name}' ({_first_line(exc)})") from None


def _rebuild(data: ArtifactData, path: str | Path) -> tuple[SRModel, SRModel | None]:
    """The unpruned architecture, and a copy of it on the meta device (None when the
    builder cannot build there) that sizes it before it is built for real."""
    spec = _spec(data, path)
    try:
        with torch.device("meta"):
            reference: SRModel | None = spec.build(dict(data.config))
    except Exception:  # not every builder runs on meta; a bad config fails the real build too
        reference = None
    if reference is not None:
        n_params = _n_params(reference)
        saved = sum(t.numel() for t in data.state_dict.values())
        if n_params > max(MAX_PARAMS, 1000 * saved):
            raise SrpruneError(f"{path}: damaged artifact: its config {data.config} describes "
                               f"a network of {n_params:,} parameters for {saved:,} saved "
                               "values; refusing to build it")
        reference.eval()
    return _build(spec, data.config, path), reference


def _n_params(model: SRModel) -> int:
    nets = [model.net] + ([model.duals] if model.duals is not None else [])
    return sum(p.numel() for net in nets for p in net.parameters())


Shapes = tuple[list[tuple[int, ...]], list[tuple[int, ...]]]


def _output_shapes(model: SRModel, last: list[str] | None = None) -> Shapes:
    """Output shapes of the primal net and of each dual net on a ``PROBE_SIZE`` input, run on
    the meta device (``model`` is there already, or a copy is moved there); whatever the
    forward pass raises is passed on, ``last`` then ends with the layer that raised it."""
    net, duals = model.net, model.duals
    if next(net.parameters(), torch.empty(0, device="meta")).device.type != "meta":
        net = copy.deepcopy(net).to("meta")
        duals = copy.deepcopy(duals).to("meta") if duals is not None else None
    if last is not None:
        _track_layers(net, "", last)
        if duals is not None:
            _track_layers(duals, "dual net ", last)
    with torch.no_grad():
        out = net(torch.zeros(1, 3, *PROBE_SIZE, device="meta"))
        outputs = list(out) if isinstance(out, (list, tuple)) else [out]
        dual_shapes = []
        if duals is not None and len(outputs) == len(duals) + 1:  # as the DR loss uses them
            dual_shapes = [tuple(d(outputs[k + 1]).shape) for k, d in enumerate(duals)]
        elif duals is not None:
            x = outputs[-1]
            for k in reversed(range(len(duals))):
                x = duals[k](x)
                dual_shapes.append(tuple(x.shape))
    return [tuple(o.shape) for o in outputs], dual_shapes


def _track_layers(net: torch.nn.Module, prefix: str, last: list[str]) -> None:
    """Append each leaf layer's name to ``last`` as it starts (on a throwaway meta copy)."""
    for name, module in net.named_modules():
        if name and next(module.children(), None) is None:
            module.register_forward_pre_hook(
                lambda _m, _i, label=prefix + name: last.append(label))


def _reference_shapes(reference: SRModel | None) -> Shapes | None:
    """The unpruned architecture's output shapes; None when it cannot be probed (then the
    loaded model is not checked either)."""
    if reference is None:
        return None
    try:
        return _output_shapes(reference)
    except Exception:  # a builder whose forward pass does not run on meta
        return None


def _check_shapes(model: SRModel, expected: Shapes, path: str | Path) -> None:
    """The loaded layers still fit each other: the model produces the outputs of its
    unpruned architecture (pruning changes widths inside, never what comes out)."""
    last: list[str] = []
    try:
        got = _output_shapes(model, last)
    except Exception as exc:  # the layers no longer chain: a shape error of some kind
        layer = f" at layer {last[-1]}" if last else ""
        raise SrpruneError(f"{path}: damaged artifact: its layers do not fit together{layer} "
                           f"({_first_line(exc)[:160]})") from None
    if got != expected:
        raise SrpruneError(f"{path}: damaged artifact: it produces outputs {got[0]} (dual "
                           f"nets {got[1]}), its architecture {expected[0]} ({expected[1]})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
