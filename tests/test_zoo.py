"""The model front door and the zoo beyond DRN: spandrel models, detection, import paths,
blocked units (the per-architecture contract is tests/test_contracts.py)."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from srprune.cli import main
from srprune.errors import SrpruneError
from srprune.models import build_model, resolve_model
from srprune.models.spandrel_zoo import import_spandrel, pixel_range_adapted, spandrel_class
from srprune.prune.graph import SRGraph

# Parameter counts of spandrel's classes at the published configurations (reference facts:
# the same numbers as the reference implementations; Compact and PLKSR measured).
SPANDREL_COUNTS = {
    ("rcan", 4): 15_592_379, ("esrgan", 4): 16_697_987, ("safmn", 4): 239_520,
    ("safmn", 2): 227_820, ("omnisr", 4): 805_376, ("omnisr", 2): 784_604,
    ("swinir-light", 4): 929_628, ("compact", 4): 621_424, ("compact", 2): 600_652,
    ("plksr", 4): 5_551_088, ("span", 4): 498_208,  # SPAN: deploy form
    ("swinir-light", 2): 910_152, ("plksr", 2): 5_530_316,
    # spandrel's RCAN keeps its two MeanShift convs as parameters: BasicSR's 15,444,643 + 24
    ("rcan", 2): 15_444_667,
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(("name", "scale"), sorted(SPANDREL_COUNTS))
def test_spandrel_models_have_their_published_counts(name, scale):
    model = build_model(name, scale, pretrained=False)
    assert model.n_params == SPANDREL_COUNTS[(name, scale)]


def test_spandrel_models_map_the_pixel_range_and_never_touch_the_input():
    plain = spandrel_class("RCAN", "RCAN")(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16)
    adapted = pixel_range_adapted(type(plain))(scale=2, n_resgroups=1, n_resblocks=1,
                                               n_feats=16)
    adapted.load_state_dict(plain.state_dict())
    assert list(adapted.state_dict()) == list(plain.state_dict())
    x = torch.rand(1, 3, 8, 8)
    before = x.clone() * 255
    x255 = before.clone()
    with torch.no_grad():
        reference = plain.eval()(x.clone()) * 255  # spandrel's RCAN scales its input in place
        got = adapted.eval()(x255)
    assert torch.equal(x255, before)
    assert torch.allclose(got, reference, atol=1e-3)


def test_spandrel_import_leaves_a_broken_torchvision_as_it_was(monkeypatch):
    import srprune.models.spandrel_zoo as zoo

    broken = types.ModuleType("torchvision")
    monkeypatch.setitem(sys.modules, "torchvision", broken)
    monkeypatch.setattr(zoo, "_SPANDREL", None)
    monkeypatch.setattr(zoo, "_torchvision_works", lambda: False)
    for key in [k for k in sys.modules if k == "spandrel" or k.startswith("spandrel.")]:
        monkeypatch.delitem(sys.modules, key)
    assert import_spandrel().__name__ == "spandrel"
    assert sys.modules["torchvision"] is broken
    assert "torchvision.transforms.functional" not in sys.modules


SAVED = ["edsr-baseline", "msrresnet", "carn", "imdn", "rfdn", "rlfn", "pan", "fsrcnn",
         "espcn", "drn-t", "compact", "rcan", "safmn", "esrgan", "omnisr", "swinir-light",
         "plksr"]


@pytest.mark.parametrize("name", SAVED)
def test_a_state_dict_in_the_real_key_layout_is_detected_and_loads_back(name, tmp_path):
    spec_small = {"rcan": {"hyperparameters": {"n_resgroups": 1, "n_resblocks": 1}},
                  "esrgan": {"hyperparameters": {"num_blocks": 1}},
                  "plksr": {"hyperparameters": {"n_blocks": 2}},
                  "omnisr": {"hyperparameters": {"res_num": 1}},
                  "swinir-light": {"hyperparameters": {"depths": [2], "num_heads": [6]}}}
    from srprune.models import model_spec

    spec = model_spec(name)
    config = spec.config_for(4 if 4 in spec.scales else None)
    for key, value in spec_small.get(name, {}).items():
        config[key] = {**config[key], **value}
    torch.manual_seed(0)
    model = spec.build(config).eval()
    path = tmp_path / f"{name}.pth"
    torch.save({"params_ema": {f"module.{k}": v for k, v in model.net.state_dict().items()}},
               path)
    ambiguous = name in ("carn", "fsrcnn")  # the same weights at every scale
    if ambiguous:
        with pytest.raises(SrpruneError, match="alike: pass --scale"):
            resolve_model(str(path))
    found = resolve_model(str(path), model.scale if ambiguous else None)
    assert found.scale == model.scale
    assert found.meta["detected"]
    x = torch.rand(1, 3, 16, 16) * 255
    with torch.no_grad():
        assert float((found(x) - model(x)).abs().max()) < 1e-4


def test_safetensors_checkpoints_are_detected(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    model = build_model("pan", 4, pretrained=False)
    path = tmp_path / "pan.safetensors"
    safetensors.save_file(model.net.state_dict(), str(path))
    code, out, err = run("info", str(path), "--input-size", "16", "16", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["detected"] == "pan x4 (srprune)"
    assert info["architecture"]["config"] == {"scale": 4, "nf": 40, "unf": 24, "nb": 16}


def test_unknown_and_broken_checkpoints_are_one_line(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, path)
    code, _, err = run("info", str(path))
    assert code == 2 and "no architecture matches this checkpoint" in err
    assert "package.module:Class" in err and len(err.strip().splitlines()) == 1
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    code, _, err = run("info", str(truncated))
    assert code == 2 and "not a readable .safetensors file" in err


def test_a_checkpoint_at_the_wrong_scale_is_refused(tmp_path):
    model = build_model("msrresnet", 2, pretrained=False)
    path = tmp_path / "x2.pth"
    torch.save(model.net.state_dict(), path)
    code, _, err = run("info", str(path), "--scale", "4")
    assert code == 2 and "the weights are msrresnet at x2, but --scale 4 was given" in err


class TinyNet(nn.Module):
    """An import-path model: RGB in [0, 1], x2."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Conv2d(width, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.tail(torch.relu(self.body(torch.relu(self.head(x))))))


