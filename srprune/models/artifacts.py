"""``SRModel`` <-> artifact file: save any model that was built by name, load it back.

Loading rebuilds the unpruned architecture through the registry (the model's registered
name, so built-in and plugin models alike), shrinks every layer to the saved shapes, then
loads the tensors with a strict ``load_state_dict``. Models built outside the registry load
through their built-in builder family (``drn``, ``srnet``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srprune.errors import SrpruneError
from srprune.io.artifact import (
    ArtifactData,
    brief,
    is_artifact_path,
    read_artifact,
    resize_to_state,
    write_artifact,
)
from srprune.models.depth import remove_blocks
from srprune.models.detect import build_imported
from srprune.models.spec import ModelSpec
from srprune.models.splits import channel_splits, set_channel_splits
from srprune.models.srmodel import SRModel
from srprune.models.trust import TrustImport, is_import_path, refuse_untrusted, trust_level
from srprune.models.zoo import ARCH_BUILDERS
from srprune.registry import MODELS

__all__ = ["is_artifact_path", "load_artifact", "save_artifact"]

IMPORT = "import"  # the builder family of models built from an import path


def save_artifact(model: SRModel, path: str | Path, meta: dict[str, Any] | None = None,
                  force: bool = False) -> Path:
    """Save ``model`` (its current, possibly pruned, shapes) as one ``weights_only`` file."""
    duals = ([{k: v.detach().cpu() for k, v in d.state_dict().items()} for d in model.duals]
             if model.duals is not None else None)
    data = ArtifactData(
        arch=model.arch, name=model.name or model.arch, scale=model.scale,
        config=dict(model.config),
        state_dict={k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        duals=duals, plan=model.plan, meta=dict(meta or {}), splits=channel_splits(model.net),
        removed=list(model.removed_blocks))
    return write_artifact(data, path, force=force)


# An unpruned architecture bigger than this (and than 1000 times the tensors saved) is a
# damaged or hostile config, not a model: it is refused before anything is allocated.
MAX_PARAMS = 2**28  # 1 GiB of float32
PROBE_SIZE = (16, 16)  # LR input of the check that the loaded layers still fit together


def load_artifact(path: str | Path, trust_import: TrustImport = None) -> SRModel:
    """Load an artifact written by :func:`save_artifact`.

    An artifact of an import-path model is rebuilt by importing and calling the code it
    names only when ``trust_import`` allows it (see :mod:`srprune.models.trust`); otherwise
    it is refused before anything is imported. Anything wrong with the file (unreadable,
    code-carrying, tampered: a config that does not build, tensors that do not fit the
    architecture or whose layers no longer fit each other) is a one-line ``SrpruneError``
    naming the file.
    """
    data = read_artifact(path)
    model = (_rebuild_imported(data, path, trust_import) if data.arch == IMPORT
             else _rebuild(data, path)).eval()
    expected = _reference_shapes(model)
    try:
        if data.removed:
            remove_blocks(model.net, data.removed, f"{path}: damaged artifact: ")
            model.removed_blocks = list(data.removed)
        if data.splits:
            set_channel_splits(model.net, data.splits)
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
                           f"({_first_line(exc)[:160]})") from None
    if expected is not None:
        _check_shapes(model, expected, path)
    model.plan = data.plan
    model.name = data.name
    model.meta = data.meta
    return model.eval()


def _rebuild_imported(data: ArtifactData, path: str | Path,
                      trust_import: TrustImport) -> SRModel:
    """An import-path model, rebuilt only as far as the user trusts the path it records."""
    config = data.config
    target = config.get("path")
    if not isinstance(target, str) or not is_import_path(target):
        raise SrpruneError(f"{path}: damaged artifact: its import path "
                           f"{brief(target, 80)} is not package.module:Name")
    level = trust_level(target, trust_import)
    if level == "none":
        raise refuse_untrusted(str(path), target)
    options, scale = config.get("options", {}), config.get("scale")
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise SrpruneError(f"{path}: damaged artifact: its import options are not a dict")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale != data.scale:
        raise SrpruneError(f"{path}: damaged artifact: its scale {brief(scale, 20)} is not "
                           f"the recorded x{brief(data.scale, 20)}")
    return build_imported(target, options, scale, named_by_user=level == "named")


def _spec(data: ArtifactData, path: str | Path) -> ModelSpec:
    """The registered spec that rebuilds it, else one of its built-in builder family."""
    if data.name in MODELS.names():
        return MODELS.get(data.name)
    if data.arch in ARCH_BUILDERS:
        return ModelSpec(data.name, "", {}, builder=ARCH_BUILDERS[data.arch], family=data.arch)
    raise SrpruneError(f"{path} holds model '{data.name}' (architecture '{data.arch}'), which "
                       "is not registered here; install the plugin that provides it")


def _rebuild(data: ArtifactData, path: str | Path) -> SRModel:
    """The unpruned architecture, sized first on the meta device (no memory) when the
    builder can build there, so that a config asking for a giant network is refused."""
    spec = _spec(data, path)
    try:
        with torch.device("meta"):
            sizing: SRModel | None = spec.build(dict(data.config))
    except Exception:  # not every builder runs on meta; a bad config fails the real build too
        sizing = None
    if sizing is not None:
        n_params = _n_params(sizing)
        saved = sum(t.numel() for t in data.state_dict.values())
        if n_params > max(MAX_PARAMS, 1000 * saved):
            raise SrpruneError(f"{path}: damaged artifact: its config {brief(data.config, 120)} "
                               f"describes a network of {n_params:,} parameters for {saved:,} "
                               "saved values; refusing to build it")
    try:
        return spec.build(dict(data.config))
    except SrpruneError as exc:
        raise SrpruneError(f"{path}: damaged artifact: {_first_line(exc)[:300]}") from None
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            OverflowError, ZeroDivisionError, AssertionError, MemoryError) as exc:
        raise SrpruneError(f"{path}: damaged artifact: its config {brief(data.config, 120)} "
                           f"does not build '{spec.name}' ({_first_line(exc)[:160]})") from None


def _n_params(model: SRModel) -> int:
    nets = [model.net] + ([model.duals] if model.duals is not None else [])
    return sum(p.numel() for net in nets for p in net.parameters())


Shapes = tuple[list[tuple[int, ...]], list[tuple[int, ...]]]


def _output_shapes(model: SRModel) -> Shapes:
    """Output shapes of the primal net and of each dual net (fed as the DR loss feeds them)
    on a small ``PROBE_SIZE`` input; whatever the forward pass raises is passed on."""
    with torch.no_grad():
        outputs = model.outputs(torch.zeros(1, 3, *PROBE_SIZE))
        dual_shapes = []
        duals = model.duals
        if duals is not None and len(outputs) == len(duals) + 1:
            dual_shapes = [tuple(d(outputs[k + 1]).shape) for k, d in enumerate(duals)]
        elif duals is not None:
            x = outputs[-1]
            for k in reversed(range(len(duals))):
                x = duals[k](x)
                dual_shapes.append(tuple(x.shape))
    return [tuple(o.shape) for o in outputs], dual_shapes


def _reference_shapes(model: SRModel) -> Shapes | None:
    """The unpruned architecture's output shapes; None when it does not run on a
    ``PROBE_SIZE`` input (then the loaded model is not checked either)."""
    try:
        return _output_shapes(model)
    except Exception:  # a model that needs larger inputs, or cannot run here
        return None


def _check_shapes(model: SRModel, expected: Shapes, path: str | Path) -> None:
    """The loaded layers still fit each other: the model produces the outputs of its
    unpruned architecture (pruning changes widths inside, never what comes out)."""
    last: list[str] = []
    nets = [("", model.net)] + ([("dual net ", model.duals)] if model.duals is not None else [])
    hooks = [module.register_forward_pre_hook(
                 lambda _m, _i, label=prefix + name: last.append(label))
             for prefix, net in nets for name, module in net.named_modules()
             if name and next(module.children(), None) is None]
    try:
        got = _output_shapes(model)
    except Exception as exc:  # the layers no longer chain: a shape error of some kind
        layer = f" at layer {last[-1]}" if last else ""
        raise SrpruneError(f"{path}: damaged artifact: its layers do not fit together{layer} "
                           f"({_first_line(exc)[:160]})") from None
    finally:
        for hook in hooks:
            hook.remove()
    if got != expected:
        raise SrpruneError(f"{path}: damaged artifact: it produces outputs {got[0]} (dual "
                           f"nets {got[1]}), its architecture {expected[0]} ({expected[1]})")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
