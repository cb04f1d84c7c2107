"""Model registry front door: build registered models, load weights, resolve names or files."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from srprune.errors import SrpruneError
from srprune.io.artifact import FORMAT as ARTIFACT_FORMAT
from srprune.io.checkpoint import read_checkpoint
from srprune.models.artifacts import is_artifact_path, load_artifact
from srprune.models.detect import (
    check_option_kind,
    expected_kind,
    load_checkpoint_model,
    load_import_path,
    read_state_dict,
    unwrap_state_dict,
)
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import FinalOutput, SRModel
from srprune.models.trust import TrustImport, is_import_path, srprune_factory
from srprune.registry import MODELS

__all__ = ["FinalOutput", "ModelSpec", "SRModel", "build_model", "load_weights", "model_spec",
           "names_a_file", "resolve_model", "srprune_factory"]


def model_spec(name: str) -> Any:
    """The registered spec of a model name (SrpruneError for unknown names)."""
    return MODELS.get(name)


def build_model(name: str, scale: int | None = None, weights: str | Path | None = None,
                pretrained: bool = True, **overrides: Any) -> SRModel:
    """Build a registered model at ``scale`` (its default when None).

    ``weights`` loads a checkpoint; otherwise the weights shipped with the package for this
    model and scale are loaded when ``pretrained`` is true and they exist.
    """
    spec = model_spec(name)
    model = spec.build({**spec.config_for(scale), **overrides})
    # shipped weights fit the published configuration only
    published = not overrides
    shipped = (spec.default_weights(model.scale)
               if pretrained and weights is None and published else None)
    if weights is not None or shipped is not None:
        load_weights(model, weights or shipped)
    model.meta["weights"] = (str(weights) if weights is not None
                             else "shipped" if shipped is not None else "random")
    return model


def load_weights(model: SRModel, path: str | Path) -> SRModel:
    """Load primal (and dual, when present) weights into ``model``; strict key matching.

    Accepts what releases ship (a plain or wrapped ``state_dict``: ``params_ema``,
    ``params``, ``state_dict``, ... with ``module.``/``model.`` prefixes, or
    ``.safetensors``; the same reader as checkpoint detection) or srprune's
    ``{"net": ..., "duals": [...]}`` weights file. Anything wrong with the file is a one-line
    ``SrpruneError`` naming it, and then nothing is loaded: every net is checked first.
    """
    if Path(path).suffix == ".safetensors":
        net_state, dual_states = read_state_dict(path), None
    else:
        data = read_checkpoint(path)
        if isinstance(data, dict) and data.get("format") == ARTIFACT_FORMAT:
            raise SrpruneError(f"{path} is an srprune artifact, not a weights file (expected "
                               "a state_dict): give it as the model instead")
        if isinstance(data, dict) and "net" in data and isinstance(data["net"], dict):
            net_state, dual_states = data["net"], data.get("duals")
        else:
            try:
                net_state = unwrap_state_dict(data, path)
            except SrpruneError:
                raise SrpruneError(f"{path}: not a weights file (no state_dict inside)") from None
            dual_states = None
    net_state = fit_prefix(net_state, model.net.state_dict())
    pairs = [(model.net, net_state, "")]
    if dual_states is not None and model.duals is not None:
        if not isinstance(dual_states, list) or not all(isinstance(s, dict)
                                                        for s in dual_states):
            raise SrpruneError(f"{path}: not a weights file ('duals' is not a list of "
                               "state_dicts)")
        if len(dual_states) != len(model.duals):
            raise SrpruneError(f"{path}: has {len(dual_states)} dual nets, model has "
                               f"{len(model.duals)}")
        pairs += [(dual, state, f"dual net {i}: ")
                  for i, (dual, state) in enumerate(zip(model.duals, dual_states))]
    for module, state, what in pairs:
        _check_state(module, state, path, what)
    for module, state, what in pairs:
        _load_state(module, state, path, what)
    return model


KEY_PREFIXES = ("module.", "model.", "net.", "netG.", "generator.", "_orig_mod.")


def fit_prefix(state: dict, own: dict) -> dict:
    """``state`` with the release wrapper's key prefix (``module.``, ``model.``, ...) removed
    when that makes its keys the model's; unchanged otherwise (the key check names what
    differs)."""
    if set(state) == set(own) or not all(isinstance(k, str) for k in state):
        return state  # (non-name keys: the key check names them)
    for _ in range(2):  # e.g. "module.model."
        for prefix in KEY_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                stripped = {k[len(prefix):]: v for k, v in state.items()}
                if set(stripped) == set(own):
                    return stripped
                if all(k.startswith(KEY_PREFIXES) for k in stripped):
                    state = stripped
                    break
        else:
            break
    return state


def _check_state(module: torch.nn.Module, state: dict, path: str | Path, what: str = "") -> None:
    """``state`` loads into ``module``: names and dense tensors, the same keys and shapes,
    floating point where the module has it; else one ``SrpruneError`` saying what differs."""
    from srprune.io.artifact import check_fits, check_state, show_key

    check_state(state, f"{path}: {what.rstrip(': ') or 'state_dict'}")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {show_key(unexpected[0])})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: file "
                         f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise SrpruneError(f"{path}: {what}weights do not match the model: " + "; ".join(parts))
    for key, tensor in own.items():
        check_fits(tensor, state[key], key, f"{path}: {what}weights")


def _load_state(module: torch.nn.Module, state: dict, path: str | Path, what: str = "") -> None:
    _check_state(module, state, path, what)
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SrpruneError(f"{path}: {what}weights do not load ({first})") from None


def names_a_file(spec: str) -> bool:
    """True when a model argument names a file; a registered name always wins over a file
    of the same name in the current folder."""
    return spec not in MODELS.names() and is_artifact_path(spec)


RESERVED_OPTIONS = {"scale": "--scale", "weights": "--weights", "pretrained": "--weights",
                    "channel_config": "--channels"}


def resolve_model(spec: str, scale: int | None = None, weights: str | Path | None = None,
                  channel_config: str | None = None,
                  arch_options: dict[str, Any] | None = None,
                  trust_import: TrustImport = None, arch: str | None = None) -> SRModel:
    """What a model argument names, as an ``SRModel`` (see :mod:`srprune.models.detect`):
    a registered name, an artifact, a checkpoint (architecture detected) or an import path.

    ``arch_options`` (``--arch-opt``) override a registered model's builder arguments or
    are the keyword arguments of an import path's factory. ``trust_import`` says which
    import paths an artifact may make srprune import (see :mod:`srprune.models.trust`).
    ``arch`` (``--arch``) names the architecture of an ncnn file that is not detected; its
    ``arch_options`` are then that architecture's builder arguments.
    """
    options = dict(arch_options or {})
    if spec not in MODELS.names() and is_import_path(spec):
        model = load_import_path(spec, scale, options)
    elif names_a_file(spec):
        if channel_config is not None:
            raise SrpruneError(f"--channels applies to registered DRN models, not to the "
                               f"file {spec} (its widths are stored in it)")
        if is_ncnn_path(spec):
            model = load_ncnn_model(spec, scale, arch=arch, arch_options=options)
        elif is_onnx_path(spec):
            model = load_onnx_file(spec, scale, arch=arch, arch_options=options)
        else:
            if arch is not None:
                raise SrpruneError(f"--arch applies to ncnn (.param/.bin) and ONNX files, not "
                                   f"to {spec}")
            if options:
                raise SrpruneError(f"--arch-opt applies to registered names, import paths and "
                                   f"ncnn or ONNX files with --arch, not to the file {spec}")
            model = _load_file(spec, scale, trust_import)
        if scale is not None and scale != model.scale:
            raise SrpruneError(f"{spec} is a x{model.scale} model, but --scale {scale} was given")
    else:
        if arch is not None:
            raise SrpruneError(f"--arch applies to ncnn (.param/.bin) and ONNX files, not to "
                               f"{spec}")
        for key, flag in RESERVED_OPTIONS.items():
            if key in options:
                raise SrpruneError(f"--arch-opt {key}=... is not a builder option; use {flag}")
        if channel_config:
            options["channel_config"] = channel_config
        check_builder_options(spec, scale, options)
        return build_model(spec, scale, weights=weights, **options)
    if weights is not None:
        load_weights(model, weights)
        model.meta["weights"] = str(weights)
    return model


def is_ncnn_path(spec: str) -> bool:
    """An ncnn model named by either half of its pair (``x.param`` with ``x.bin``)."""
    return Path(spec).suffix in (".param", ".bin")


def load_ncnn_model(path: str, scale: int | None, arch: str | None,
                    arch_options: dict[str, Any]) -> SRModel:
    """An ncnn pair as its architecture (:mod:`srprune.models.ncnn_source`)."""
    from srprune.models.ncnn_source import load_ncnn_model as load

    return load(path, scale, arch=arch, arch_options=arch_options or None)


def is_onnx_path(spec: str) -> bool:
    """An ONNX model: named ``.onnx``, or any file that parses as one."""
    file = Path(spec)
    return file.suffix.lower() == ".onnx" or (file.is_file() and _looks_like_onnx(file))


def load_onnx_file(path: str, scale: int | None, arch: str | None,
                   arch_options: dict[str, Any]) -> SRModel:
    """An ONNX file as its architecture (:mod:`srprune.models.onnx_source`)."""
    from srprune.models.onnx_source import load_onnx_model

    return load_onnx_model(path, scale, arch=arch, arch_options=arch_options or None)


def check_builder_options(name: str, scale: int | None, options: dict[str, Any]) -> None:
    """``--arch-opt`` values of a registered model are of the kind its published config
    has (``n_feats=abc`` is one line here, not an error from deep inside the builder)."""
    spec = model_spec(name)
    try:
        defaults = spec.config_for(scale)
    except SrpruneError:
        return  # the scale is refused by the build itself, with its own message
    for key, value in options.items():
        if key == "channel_config":
            continue
        check_option_kind(key, value, expected_kind(inspect.Parameter.empty,
                                                    defaults.get(key)), f"model '{name}'")


def _load_file(path: str, scale: int | None, trust_import: TrustImport = None) -> SRModel:
    """An artifact, or a checkpoint whose architecture is detected."""
    if Path(path).suffix != ".safetensors":
        data = read_checkpoint(path)
        if isinstance(data, dict) and data.get("format") == ARTIFACT_FORMAT:
            return load_artifact(path, trust_import)
    return load_checkpoint_model(path, scale)


ONNX_MAGIC = b"\x08"  # an ONNX ModelProto starts with field 1 (ir_version), a varint


def _looks_like_onnx(file: Path) -> bool:
    """An ONNX ModelProto (starts with its ir_version field and parses with a graph)."""
    try:
        with file.open("rb") as f:
            if f.read(1) != ONNX_MAGIC:
                return False
        import onnx

        proto = onnx.load(str(file), load_external_data=False)
    except Exception:  # not ONNX after all: the checkpoint reader names the problem
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0
