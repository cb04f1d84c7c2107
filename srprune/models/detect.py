"""The model front door for files and import paths: what users bring, as an ``SRModel``.

A model argument that is not a registered name is, in this order:

1. an srprune artifact (``.srp``, or any file with the artifact header);
2. a checkpoint (``.pth``/``.pt`` state dict read with ``weights_only``, or ``.safetensors``)
   whose keys and shapes match one of srprune's own architectures exactly (EDSR, MSRResNet,
   CARN, IMDN, RFDN, RLFN, PAN, FSRCNN, ESPCN, DRN, ... at each registered scale);
3. a checkpoint that spandrel recognises (RCAN, ESRGAN, Compact, SPAN, SAFMN, OmniSR, SwinIR,
   PLKSR and the rest of its MIT architectures), rebuilt from its tensor shapes;
4. an import path ``package.module:Factory`` called with ``--arch-opt key=value`` options.

A checkpoint nobody recognises is one line saying what was tried and how to pass
``module:Class`` instead; a pickle that carries code is refused before anything else.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.io.checkpoint import read_checkpoint
from srprune.models.spandrel_zoo import (
    fuse_reparameterized,
    import_spandrel,
    pixel_range_adapted,
)
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.registry import MODELS

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "netG", "generator")
PREFIXES = ("module.", "netG.")  # not "model.": old ESRGAN keys start with it
PLAIN = (str, int, float, bool, type(None))


def is_import_path(spec: str) -> bool:
    """``package.module:Factory`` (and not a file that happens to exist)."""
    return bool(IMPORT_PATH.match(spec)) and not Path(spec).exists()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors (``.safetensors`` or ``weights_only`` torch), unwrapped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise SrpruneError(f"checkpoint not found: {path}")
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise SrpruneError("reading .safetensors needs the safetensors package: "
                               "pip install safetensors") from None
        try:
            data: Any = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            text = str(exc).strip().splitlines()
            raise SrpruneError(f"{path} is not a readable .safetensors file "
                               f"({text[0] if text else type(exc).__name__})") from None
    else:
        data = read_checkpoint(path)
    return unwrap_state_dict(data, path)


def unwrap_state_dict(data: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside common wrappers (``params_ema``, ``state_dict``, ...), with
    ``module.``-style prefixes removed."""
    for _ in range(3):
        if isinstance(data, dict) and not _all_tensors(data):
            inner = next((data[k] for k in WRAPPER_KEYS if isinstance(data.get(k), dict)), None)
            if inner is None:
                break
            data = inner
    if not isinstance(data, dict) or not data or not _all_tensors(data):
        raise SrpruneError(f"{path}: not a state dict (no dict of tensors inside)")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in data):
            data = {k[len(prefix):]: v for k, v in data.items()}
    return dict(data)


