"""Architectures built from spandrel's classes (MIT, PyPI ``spandrel``), and checkpoint detection.

spandrel reads SR checkpoints of many community architectures and rebuilds them from tensor
shapes. Two facts shape this adapter:

* ``import spandrel`` imports torchvision (two non-SR architectures use it). Where torchvision
  is missing, or present but broken (a CUDA-linked wheel beside a CPU torch raises
  ``RuntimeError: operator torchvision::nms does not exist``), :func:`import_spandrel` puts a
  stub ``torchvision`` in ``sys.modules`` for the duration of that one import, then puts back
  exactly what was there before: the rest of the process sees no change. A working torchvision
  is used as it is.
* spandrel's models take RGB in [0, 1], and its RCAN scales its input in place. srprune's nets
  take [0, 255]: :func:`pixel_range_adapted` subclasses a spandrel class so that ``forward``
  maps the range on a new tensor (the caller's input is never written). The subclass adds no
  parameter, so state-dict keys stay spandrel's (and the official repositories').
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srprune.errors import SrpruneError
from srprune.models.spandrel_forwards import FORWARDS as _FUNCTIONAL_FORWARDS
from srprune.models.spandrel_forwards import PIXEL_RANGE
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

INSTALL_HINT = ("pip install --no-deps spandrel && pip install safetensors einops "
                "typing_extensions (--no-deps keeps your torch; see README)")
_SPANDREL: types.ModuleType | None = None


def _torchvision_works() -> bool:
    try:
        importlib.import_module("torchvision")
        return True
    except Exception:  # ImportError, or RuntimeError from a CUDA-linked wheel on CPU torch
        return False


def _stub_torchvision() -> dict[str, types.ModuleType]:
    """Minimal torchvision modules: what spandrel's imports name, failing if ever called."""

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise SrpruneError("this spandrel architecture needs a working torchvision")

    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = type("InterpolationMode", (), {})  # type: ignore[attr-defined]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    return {"torchvision": root, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


def import_spandrel() -> types.ModuleType:
    """``import spandrel``, with torchvision stubbed only during the import if it is unusable."""
    global _SPANDREL
    if _SPANDREL is not None:
        return _SPANDREL
    if importlib.util.find_spec("spandrel") is None:
        raise SrpruneError(f"spandrel is not installed: {INSTALL_HINT}")
    if _torchvision_works():
        _SPANDREL = importlib.import_module("spandrel")
        return _SPANDREL
    saved = {k: v for k, v in sys.modules.items()
             if k == "torchvision" or k.startswith("torchvision.")}
    for key in saved:
        del sys.modules[key]
    stubs = _stub_torchvision()
    sys.modules.update(stubs)
    try:
        _SPANDREL = importlib.import_module("spandrel")
    finally:
        for key in stubs:
            sys.modules.pop(key, None)
        sys.modules.update(saved)
    return _SPANDREL


_ADAPTED: dict[type, type] = {}


def pixel_range_adapted(cls: type[nn.Module]) -> type[nn.Module]:
    """A subclass of a spandrel architecture taking and returning RGB in [0, 255]."""
    if cls not in _ADAPTED:
        def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return cls.forward(self, x / 255.0) * 255.0

        _ADAPTED[cls] = type(cls.__name__, (cls,), {
            "forward": forward, "__module__": __name__, PIXEL_RANGE: True,
            "__doc__": f"spandrel's {cls.__name__} on RGB in [0, 255]."})
    return _ADAPTED[cls]


