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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.io.artifact import check_state
from srprune.io.checkpoint import read_checkpoint
from srprune.models.spandrel_zoo import (
    functional_forwards,
    fuse_reparameterized,
    import_spandrel,
    pixel_range_adapted,
)
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.models.trust import check_artifact_target
from srprune.registry import MODELS

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "netG", "generator")
PREFIXES = ("module.", "netG.")  # not "model.": old ESRGAN keys start with it
PLAIN = (str, int, float, bool, type(None))


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
    state = unwrap_state_dict(data, path)
    check_state(state, str(path))
    return state


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
        fits = [candidate for candidate in spec.scales
                if _registered_shapes(name, spec, candidate) == want]
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


# (name, scale) -> (spec, its state-dict shapes or None): a meta build of every registered
# model costs seconds (DRN alone ~1 s per scale), so each is built once per process
_SHAPES: dict[tuple[str, int], tuple[ModelSpec, dict[str, tuple[int, ...]] | None]] = {}


def _registered_shapes(name: str, spec: ModelSpec,
                       scale: int) -> dict[str, tuple[int, ...]] | None:
    """The state-dict shapes of ``spec`` built at ``scale`` (None: it cannot build on meta);
    rebuilt when the name is registered again with another spec."""
    cached = _SHAPES.get((name, scale))
    if cached is not None and cached[0] is spec:
        return cached[1]
    try:
        with torch.device("meta"):
            shapes: dict[str, tuple[int, ...]] | None = _shapes(
                spec.build(spec.config_for(scale)).net.state_dict())
    except Exception:  # a builder that cannot run on meta: skip it
        shapes = None
    _SHAPES[(name, scale)] = (spec, shapes)
    return shapes


def match_inferred(state: dict[str, torch.Tensor], scale: int | None = None
                   ) -> tuple[ModelSpec, dict[str, Any], dict[str, torch.Tensor]] | None:
    """A registered family whose ``infer`` reads a config of any size from the tensor
    shapes (after its ``rename`` maps another project's key layout onto srprune's), and
    whose build at that config has exactly these keys and shapes: the spec, the config and
    the renamed state. Each family is tried once."""
    tried: set[str] = set()
    for name in MODELS.names():
        spec = MODELS.get(name)
        if not isinstance(spec, ModelSpec) or "infer" not in spec.extra \
                or spec.family in tried:
            continue
        tried.add(spec.family)
        renamed = spec.extra.get("rename", _same)(state)
        config = spec.extra["infer"](_shapes(renamed))
        if config is None:
            continue
        try:
            with torch.device("meta"):
                model = spec.build(dict(config))
        except Exception:  # shapes that fit no build of this family
            continue
        if _shapes(model.net.state_dict()) != _shapes(renamed):
            continue
        if scale is not None and config["scale"] != scale:
            raise SrpruneError(f"the weights are {spec.family} at x{config['scale']}, but "
                               f"--scale {scale} was given")
        return spec, config, renamed
    return None


def _same(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return state


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
    inferred = match_inferred(state, scale)
    if inferred is not None:
        spec, config, renamed = inferred
        model = spec.build(dict(config))
        model.net.load_state_dict(renamed, strict=True)
        layout = "" if renamed is state else ", another project's key layout"
        shown = ", ".join(f"{k}={v}" for k, v in config.items() if k != "scale")
        model.meta.update(weights=str(path), detected=f"{spec.family} x{config['scale']} "
                          f"({shown}; srprune{layout})")
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
             if plain_value(v)}
    net = pixel_range_adapted(cls)(**hyper)
    net.load_state_dict(inner.state_dict(), strict=True)
    fused = fuse_reparameterized(net.eval())
    functional_forwards(net)  # the same traceable forwards as the registered-name path
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


def plain_value(value: Any) -> bool:
    """A value a config may hold: a scalar, or lists/tuples/str-keyed dicts of them (never an
    object; AuraSR's ``style_network`` is such a dict)."""
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(plain_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_value(v) for k, v in value.items())
    return False