def _all_tensors(data: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def match_registered(state: dict[str, torch.Tensor],
                     scale: int | None = None) -> tuple[ModelSpec, int] | None:
    """The first registered model (name order) whose state dict has exactly these keys and
    shapes, and its scale. Candidates are built on the meta device (no memory, no
    arithmetic). Weights that fit several scales alike (a multi-scale CARN, FSRCNN's
    stride-only upsampler) need ``scale``."""
    want = _shapes(state)
    for name in MODELS.names():
        spec = MODELS.get(name)
        if not isinstance(spec, ModelSpec) or spec.family == "spandrel":
            continue
        fits = []
        for candidate in spec.scales:
            try:
                with torch.device("meta"):
                    model = spec.build(spec.config_for(candidate))
            except Exception:  # a builder that cannot run on meta: skip it
                continue
            if _shapes(model.net.state_dict()) == want:
                fits.append(candidate)
        if not fits:
            continue
        if scale is not None:
            if scale not in fits:
                raise SrpruneError(f"the weights are {name} at x{', x'.join(map(str, fits))}, "
                                   f"but --scale {scale} was given")
            return spec, scale
        if len(fits) > 1:
            raise SrpruneError(f"the weights fit {name} at x{', x'.join(map(str, fits))} "
                               "alike: pass --scale")
        return spec, fits[0]
    return None


def load_checkpoint_model(path: str | Path, scale: int | None = None) -> SRModel:
    """An ``SRModel`` with the checkpoint's weights, architecture detected (see module doc)."""
    state = read_state_dict(path)
    found = match_registered(state, scale)
    if found is not None:
        spec, scale = found
        model = spec.build(spec.config_for(scale))
        model.net.load_state_dict(state, strict=True)
        model.meta.update(weights=str(path), detected=f"{spec.name} x{scale} (srprune)")
        return model.eval()
    return _spandrel_model(state, path)


def _spandrel_model(state: dict[str, torch.Tensor], path: str | Path) -> SRModel:
    spandrel = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as exc:  # spandrel raises UnsupportedModelError and friends
        raise SrpruneError(
            f"{path}: no architecture matches this checkpoint (tried srprune's "
            f"{len(MODELS.names())} registered models and spandrel's: "
            f"{' '.join(str(exc).split())[:120] or type(exc).__name__}); pass the model as "
            "package.module:Class "
            "with --arch-opt key=value and --weights instead") from None
    inner = descriptor.model
    if getattr(descriptor, "input_channels", 3) != 3 or getattr(
            descriptor, "output_channels", 3) != 3:
        raise SrpruneError(f"{path}: a {descriptor.architecture.name} model with "
                           f"{descriptor.input_channels} input channels; srprune works on RGB")
    cls = type(inner)
    hyper = {k: v for k, v in getattr(inner, "hyperparameters", {}).items()
             if _plain(v)}
    net = pixel_range_adapted(cls)(**hyper)
    net.load_state_dict(inner.state_dict(), strict=True)
    fused = fuse_reparameterized(net.eval())
    package = cls.__module__.split(".")[2] if cls.__module__.startswith(
        "spandrel.architectures.") else ""
    model = SRModel(net=net, scale=int(descriptor.scale), arch="spandrel",
                    config={"package": package, "class_name": _exported_name(cls, package),
                            "scale": int(descriptor.scale), "hyperparameters": hyper},
                    name=f"spandrel:{descriptor.architecture.name}")
    model.meta.update(weights=str(path), detected=f"{descriptor.architecture.name} "
                      f"x{descriptor.scale} (spandrel)"
                      + (f"; {fused} re-parameterised blocks fused to the deploy form"
                         if fused else ""))
    if fused:
        model.meta["reparameterized"] = fused
    return model.eval()


def _exported_name(cls: type, package: str) -> str:
    """The name under which ``spandrel.architectures.<package>`` exports ``cls``."""
    module = importlib.import_module(f"spandrel.architectures.{package}")
    for name, value in vars(module).items():
        if value is cls:
            return name
    return cls.__name__


def _plain(value: Any) -> bool:
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def load_import_path(spec: str, scale: int | None, options: dict[str, Any]) -> SRModel:
    """``package.module:Factory(**options)`` as an ``SRModel``.

    ``Factory`` is an ``nn.Module`` class taking RGB in [0, 1] (the common convention;
    srprune maps its [0, 255] range around it, keeping the class's state-dict keys), or a
    function returning an ``SRModel`` (used as it is). The scale is ``--scale`` or found by
    one forward pass on a 16x16 input.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SrpruneError(f"cannot import {module_name} for {spec}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise SrpruneError(f"{spec}: {module_name} has no callable {attribute!r}")
    _check_options(factory, options, spec)
    if isinstance(factory, type) and issubclass(factory, nn.Module):
        try:
            net = pixel_range_adapted(factory)(**options)
        except (TypeError, ValueError) as exc:
            raise SrpruneError(f"{spec}: {exc}") from None
        model = SRModel(net=net, scale=scale or _probe_scale(net, spec), arch="import",
                        config={})
    else:
        try:
            model = factory(**options)
        except (TypeError, ValueError) as exc:
            raise SrpruneError(f"{spec}: {exc}") from None
        if not isinstance(model, SRModel):
            raise SrpruneError(f"{spec} returned a {type(model).__name__}; a factory must "
                               "return an srprune SRModel (or pass an nn.Module class)")
    if scale is not None and model.scale != scale:
        raise SrpruneError(f"{spec} builds a x{model.scale} model, but --scale {scale} was given")
    model.arch, model.name = "import", spec
    model.config = {"path": spec, "options": dict(options), "scale": model.scale}
    model.meta.setdefault("weights", "random")
    return model.eval()


def _check_options(factory: Any, options: dict[str, Any], spec: str) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in options:
        if key not in params:
            known = ", ".join(p for p in params if p != "self") or "none"
            raise SrpruneError(f"{spec} has no option {key!r} (--arch-opt); its options: "
                               f"{known}")


def _probe_scale(net: nn.Module, spec: str) -> int:
    x = torch.rand(1, 3, 16, 16) * 255
    try:
        with torch.no_grad():
            out = net.eval()(x)
    except Exception as exc:
        raise SrpruneError(f"{spec} fails on a 1x3x16x16 input: {exc}") from None
    out = out[-1] if isinstance(out, (list, tuple)) else out
    if out.dim() != 4 or out.shape[1] != 3 or out.shape[2] % 16:
        raise SrpruneError(f"{spec} is not an RGB SR model: a 16x16 input gave "
                           f"{tuple(out.shape)}")
    return out.shape[2] // 16


def build_imported(path: str, options: dict[str, Any], scale: int) -> SRModel:
    """Rebuild an import-path model from an artifact's config (imports the named module)."""
    return load_import_path(path, scale, dict(options))