# registered name -> (spandrel architecture package, class name, kwargs per scale)
SPANDREL_ARCHS: dict[str, tuple[str, str, Callable[[int], dict[str, Any]]]] = {
    "rcan": ("RCAN", "RCAN", lambda s: {"scale": s, "n_resgroups": 10, "n_resblocks": 20,
                                         "n_feats": 64}),
    "esrgan": ("ESRGAN", "ESRGAN", lambda s: {"in_nc": 3, "out_nc": 3, "num_filters": 64,
                                              "num_blocks": 23, "scale": s}),
    "compact": ("Compact", "Compact", lambda s: {"num_in_ch": 3, "num_out_ch": 3,
                                                 "num_feat": 64, "num_conv": 16, "upscale": s,
                                                 "act_type": "prelu"}),
    "span": ("SPAN", "SPAN", lambda s: {"num_in_ch": 3, "num_out_ch": 3,
                                        "feature_channels": 52 if s == 4 else 48,
                                        "upscale": s}),
    "safmn": ("SAFMN", "SAFMN", lambda s: {"dim": 36, "n_blocks": 8, "ffn_scale": 2.0,
                                           "upscaling_factor": s}),
    "omnisr": ("OmniSR", "OmniSR", lambda s: {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64,
                                              "block_num": 1, "pe": True, "window_size": 8,
                                              "res_num": 5, "up_scale": s, "bias": True}),
    "swinir-light": ("SwinIR", "SwinIR", lambda s: {
        "upscale": s, "img_size": 64, "window_size": 8, "img_range": 1.0,
        "depths": [6, 6, 6, 6], "embed_dim": 60, "num_heads": [6, 6, 6, 6], "mlp_ratio": 2.0,
        "upsampler": "pixelshuffledirect", "resi_connection": "1conv"}),
    "plksr": ("PLKSR", "PLKSR", lambda s: {"dim": 64, "n_blocks": 28, "upscaling_factor": s}),
}
SCALES = {"rcan": (2, 3, 4, 8), "esrgan": (2, 4), "compact": (2, 3, 4), "span": (2, 4),
          "safmn": (2, 3, 4), "omnisr": (2, 3, 4), "swinir-light": (2, 3, 4),
          "plksr": (2, 3, 4)}
DESCRIPTIONS = {
    "rcan": "RCAN (10 groups x 20 blocks, 64), spandrel",
    "esrgan": "ESRGAN RRDBNet (23 blocks, 64, growth 32), spandrel",
    "compact": "Real-ESRGAN SRVGGNetCompact (64, 16 convs), spandrel",
    "span": "SPAN (52 channels at x4, 48 at x2; deploy form: fused Conv3XC), spandrel",
    "safmn": "SAFMN (36 channels, 8 blocks), spandrel",
    "omnisr": "OmniSR (64, 5 groups), spandrel",
    "swinir-light": "SwinIR-light (60 dim, 4 RSTB x 6, window 8), spandrel",
    "plksr": "PLKSR (64, 28 blocks), spandrel",
}


def spandrel_class(package: str, class_name: str) -> type[nn.Module]:
    """A class from ``spandrel.architectures.<package>`` (only spandrel's own)."""
    if not (isinstance(package, str) and package.isidentifier()
            and isinstance(class_name, str) and class_name.isidentifier()):
        raise SrpruneError(f"spandrel has no architecture {brief_name(package)}."
                           f"{brief_name(class_name)}")
    import_spandrel()
    if importlib.util.find_spec(f"spandrel.architectures.{package}") is None:
        raise SrpruneError(f"spandrel has no architecture package {package}")
    module = importlib.import_module(f"spandrel.architectures.{package}")
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)
            and cls.__module__.startswith("spandrel.architectures.")):
        raise SrpruneError(f"spandrel has no architecture class {package}.{class_name}")
    return cls


def brief_name(value: object) -> str:
    """A name read from a file, shortened for an error line."""
    text = repr(value) if not isinstance(value, str) else value
    return text[:40] + ("..." if len(text) > 40 else "")


def fuse_reparameterized(net: nn.Module) -> int:
    """Replace every re-parameterisable block (SPAN's ``Conv3XC``: 1x1 -> 3x3 -> 1x1 plus a
    1x1 skip, fused into one 3x3 conv at inference) by its fused conv; returns how many.

    In eval mode such a block rebuilds its fused conv from the training branches at every
    call, so pruning the fused conv alone would be silently undone: srprune prunes, exports
    and fine-tunes the deploy form. The result computes the same function (to float error).
    """
    fused = 0
    for name, module in list(net.named_modules()):
        if type(module).__name__ != "Conv3XC" or not hasattr(module, "eval_conv"):
            continue
        module.update_params()
        conv = module.eval_conv
        for p in conv.parameters():
            p.requires_grad_(True)
        replacement: nn.Module = conv if not getattr(module, "has_relu", False) else (
            nn.Sequential(conv, nn.LeakyReLU(0.05)))
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, child, replacement)
        fused += 1
    return fused


_FUNCTIONAL: dict[type, type] = {}


def _spandrel_base(cls: type) -> type | None:
    """The spandrel class behind ``cls`` (itself, or the one srprune subclassed), or None."""
    return next((k for k in cls.__mro__ if k.__module__.startswith("spandrel.")), None)


