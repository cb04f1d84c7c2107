"""Every zoo architecture, saved the way its project publishes it, is detected, exact, and
pruned by the README command (``srprune compress FILE --ratio 0.5 --criterion l1``).

One row per architecture and release wrapper. Each row builds the net with its original
class and random weights, writes the file as the project's public release is written (the
wrapper is named beside each row), then checks:

* detection picks the architecture and its options (width, depth, scale, hyperparameters);
* the detected model's output equals the original class's output (bit for bit, except the
  BasicSR EDSR whose mean shift is other arithmetic: ``TOLERANCE``, measured);
* ``compress FILE --ratio 0.5 --criterion l1 --out X.srp`` through the CLI, with no other
  flag than ``--scale`` where the file holds several scales alike (CARN's multi-scale nets)
  and ``--json`` to read the report: exit 0, the ratio within ``REACH_MARGIN`` (the
  strategies' own tolerance), a widened scope said in a ``warning:`` line, and the ``.srp``
  re-opens with the reported parameter count and runs.

Original classes: spandrel's classes for the spandrel-backed architectures (spandrel copies
the authors' code; the raw class on [0, 1], without srprune's range adapter, deploy-form
fusion or traceable forwards), BasicSR's ``RRDBNet`` key layout for Real-ESRGAN's release
(keys renamed from spandrel's old-arch ESRGAN, the same function) and a statement of
BasicSR's ``EDSR`` below. srprune's own architectures (``srprune/models/archs``) are written
in their authors' key layouts and parameter counts (pinned by ``test_archs_a``/``_b`` against
the official keys); their classes are the original here, as the authors' code is not
vendored.

Sizes, to run in about a minute on two cores: srprune's own architectures at their published
configurations (detection matches registered configurations exactly), except EDSR (the
published 256-channel width, 2 blocks instead of 32; its detection reads any depth) and the
BasicSR EDSR (EDSR-M's 64 channels, 2 blocks instead of 16); spandrel architectures at
``ModelSpec.small`` (fewer blocks or groups, published widths; spandrel reads any depth),
except SPAN at its published configuration (its ``small`` is narrower) and Compact (no
``small``: 0.6 M parameters).
``benchmarks/release_files.py`` runs the published full configurations.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from srprune.cli import main
from srprune.errors import SrpruneError
from srprune.models import MODELS, resolve_model
from srprune.models.spandrel_zoo import spandrel_class
from srprune.prune.engine import REACH_MARGIN

State = dict[str, torch.Tensor]


def prefixed(prefix: str) -> Callable[[State], State]:
    return lambda s: {prefix + k: v for k, v in s.items()}


WRAPPERS: dict[str, Callable[[State], Any]] = {
    "plain": lambda s: s,
    "params": lambda s: {"params": s},
    "params_ema": lambda s: {"params_ema": s},
    "module": prefixed("module."),
    "state_dict-module": lambda s: {"state_dict": prefixed("module.")(s), "epoch": 300},
    "safetensors": lambda s: s,
}


def write_release(wrapper: str, state: State, folder: Path, stem: str) -> Path:
    """``state`` written as a release in ``wrapper`` (``.pth``, or ``.safetensors``)."""
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    data = WRAPPERS[wrapper](state)
    if wrapper == "safetensors":
        from safetensors.torch import save_file

        path = folder / f"{stem}.safetensors"
        save_file(data, str(path))
        return path
    path = folder / f"{stem}.pth"
    torch.save(data, path)
    return path


# --- original classes that srprune does not itself contain ---------------------------------

class BasicsrResBlock(nn.Module):
    """BasicSR's ``ResidualBlockNoBN`` (conv1, ReLU, conv2, residual scaling)."""

    def __init__(self, c: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class BasicsrEDSR(nn.Module):
    """BasicSR's EDSR (``basicsr/archs/edsr_arch.py`` layout): RGB in [0, 1], the DIV2K mean
    and ``img_range`` outside the state dict."""

    def __init__(self, num_feat: int, num_block: int, upscale: int,
                 res_scale: float = 1.0) -> None:
        super().__init__()
        self.img_range = 255.0
        self.mean = torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1)
        self.conv_first = nn.Conv2d(3, num_feat, 3, padding=1)
        self.body = nn.Sequential(*[BasicsrResBlock(num_feat, res_scale)
                                    for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        ups: list[nn.Module] = []
        if upscale == 3:
            ups += [nn.Conv2d(num_feat, 9 * num_feat, 3, padding=1), nn.PixelShuffle(3)]
        else:
            for _ in range(upscale.bit_length() - 1):
                ups += [nn.Conv2d(num_feat, 4 * num_feat, 3, padding=1), nn.PixelShuffle(2)]
        self.upsample = nn.Sequential(*ups)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(x)) / self.img_range + self.mean


def esrgan_new_arch_keys(old: State) -> State:
    """An old-arch ESRGAN state dict (``model.0``, ``model.1.sub.N.RDBr.convc.0``, ...) in
    BasicSR's ``RRDBNet`` keys, as Real-ESRGAN publishes it (the same function)."""
    blocks = 1 + max(int(m.group(1)) for k in old
                     if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k)))
    ups = sorted({int(m.group(1)) for k in old
                  if (m := re.match(r"model\.(\d+)\.", k)) and int(m.group(1)) >= 3})
    *upconvs, hr, last = ups
    names = {0: "conv_first", hr: "conv_hr", last: "conv_last",
             **{n: f"conv_up{i + 1}" for i, n in enumerate(upconvs)}}
    new: State = {}
    for key, value in old.items():
        if m := re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(\w+)", key):
            new[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif m := re.fullmatch(rf"model\.1\.sub\.{blocks}\.(\w+)", key):
            new[f"conv_body.{m[1]}"] = value
        else:
            index, _, kind = key[len("model."):].partition(".")
            new[f"{names[int(index)]}.{kind}"] = value
    assert len(new) == len(old)
    return new


# --- the rows ---------------------------------------------------------------------------------

@dataclass
class Release:
    """One architecture saved in one project's release wrapper."""

    name: str                      # row id
    arch: str                      # zoo name
    scale: int
    wrapper: str
    detected: str                  # what meta["detected"] starts with
    options: dict[str, Any]        # what the detected config must hold
    build: Callable[[], tuple[nn.Module, State, Callable[[torch.Tensor], torch.Tensor]]]
    flags: list[str] = field(default_factory=list)  # compress flags beyond the README's
    note: str = ""


def native(arch: str, scale: int, **overrides: Any) -> Callable[..., Any]:
    """srprune's own class for ``arch`` (the authors' key layout), [0, 255] in and out."""
    def build() -> tuple[nn.Module, State, Callable[[torch.Tensor], torch.Tensor]]:
        spec = MODELS.get(arch)
        net = spec.build({**spec.config_for(scale), **overrides}).net.eval()
        return net, net.state_dict(), net
    return build


def basicsr_edsr(num_feat: int, num_block: int, scale: int, res_scale: float) -> Callable:
    def build() -> tuple[nn.Module, State, Callable[[torch.Tensor], torch.Tensor]]:
        net = BasicsrEDSR(num_feat, num_block, scale, res_scale).eval()
        return net, net.state_dict(), lambda x: net(x / 255.0) * 255.0
    return build


def spandrel_original(arch: str, scale: int, full: bool,
                      keys: Callable[[State], State] = lambda s: s) -> Callable:
    """spandrel's own class of ``arch`` on [0, 1] (no srprune adapter), compared on the
    same [0, 255] -> [0, 1] mapping srprune applies."""
    def build() -> tuple[nn.Module, State, Callable[[torch.Tensor], torch.Tensor]]:
        config = spandrel_config(arch, scale, full)
        net = spandrel_class(config["package"], config["class_name"])(
            **config["hyperparameters"]).eval()
        return net, keys(net.state_dict()), lambda x: net(x / 255.0) * 255.0
    return build


def spandrel_config(arch: str, scale: int, full: bool) -> dict[str, Any]:
    """The published configuration, or ``ModelSpec.small`` (fewer blocks, the published
    width) where that is smaller; SPAN's small config is narrower (16 channels), so SPAN
    runs at its published 52 (0.4 M parameters) here too."""
    spec = MODELS.get(arch)
    return spec.config_for(scale) if full or arch in FULL_IN_TEST else spec.small_config(scale)


FULL_IN_TEST = {"span"}


def hyper(arch: str, scale: int, full: bool) -> dict[str, Any]:
    config = spandrel_config(arch, scale, full)
    return {"class_name": config["class_name"],
            "hyperparameters": dict(config["hyperparameters"])}


def releases(full: bool) -> list[Release]:
    """The release files: published full configurations (``full``) or the test's sizes."""
    edsr_blocks, edsr_m_blocks = (32, 16) if full else (2, 2)
    rows = [
        # sanghyun-son/EDSR-PyTorch: plain state dicts (edsr_x4-4f62e9ef.pt, ...)
        Release("edsr", "edsr", 2, "plain", "edsr x2 (",
                {"n_resblocks": edsr_blocks, "n_feats": 256, "res_scale": 0.1},
                native("edsr", 2, n_resblocks=edsr_blocks)),
        Release("edsr-baseline", "edsr-baseline", 4, "plain", "edsr-baseline x4 (srprune)",
                {"n_resblocks": 16, "n_feats": 64}, native("edsr-baseline", 4)),
        # a user's own DataParallel/Lightning training checkpoint of the same net
        Release("edsr-baseline-ddp", "edsr-baseline", 4, "state_dict-module",
                "edsr-baseline x4 (srprune)", {"n_resblocks": 16, "n_feats": 64},
                native("edsr-baseline", 4), note="training checkpoint, not a release"),
        # BasicSR model zoo: EDSR_Mx2 (64 channels, 16 blocks) as {'params'}, its own keys
        Release("edsr-basicsr", "edsr", 2, "params", "edsr x2 (",
                {"n_resblocks": edsr_m_blocks, "n_feats": 64, "res_scale": 1.0},
                basicsr_edsr(64, edsr_m_blocks, 2, 1.0)),
        # BasicSR model zoo: MSRResNet_x4 as {'params'}
        Release("msrresnet", "msrresnet", 4, "params", "msrresnet x4 (srprune)",
                {"num_feat": 64, "num_block": 16}, native("msrresnet", 4)),
        # nmhkahn/CARN-pytorch: plain multi-scale state dicts (carn.pth, carn_m.pth)
        Release("carn", "carn", 4, "plain", "carn x4 (srprune)",
                {"multi_scale": True, "mobile": False}, native("carn", 4), ["--scale", "4"]),
        Release("carn-m", "carn-m", 4, "plain", "carn-m x4 (srprune)",
                {"multi_scale": True, "mobile": True}, native("carn-m", 4), ["--scale", "4"]),
        # Zheng222/IMDN: state dicts saved from DataParallel (module. keys; test_IMDN strips)
        Release("imdn", "imdn", 4, "module", "imdn x4 (srprune)", {"scale": 4},
                native("imdn", 4)),
        # njulj/RFDN: plain state dict (RFDN_AIM.pth)
        Release("rfdn", "rfdn", 4, "plain", "rfdn x4 (srprune)", {"scale": 4},
                native("rfdn", 4)),
        # bytedance/RLFN: plain state dict; the paper's RLFN (52 channels, 6 blocks) and the
        # RLFN_Prune its test_demo.py loads (rlfn_ntire_x4.pth: 46 channels, 48 inside, 4)
        Release("rlfn", "rlfn", 4, "plain", "rlfn x4 (srprune)", {"feature_channels": 52},
                native("rlfn", 4)),
        Release("rlfn-prune", "rlfn", 4, "plain", "rlfn x4 (",
                {"feature_channels": 46, "mid_channels": 48, "n_blocks": 4},
                native("rlfn", 4, feature_channels=46, mid_channels=48, n_blocks=4)),
        # zhaohengyuan1/PAN (mmsr): plain state dict (PANx4_DF2K.pth)
        Release("pan", "pan", 4, "plain", "pan x4 (srprune)", {"nf": 40, "unf": 24},
                native("pan", 4)),
        # yjn870/FSRCNN-pytorch and ESPCN-pytorch: plain state dicts (fsrcnn_x4.pth, ...)
        Release("fsrcnn", "fsrcnn", 4, "plain", "fsrcnn x4 (srprune)", {"scale": 4},
                native("fsrcnn", 4), ["--scale", "4"]),
        Release("espcn", "espcn", 4, "plain", "espcn x4 (srprune)", {"scale": 4},
                native("espcn", 4)),
        # yulunzhang/RCAN: plain state dict (RCAN_BIX4.pt)
        Release("rcan", "rcan", 4, "plain", "RCAN x4 (spandrel)", hyper("rcan", 4, full),
                spandrel_original("rcan", 4, full)),
        # xinntao/ESRGAN: plain, old-arch keys (RRDB_ESRGAN_x4.pth); xinntao/Real-ESRGAN:
        # {'params_ema'} in BasicSR's RRDBNet keys (RealESRGAN_x4plus.pth)
        Release("esrgan", "esrgan", 4, "plain", "ESRGAN x4 (spandrel)",
                hyper("esrgan", 4, full), spandrel_original("esrgan", 4, full)),
        Release("esrgan-realesrgan", "esrgan", 4, "params_ema", "ESRGAN x4 (spandrel)",
                hyper("esrgan", 4, full),
                spandrel_original("esrgan", 4, full, esrgan_new_arch_keys)),
        # xinntao/Real-ESRGAN: {'params'} (realesr-general-x4v3.pth, realesr-animevideov3.pth)
        Release("compact", "compact", 4, "params", "RealESRGAN Compact x4 (spandrel)",
                hyper("compact", 4, full), spandrel_original("compact", 4, full)),
        # hongyuanyu/SPAN (BasicSR): {'params'} in the training form (Conv3XC branches);
        # OpenModelDB community models: .safetensors
        Release("span", "span", 4, "params", "SPAN x4 (spandrel)", hyper("span", 4, full),
                spandrel_original("span", 4, full)),
        Release("span-safetensors", "span", 4, "safetensors", "SPAN x4 (spandrel)",
                hyper("span", 4, full), spandrel_original("span", 4, full)),
        # sunny2109/SAFMN (BasicSR): {'params'}
        Release("safmn", "safmn", 4, "params", "SAFMN x4 (spandrel)", hyper("safmn", 4, full),
                spandrel_original("safmn", 4, full)),
        # Francis0625/Omni-SR: plain state dicts
        Release("omnisr", "omnisr", 4, "plain", "OmniSR x4 (spandrel)",
                hyper("omnisr", 4, full), spandrel_original("omnisr", 4, full)),
        # JingyunLiang/SwinIR: {'params'} (002_lightweightSR_DIV2K_s64w8_SwinIR-S_x4.pth)
        Release("swinir-light", "swinir-light", 4, "params", "SwinIR x4 (spandrel)",
                hyper("swinir-light", 4, full), spandrel_original("swinir-light", 4, full)),
        # dslisleedh/PLKSR (BasicSR): {'params_ema'}; OpenModelDB community: .safetensors
        Release("plksr", "plksr", 4, "params_ema", "PLKSR x4 (spandrel)",
                hyper("plksr", 4, full), spandrel_original("plksr", 4, full)),
        Release("plksr-safetensors", "plksr", 4, "safetensors", "PLKSR x4 (spandrel)",
                hyper("plksr", 4, full), spandrel_original("plksr", 4, full)),
    ]
    return rows


# row -> max abs error on [0, 255]; every other row is bit-exact. BasicSR's EDSR subtracts
# its mean in [0, 1] and scales, srprune's layout shifts by a 1x1 conv: 3.05e-5 measured.
TOLERANCE: dict[str, float] = {"edsr-basicsr": 1e-3}
ROWS = releases(full=False)


def check_detection(model: Any, row: Release) -> None:
    """The detected architecture and options are the row's."""
    assert model.scale == row.scale
    assert model.meta["detected"].startswith(row.detected), model.meta["detected"]
    config = model.config
    for key, value in row.options.items():
        if key == "hyperparameters":
            got = config["hyperparameters"]
            for name, want in value.items():
                assert name in got, f"{name} not detected"
                have = got[name]
                if isinstance(want, (list, tuple)):
                    want, have = list(want), list(have)
                assert have == want, f"{name}: detected {have!r}, built {want!r}"
        else:
            assert config.get(key) == value, f"{key}: detected {config.get(key)!r}, " \
                                             f"built {value!r}"


def max_error(model: Any, reference: Callable[[torch.Tensor], torch.Tensor],
              size: int = 16) -> float:
    """Largest difference on [0, 255] between the detected model and the original class."""
    torch.manual_seed(11)
    x = torch.rand(1, 3, size, size) * 255
    with torch.no_grad():
        want = reference(x.clone())
        got = model(x.clone())
    assert got.shape == want.shape == (1, 3, size * model.scale, size * model.scale)
    return float((got - want).abs().max())


def compress_file(path: Path, out: Path, flags: list[str]) -> tuple[int, dict, list[str], str]:
    """``srprune compress FILE --ratio 0.5 --criterion l1 --out OUT`` (+ ``flags``, ``--json``):
    exit status, the JSON report, the warning lines and the error text."""
    with warnings.catch_warnings(record=True) as caught:  # the CLI prints them as warning:
        warnings.simplefilter("always")
        result = CliRunner().invoke(main, ["compress", str(path), "--ratio", "0.5",
                                           "--criterion", "l1", "--out", str(out), *flags,
                                           "--json"])
    stderr = result.stderr
    said = [line for line in stderr.splitlines() if line.startswith("warning:")]
    said += [f"warning: {w.message}" for w in caught
             if "srprune" in w.filename or "srprune" in str(w.message) or "--" in str(w.message)]
    report = json.loads(result.stdout) if result.exit_code == 0 else {}
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, report, said, stderr.strip()


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_a_release_file_is_detected_exact_and_reaches_half(row, tmp_path):
    torch.manual_seed(5)
    _, state, reference = row.build()
    path = write_release(row.wrapper, state, tmp_path, row.name)

    if "--scale" in row.flags:  # the file serves several scales alike: the user names one
        with pytest.raises(SrpruneError, match="alike: pass --scale"):
            resolve_model(str(path))
    model = resolve_model(str(path), scale=row.scale if "--scale" in row.flags else None)
    check_detection(model, row)
    assert max_error(model, reference) <= TOLERANCE.get(row.name, 0.0)

    out = tmp_path / f"{row.name}.srp"
    code, report, said, errors = compress_file(path, out, row.flags)
    assert code == 0, errors
    assert report["params_before"] == model.n_params
    assert abs(report["ratio_achieved"] - 0.5) <= REACH_MARGIN, report
    if report["scope"] == "all":  # widened by the default scope: said, with the flag
        assert any("--scope all" in w for w in said), said
    pruned = resolve_model(str(out))
    assert pruned.n_params == report["params_after"]
    assert abs(1 - pruned.n_params / report["params_before"] - report["ratio_achieved"]) < 1e-4
    with torch.no_grad():
        y = pruned(torch.rand(1, 3, 16, 16) * 255)
    assert y.shape == (1, 3, 16 * row.scale, 16 * row.scale) and torch.isfinite(y).all()


def test_every_zoo_architecture_has_a_release_row():
    """The rows cover the whole zoo: a new architecture needs its release row."""
    from srprune.models.zoo import ZOO_SPECS

    assert {spec.name for spec in ZOO_SPECS} <= {row.arch for row in ROWS}
    assert set(WRAPPERS) == {row.wrapper for row in ROWS}


def test_a_wrong_row_fails_the_checks(tmp_path):
    """The checks can fail: another net's output, or another option, is caught."""
    row = next(r for r in ROWS if r.name == "rlfn-prune")
    torch.manual_seed(5)
    _, state, reference = row.build()
    model = resolve_model(str(write_release("plain", state, tmp_path, "w")))
    assert max_error(model, reference) == 0
    with pytest.raises(AssertionError):
        check_detection(model, Release(**{**row.__dict__, "options": {"n_blocks": 6}}))
    other = native("rlfn", 4, feature_channels=46, mid_channels=48, n_blocks=4)()[2]
    assert max_error(model, other) > 0
