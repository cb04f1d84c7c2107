"""Registered reference models: the paper's DRN family and a CPU-sized member."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from srprune.models import spandrel_zoo
from srprune.models.archs import carn, edsr, espcn, fsrcnn, imdn, msrresnet, pan, rfdn, rlfn
from srprune.models.channel_config import CONFIG_DIR, read_widths, widths_from_lines
from srprune.models.drn import DRN, dual_models, full_widths
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.models.srnet import SRNet
from srprune.registry import MODELS


def build_drn(scale: int, n_feats: int, n_blocks: int, widths: list[int] | None = None,
              channel_config: str | None = None, duals: bool = True) -> SRModel:
    """Build a DRN (optionally with pruned inner widths) and its dual nets."""
    full = full_widths(scale, n_feats, n_blocks)
    if channel_config is not None:
        parsed = read_widths(channel_config, scale, n_feats, n_blocks)
    elif widths is not None:
        parsed = widths_from_lines([int(w) for w in widths], full)
    else:
        parsed = full
    net = DRN(scale, n_feats, n_blocks, parsed)
    config = {"scale": scale, "n_feats": n_feats, "n_blocks": n_blocks}
    if parsed != full:
        config["widths"] = parsed.as_lines()
    return SRModel(net=net, scale=scale, arch="drn", config=config,
                   duals=dual_models(scale, n_feats) if duals else None)


def build_srnet(scale: int, duals: bool = True, **config: Any) -> SRModel:
    """Build the configurable EDSR/RCAN-style net (dual nets for power-of-two scales)."""
    net = SRNet(scale, **config)
    power_of_two = scale >= 2 and scale & (scale - 1) == 0
    return SRModel(net=net, scale=scale, arch="srnet", config={"scale": scale, **config},
                   duals=dual_models(scale, 16) if duals and power_of_two else None)


# CI-sized builds with the same structures (ModelSpec.small): fewer blocks or groups
SMALL: dict[str, dict[str, Any]] = {
    "edsr": {"n_resblocks": 2}, "edsr-baseline": {"n_resblocks": 2},
    "msrresnet": {"num_block": 2},
    "rcan": {"hyperparameters": {"n_resgroups": 2, "n_resblocks": 2}},
    "esrgan": {"hyperparameters": {"num_blocks": 2}},
    "plksr": {"hyperparameters": {"n_blocks": 4}},
    "omnisr": {"hyperparameters": {"res_num": 1}},
    "swinir-light": {"hyperparameters": {"depths": [6, 6], "num_heads": [6, 6]}},
    "safmn": {"hyperparameters": {"n_blocks": 2}},
    "span": {"hyperparameters": {"feature_channels": 16}},
    "pan": {"nb": 4},
}
DRN_SMALL = {"n_blocks": 2, "channel_config": None}
ZOO_SPECS = [replace(spec, small=SMALL.get(spec.name, {}))
             for module in (edsr, msrresnet, carn, imdn, rfdn, rlfn, pan, fsrcnn, espcn)
             for spec in module.SPECS] + [replace(spec, small=SMALL.get(spec.name, {}))
                                          for spec in spandrel_zoo.SPECS]
# builder family -> builder: rebuilds artifacts of models made outside the registry
ARCH_BUILDERS = {"drn": build_drn, "srnet": build_srnet,
                 "spandrel-resized": spandrel_zoo.build_resized_spandrel,
                 **{spec.family: spec.builder for spec in ZOO_SPECS if spec.builder}}


def _register(spec: ModelSpec) -> None:
    if spec.family == "drn" and not spec.small:
        spec = replace(spec, small=dict(DRN_SMALL))
    MODELS.add(spec.name, spec, f"{__name__} (built-in)")


_DRN_S = {4: {"n_feats": 16, "n_blocks": 30}, 8: {"n_feats": 8, "n_blocks": 30}}
_DRN_L = {4: {"n_feats": 20, "n_blocks": 40}, 8: {"n_feats": 10, "n_blocks": 36}}
# CPU-sized member of the family (about 0.3 M parameters at x4), trained on 2 cores.
_DRN_T = {4: {"n_feats": 8, "n_blocks": 5}, 8: {"n_feats": 4, "n_blocks": 5}}

_SRNET_T = {"n_feats": 32, "n_blocks": 4, "act": "prelu", "attention": True,
            "concat_skip": True, "bicubic_skip": True}
_register(ModelSpec("srnet-t", "EDSR/RCAN-style test net: attention, concat skip, PReLU, "
                    "bicubic skip", {s: dict(_SRNET_T) for s in (2, 3, 4, 8)},
                    builder=build_srnet, family="srnet"))
_register(ModelSpec("drn-s", "DRN-S of the paper (4.8 M params at x4)", _DRN_S, build_drn, "drn"))
_register(ModelSpec("drn-l", "DRN-L of the paper (9.8 M params at x4)", _DRN_L, build_drn, "drn"))
_register(ModelSpec("drn-t", "CPU-sized DRN (n_feats 8, 5 blocks at x4)", _DRN_T, build_drn,
                    "drn"))
for _pct in (30, 50, 70):
    _register(ModelSpec(
        f"drn-s{_pct}",
        f"the authors' DRN-S compressed by {_pct} % (their published channel config)",
        {s: {**cfg, "channel_config": str(CONFIG_DIR / f"search_x{s}p0{_pct // 10}.txt")}
         for s, cfg in _DRN_S.items()},
        build_drn, "drn",
    ))
for _spec in ZOO_SPECS:
    _register(_spec)