def test_import_paths_build_compress_and_round_trip(tmp_path, monkeypatch):
    module = types.ModuleType("srprune_test_tinynet")
    module.TinyNet = TinyNet
    monkeypatch.setitem(sys.modules, "srprune_test_tinynet", module)
    out = tmp_path / "tiny.srp"
    code, stdout, err = run("compress", "srprune_test_tinynet:TinyNet", "--arch-opt",
                            "width=16", "--ratio", "0.5", "--out", str(out), "--json")
    assert code == 0, err
    assert 0.4 < json.loads(stdout)["ratio_achieved"] < 0.6
    from srprune import SrpruneError, load

    with pytest.raises(SrpruneError, match="pass --trust-import"):
        load(out)  # a file never decides what is imported
    loaded = load(out, trust_import=True)
    assert loaded.scale == 2 and loaded.config["options"] == {"width": 16}
    assert loaded.net.body.out_channels < 16
    code, _, err = run("info", "srprune_test_tinynet:TinyNet", "--arch-opt", "depth=3")
    assert code == 2 and "has no option 'depth' (--arch-opt); its options: width" in err
    code, _, err = run("info", "no_such_module_xyz:Net")
    assert code == 2 and "module no_such_module_xyz is not importable" in err
    assert "PYTHONPATH" in err


def test_blocked_units_are_listed_with_their_reason():
    code, out, err = run("info", "carn-m", "--units", "--json", "--input-size", "16", "16")
    assert code == 0, err
    units = json.loads(out)["units"]
    blocked = [u for u in units if u["blocked"]]
    assert blocked and all("grouped convolution" in u["blocked"] for u in blocked)
    graph = SRGraph(build_model("carn-m", 4, pretrained=False).net, 4)
    assert {u.name for u in graph.blocked_units()} == {u["name"] for u in blocked}
    assert not {u.name for u in graph.units("all")} & {u["name"] for u in blocked}


def test_a_hard_coded_reshape_blocks_its_unit_not_the_model():
    class Reshaping(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(3, 8, 3, padding=1)
            self.mix = nn.Conv2d(8, 8, 1)
            self.tail = nn.Conv2d(8, 12, 3, padding=1)
            self.up = nn.PixelShuffle(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.mix(self.head(x))
            n, _, h, w = y.shape
            y = y.reshape(n, 2, 4, h, w).mean(1, keepdim=True).expand(n, 2, 4, h, w)
            return self.up(self.tail(y.reshape(n, 8, h, w)))

    graph = SRGraph(Reshaping(), 2)
    blocked = {u.name: u.blocked for u in graph.blocked_units()}
    assert "mix" in blocked and "pruning breaks the model" in blocked["mix"]
    assert all(u.name != "mix" for u in graph.units("all"))


def test_registered_names_take_builder_options():
    model = resolve_model("edsr-baseline", 2, arch_options={"n_resblocks": 2})
    assert model.n_params < build_model("edsr-baseline", 2, pretrained=False).n_params
    with pytest.raises(SrpruneError, match="has no option 'blocks'"):
        resolve_model("edsr-baseline", 2, arch_options={"blocks": 2})


@pytest.mark.parametrize(("name", "scale"), [("edsr-baseline", 2), ("compact", 3),
                                             ("pan", 4), ("rcan", 8)])
def test_the_papers_method_runs_on_zoo_models_without_dual_nets(name, scale):
    from srprune import compress
    from srprune.models import model_spec

    spec = model_spec(name)
    model = spec.build(spec.small_config(scale))
    assert model.duals is None
    result = compress(model, 0.3, criterion="dr", strategy="dr-search", scope="all",
                      data="builtin", preset="fast", calib_batches=2, calib_batch=2,
                      calib_patch=16, finetune_steps=2, finetune_batch=2, finetune_patch=16)
    assert abs(result.ratio_achieved - 0.3) < 0.05
    assert model.duals is not None  # fitted for the DR loss: one per x2 step, or one x3 step
    assert len(model.duals) == {2: 1, 3: 1, 4: 2, 8: 3}[scale]
    assert result.finetune["steps"] == 2 and torch.isfinite(
        torch.tensor(result.finetune["final_loss"]))
    x = torch.rand(1, 3, 16, 16) * 255
    assert model(x).shape == (1, 3, 16 * scale, 16 * scale)


def test_span_checkpoints_are_fused_to_the_deploy_form(tmp_path):
    hyper = {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 16, "upscale": 2}
    torch.manual_seed(0)
    training = spandrel_class("SPAN", "SPAN")(**hyper)  # the released (training) layout
    path = tmp_path / "span.pth"
    torch.save(training.state_dict(), path)
    model = resolve_model(str(path))
    assert model.meta["reparameterized"] == 20 and "deploy form" in model.meta["detected"]
    assert not any(type(m).__name__ == "Conv3XC" for m in model.net.modules())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        reference = training.eval()(x) * 255
        assert float((model(x * 255) - reference).abs().max()) < 1e-2
    from srprune import compress

    result = compress(model, 0.5, scope="all", input_size=(16, 16))
    assert result.summary()["reparameterized"] == 20