def functional_forwards(net: nn.Module) -> int:
    """Switch the blocks of :data:`_FUNCTIONAL_FORWARDS` (see
    :mod:`srprune.models.spandrel_forwards`) to srprune's forward, the state dict and module
    tree unchanged; returns how many.

    A spandrel class is switched, and so is srprune's own subclass of one (the [0, 255] net of
    :func:`pixel_range_adapted`): whole-net forwards (MMRealSR, IPT, GRL, Real-CUGAN) replace
    the root net's forward and map the pixel range themselves. Checkpoints and registered
    names both come through here, so both build the same traceable model.
    """
    switched = 0
    for module in net.modules():
        cls = type(module)
        if any(k in _FUNCTIONAL.values() for k in cls.__mro__):
            continue  # switched already (or srprune subclassed a switched class)
        forward = _FUNCTIONAL_FORWARDS.get(cls.__name__)
        if forward is None or _spandrel_base(cls) is None:
            continue
        if cls not in _FUNCTIONAL:
            _FUNCTIONAL[cls] = type(cls.__name__, (cls,), {
                "forward": forward, "__module__": __name__})
        module.__class__ = _FUNCTIONAL[cls]
        switched += 1
    return switched


def build_spandrel(package: str, class_name: str, scale: int,
                   hyperparameters: dict[str, Any]) -> SRModel:
    """One spandrel architecture as an ``SRModel`` on [0, 255] (random weights), in its
    deploy form (:func:`fuse_reparameterized`)."""
    cls = pixel_range_adapted(spandrel_class(package, class_name))
    try:
        with warnings.catch_warnings():  # torch's notice about spandrel's own meshgrid calls
            warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
            net = cls(**hyperparameters)
    except (TypeError, ValueError, AssertionError) as exc:
        raise SrpruneError(f"spandrel {class_name}: bad hyperparameters: {exc}") from None
    model = SRModel(net=net, scale=scale, arch="spandrel",
                    config={"package": package, "class_name": class_name, "scale": scale,
                            "hyperparameters": dict(hyperparameters)})
    fused = fuse_reparameterized(net.eval())
    functional_forwards(net)
    if fused:
        model.meta["reparameterized"] = fused
    return model


class ResizedOutput(nn.Module):
    """A net whose output is resized by a fixed factor: the ncnn files of Real-ESRGAN's
    animevideov3 at x2 and x3 run the x4 net, then downscale (bicubic), as ncnn does."""

    def __init__(self, net: nn.Module, scale: int, net_scale: int, mode: str) -> None:
        super().__init__()
        self.net, self.scale, self.net_scale, self.mode = net, scale, net_scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        if self.mode == "nearest":
            return F.interpolate(out, size=size, mode="nearest")
        return F.interpolate(out, size=size, mode=self.mode, align_corners=False)


RESIZE_MODES = ("bicubic", "bilinear", "nearest")


def build_resized_spandrel(package: str, class_name: str, scale: int,
                           hyperparameters: dict[str, Any], resize_from: int,
                           resize_mode: str = "bicubic") -> SRModel:
    """A spandrel net at x``resize_from`` whose output is resized to x``scale`` (the
    ``spandrel-resized`` builder family: artifacts of such models rebuild from data)."""
    if resize_mode not in RESIZE_MODES or not isinstance(resize_from, int) \
            or isinstance(resize_from, bool) or not 1 <= resize_from <= 16:
        raise SrpruneError(f"bad output resize: x{resize_from} by {resize_mode!r}")
    inner = build_spandrel(package, class_name, resize_from, hyperparameters)
    model = SRModel(net=ResizedOutput(inner.net, scale, resize_from, resize_mode), scale=scale,
                    arch="spandrel-resized",
                    config={"package": package, "class_name": class_name, "scale": scale,
                            "hyperparameters": dict(hyperparameters),
                            "resize_from": resize_from, "resize_mode": resize_mode})
    if inner.meta.get("reparameterized"):
        model.meta["reparameterized"] = inner.meta["reparameterized"]
    return model


def _spec(name: str) -> ModelSpec:
    package, class_name, kwargs = SPANDREL_ARCHS[name]
    configs = {s: {"package": package, "class_name": class_name,
                   "hyperparameters": kwargs(s)} for s in SCALES[name]}
    return ModelSpec(name, DESCRIPTIONS[name], configs, builder=build_spandrel,
                     family="spandrel", extra={"source": "spandrel"})


SPECS = [_spec(name) for name in SPANDREL_ARCHS]
