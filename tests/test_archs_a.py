"""Zoo architectures, part A (EDSR, MSRResNet, FSRCNN, ESPCN, PAN): official state_dict
layouts, parameter counts of /work/shared/reference/sr_zoo.md, forward contract.

Parameter counts convention: ``sum(p.numel() for p in net.parameters())`` as sr_zoo.md
measures them. EDSR's MeanShift weights (24 numbers, fixed) are buffers here, so they stay in
the state_dict under the official names but are not counted, like the published 1,518 K /
43.1 M (sanghyun-son's code keeps them as frozen parameters: +24).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srprune.models.archs import edsr, espcn, fsrcnn, msrresnet, pan
from srprune.models.archs.fsrcnn import rgb_to_ycbcr, ycbcr_to_rgb
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel
from srprune.quality.metrics import rgb_to_y

SPECS: dict[str, ModelSpec] = {
    spec.name: spec for mod in (edsr, msrresnet, fsrcnn, espcn, pan) for spec in mod.SPECS
}
META = {"edsr"}  # too big to allocate just for counting


def _build(name: str, scale: int, meta: bool = False) -> SRModel:
    spec = SPECS[name]
    if meta:
        with torch.device("meta"):
            return spec.build(spec.config_for(scale))
    return spec.build(spec.config_for(scale))


def _n_params(model: SRModel) -> int:
    return sum(p.numel() for p in model.net.parameters())


# (name, scale): parameters in sr_zoo.md (x4 and x2 where it gives them; FSRCNN is
# scale-independent, the x3 rows follow from the same structure and were checked against the
# reference code).
COUNTS = {
    ("edsr-baseline", 4): 1_517_571, ("edsr-baseline", 2): 1_369_859,
    ("edsr", 4): 43_089_923, ("edsr", 2): 40_729_603,
    ("msrresnet", 4): 1_517_571, ("msrresnet", 2): 1_369_859,
    ("fsrcnn", 4): 12_809, ("fsrcnn", 2): 12_809,
    ("espcn", 4): 24_752, ("espcn", 2): 21_284,
    ("pan", 4): 272_419, ("pan", 2): 261_403,
}


@pytest.mark.parametrize(("name", "scale"), sorted(COUNTS))
def test_parameter_counts_match_sr_zoo(name, scale):
    model = _build(name, scale, meta=name in META)
    assert _n_params(model) == COUNTS[(name, scale)]
    assert model.n_params == COUNTS[(name, scale)]


def test_specs_names_scales_and_families():
    assert set(SPECS) == {"edsr-baseline", "edsr", "msrresnet", "fsrcnn", "espcn", "pan"}
    for name, spec in SPECS.items():
        assert spec.scales == [2, 3, 4], name
        assert spec.family == spec.builder.__module__.rsplit(".", 1)[1], name
    assert SPECS["edsr"].configs[4] == {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1}
    assert SPECS["edsr-baseline"].configs[4]["res_scale"] == 1.0


# Representative keys with their shapes, as in the official repositories' code.
OFFICIAL = {
    ("edsr-baseline", 4): (78, {
        "sub_mean.weight": (3, 3, 1, 1), "sub_mean.bias": (3,), "head.0.weight": (64, 3, 3, 3),
        "body.0.body.0.weight": (64, 64, 3, 3), "body.15.body.2.bias": (64,),
        "body.16.weight": (64, 64, 3, 3), "tail.0.0.weight": (256, 64, 3, 3),
        "tail.0.2.weight": (256, 64, 3, 3), "tail.1.weight": (3, 64, 3, 3),
        "add_mean.weight": (3, 3, 1, 1), "add_mean.bias": (3,)}),
    ("edsr-baseline", 3): (76, {"tail.0.0.weight": (576, 64, 3, 3), "tail.1.bias": (3,)}),
    ("edsr-baseline", 2): (76, {"tail.0.0.weight": (256, 64, 3, 3), "tail.1.bias": (3,)}),
    ("edsr", 4): (142, {
        "head.0.weight": (256, 3, 3, 3), "body.31.body.2.weight": (256, 256, 3, 3),
        "body.32.bias": (256,), "tail.0.2.weight": (1024, 256, 3, 3),
        "tail.1.weight": (3, 256, 3, 3), "sub_mean.bias": (3,)}),
    ("msrresnet", 4): (74, {
        "conv_first.weight": (64, 3, 3, 3), "body.0.conv1.weight": (64, 64, 3, 3),
        "body.15.conv2.bias": (64,), "upconv1.weight": (256, 64, 3, 3),
        "upconv2.weight": (256, 64, 3, 3), "conv_hr.weight": (64, 64, 3, 3),
        "conv_last.weight": (3, 64, 3, 3), "conv_last.bias": (3,)}),
    ("msrresnet", 3): (72, {"upconv1.weight": (576, 64, 3, 3), "conv_hr.bias": (64,)}),
    ("msrresnet", 2): (72, {"upconv1.weight": (256, 64, 3, 3)}),
    ("fsrcnn", 4): (23, {
        "first_part.0.weight": (56, 1, 5, 5), "first_part.1.weight": (56,),
        "mid_part.0.weight": (12, 56, 1, 1), "mid_part.1.weight": (12,),
        "mid_part.2.weight": (12, 12, 3, 3), "mid_part.10.weight": (56, 12, 1, 1),
        "mid_part.11.weight": (56,), "last_part.weight": (56, 1, 9, 9),
        "last_part.bias": (1,)}),
    ("espcn", 4): (6, {
        "first_part.0.weight": (64, 1, 5, 5), "first_part.2.weight": (32, 64, 3, 3),
        "last_part.0.weight": (16, 32, 3, 3), "last_part.0.bias": (16,)}),
    ("espcn", 3): (6, {"last_part.0.weight": (9, 32, 3, 3)}),
    ("pan", 4): (146, {
        "conv_first.weight": (40, 3, 3, 3), "SCPA_trunk.0.conv1_a.weight": (20, 40, 1, 1),
        "SCPA_trunk.0.conv1_b.weight": (20, 40, 1, 1), "SCPA_trunk.0.k1.0.weight": (20, 20, 3, 3),
        "SCPA_trunk.0.PAConv.k2.weight": (20, 20, 1, 1), "SCPA_trunk.0.PAConv.k2.bias": (20,),
        "SCPA_trunk.0.PAConv.k3.weight": (20, 20, 3, 3),
        "SCPA_trunk.15.PAConv.k4.weight": (20, 20, 3, 3),
        "SCPA_trunk.15.conv3.weight": (40, 40, 1, 1), "trunk_conv.weight": (40, 40, 3, 3),
        "upconv1.weight": (24, 40, 3, 3), "att1.conv.weight": (24, 24, 1, 1),
        "HRconv1.weight": (24, 24, 3, 3), "upconv2.weight": (24, 24, 3, 3),
        "att2.conv.bias": (24,), "HRconv2.weight": (24, 24, 3, 3),
        "conv_last.weight": (3, 24, 3, 3)}),
    ("pan", 2): (140, {"HRconv1.bias": (24,), "conv_last.bias": (3,)}),
}
ABSENT = {  # keys the official code only creates at other scales, or never
    ("msrresnet", 2): ["upconv2.weight"], ("pan", 2): ["upconv2.weight", "att2.conv.weight"],
    ("pan", 4): ["SCPA_trunk.0.k1.0.bias", "SCPA_trunk.0.PAConv.k3.bias",
                 "SCPA_trunk.0.conv3.bias"],
    ("edsr-baseline", 2): ["tail.0.2.weight"],
}


@pytest.mark.parametrize(("name", "scale"), sorted(OFFICIAL))
def test_state_dict_has_official_keys_and_shapes(name, scale):
    n_keys, keys = OFFICIAL[(name, scale)]
    state = _build(name, scale, meta=name in META).net.state_dict()
    assert len(state) == n_keys
    for key, shape in keys.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    for key in ABSENT.get((name, scale), []):
        assert key not in state, key


def test_edsr_mean_shift_is_the_official_constant():
    state = _build("edsr-baseline", 4).net.state_dict()
    eye = torch.eye(3).view(3, 3, 1, 1)
    mean = 255.0 * torch.tensor([0.4488, 0.4371, 0.4040])
    assert torch.equal(state["sub_mean.weight"], eye)
    assert torch.equal(state["add_mean.weight"], eye)
    assert torch.allclose(state["sub_mean.bias"], -mean)
    assert torch.allclose(state["add_mean.bias"], mean)


SMALL = [(n, s) for n in sorted(SPECS) if n not in META for s in SPECS[n].scales]


@pytest.mark.parametrize(("name", "scale"), SMALL)
def test_saved_state_dict_loads_back_strictly(name, scale, tmp_path):
    torch.manual_seed(0)
    source = _build(name, scale).net
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    target = _build(name, scale).net
    target.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key


ALL = [(n, s) for n in sorted(SPECS) for s in SPECS[n].scales]


@pytest.mark.parametrize(("name", "scale"), ALL)
def test_forward_shape_finite_and_input_untouched(name, scale):
    torch.manual_seed(0)
    model = _build(name, scale).eval()
    x = torch.rand(1, 3, 12, 12) * 255
    before = x.clone()
    with torch.no_grad():
        out = model(x)
    assert tuple(out.shape) == (1, 3, 12 * scale, 12 * scale)
    assert torch.isfinite(out).all()
    assert torch.equal(x, before)


def test_ycbcr_conversion_is_matlab_bt601_and_invertible():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64) * 255
    y, cb, cr = rgb_to_ycbcr(x)
    ref_y = rgb_to_y(x[0].permute(1, 2, 0).numpy())
    assert np.allclose(y[0, 0].numpy(), ref_y, atol=1e-9)
    white = torch.full((1, 3, 1, 1), 255.0, dtype=torch.float64)
    assert [round(float(c), 3) for c in rgb_to_ycbcr(white)] == [235.0, 128.0, 128.0]
    assert torch.allclose(ycbcr_to_rgb(y, cb, cr), x, atol=1e-9)


@pytest.mark.parametrize("name", ["fsrcnn", "espcn"])
def test_y_nets_keep_chroma_and_run_the_official_layers_on_y(name):
    """With the Y path replaced by a bicubic upsampling, the forward is a bicubic upsampling
    of the RGB image; the official layers see Y / 255 and their output is scaled by 255."""
    torch.manual_seed(0)
    net = _build(name, 3).net.eval()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64) * 255
    net.double()
    bicubic = torch.nn.functional.interpolate(x, scale_factor=3, mode="bicubic",
                                              align_corners=False)
    with torch.no_grad():
        net.y_forward = lambda y: torch.nn.functional.interpolate(  # type: ignore[method-assign]
            y, scale_factor=3, mode="bicubic", align_corners=False)
        assert torch.allclose(net(x), bicubic, atol=1e-8)
        seen = []
        net.y_forward = lambda y: (seen.append(y), torch.zeros(1, 1, 18, 18,  # type: ignore
                                                                dtype=y.dtype))[1]
        out = net(x)
    assert seen[0].shape == (1, 1, 6, 6)
    assert torch.allclose(seen[0] * 255, rgb_to_ycbcr(x)[0])
    assert torch.allclose(rgb_to_ycbcr(out)[0], torch.zeros_like(out[:, :1]), atol=1e-8)