def load_import_path(spec: str, scale: int | None, options: dict[str, Any],
                     named_by_user: bool = True) -> SRModel:
    """``package.module:Factory(**options)`` as an ``SRModel``.

    ``Factory`` is an ``nn.Module`` class taking RGB in [0, 1] (the common convention;
    srprune maps its [0, 255] range around it, keeping the class's state-dict keys), or a
    function returning such an ``nn.Module`` (``build_model(opt)``-style code) or an
    ``SRModel`` (used as it is). What it returns is checked before use. The scale is found
    by one forward pass on a 16x16 input; a ``--scale`` that disagrees is refused.

    ``named_by_user`` is false when the path comes from a file (an artifact opened with
    ``--trust-import``): then only an ``nn.Module`` subclass or a function marked
    ``@srprune_factory`` may be called (see :mod:`srprune.models.trust`).
    """
    module_name, _, attribute = spec.partition(":")
    module = _import_module(module_name, spec)
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise SrpruneError(f"{spec}: {module_name} has no callable {attribute!r}")
    if not named_by_user:
        check_artifact_target(factory, spec)
        if not plain_value(list(options.values())):
            raise SrpruneError(f"{spec}: the artifact's options are not plain values")
    _check_options(factory, options, spec)
    try:
        made = factory(**options)
    except SrpruneError:
        raise
    except Exception as exc:  # the user's code may raise anything
        raise SrpruneError(f"{spec} raised {type(exc).__name__} when called with "
                           f"{options or 'no options'}: {_first_line(exc)}") from None
    if isinstance(made, SRModel):
        model = made
        probed = _probe_scale(lambda x: model.outputs(x)[-1], spec)
    elif isinstance(made, nn.Module):
        if not isinstance(factory, type):
            made.__class__ = pixel_range_adapted(type(made))
        else:
            made = _adapt_instance(made, factory)
        model = SRModel(net=made, scale=1, arch="import", config={})
        probed = _probe_scale(made.eval(), spec)
        model.scale = probed
    else:
        raise SrpruneError(f"{spec} returned a {type(made).__name__}; a factory must return "
                           "an nn.Module or an srprune SRModel")
    if model.scale != probed:
        raise SrpruneError(f"{spec} says x{model.scale}, but its output is x{probed}")
    if scale is not None and probed != scale:
        raise SrpruneError(f"{spec} builds a x{probed} model (its output on a 16x16 input), "
                           f"but --scale {scale} was given")
    model.arch, model.name = "import", spec
    model.config = {"path": spec, "options": dict(options), "scale": model.scale}
    model.meta.setdefault("weights", "random")
    return model.eval()


def _import_module(module_name: str, spec: str) -> Any:
    """Import the user's module; its own failures are named as such."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise SrpruneError(f"module {missing} is not importable for {spec}: add the folder "
                           f"that holds it to PYTHONPATH or pip install its package") from None
    except Exception as exc:  # the module's own code failed while importing
        raise SrpruneError(f"importing {module_name} for {spec} failed: "
                           f"{type(exc).__name__}: {_first_line(exc)}") from None


def _adapt_instance(net: nn.Module, cls: type) -> nn.Module:
    """An instance of ``cls`` re-classed to take and return [0, 255] (same state dict)."""
    net.__class__ = pixel_range_adapted(cls)
    return net


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _check_options(factory: Any, options: dict[str, Any], spec: str) -> None:
    """Every option is a parameter of ``factory`` and of the kind its annotation or
    default says (an int where the default is 8), named before anything is called."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in options:
            if key not in params:
                known = ", ".join(p for p in params if p != "self") or "none"
                raise SrpruneError(f"{spec} has no option {key!r} (--arch-opt); its "
                                   f"options: {known}")
    for key, value in options.items():
        param = params.get(key)
        if param is None:
            continue
        expected = expected_kind(param.annotation, param.default)
        check_option_kind(key, value, expected, spec)


KINDS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
         "list": (list, tuple), "tuple": (list, tuple), "dict": (dict,)}


def expected_kind(annotation: Any, default: Any) -> str | None:
    """The kind of value a parameter takes, from its annotation or its default (None:
    unknown, anything goes)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if annotation is not inspect.Parameter.empty and text:
        base = text.replace(" ", "").split("|")
        kinds = [k for k in base if k in KINDS]
        one = len(kinds) == 1 and all(k in KINDS or k == "None" for k in base)
        return kinds[0] if one else None
    if default is inspect.Parameter.empty or default is None:
        return None
    return type(default).__name__ if type(default).__name__ in KINDS else None


def check_option_kind(key: str, value: Any, expected: str | None, owner: str) -> None:
    """One line when an ``--arch-opt`` value is not of the kind the builder takes."""
    if expected is None or value is None:
        return
    ok = isinstance(value, KINDS[expected])
    if expected in ("int", "float") and isinstance(value, bool):
        ok = False
    if not ok:
        names = {"int": "an integer", "float": "a number", "bool": "true or false",
                 "str": "a string", "list": "a JSON list", "tuple": "a JSON list",
                 "dict": "a JSON object"}
        raise SrpruneError(f"{owner}: option {key} (--arch-opt) expects {names[expected]}, "
                           f"got {value!r}")


def _probe_scale(net: Any, spec: str) -> int:
    x = torch.rand(1, 3, 16, 16) * 255
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as exc:
        raise SrpruneError(f"{spec} fails on a 1x3x16x16 input: {_first_line(exc)}") from None
    out = out[-1] if isinstance(out, (list, tuple)) else out
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[1] != 3 \
            or out.shape[2] % 16 or out.shape[2] != out.shape[3] or out.shape[2] < 16:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SrpruneError(f"{spec} is not an RGB SR model: a 16x16 input gave {shape}")
    return out.shape[2] // 16


def build_imported(path: str, options: dict[str, Any], scale: int,
                   named_by_user: bool = False) -> SRModel:
    """Rebuild an import-path model from an artifact's config; the caller has checked that
    the user trusts it (:mod:`srprune.models.trust`)."""
    return load_import_path(path, scale, dict(options), named_by_user=named_by_user)
