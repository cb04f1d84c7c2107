"""Zoo architectures CARN, CARN-M, IMDN, RFDN and RLFN: parameter counts of the reference
implementations (docs: shared/reference/sr_zoo.md), official state_dict keys, strict round trips,
output shapes in the [0, 255] pipeline convention."""

from __future__ import annotations

import io

import pytest
import torch

from srprune.models.archs import carn, imdn, rfdn, rlfn
from srprune.models.spec import ModelSpec
from srprune.models.srmodel import SRModel

SPECS: dict[str, ModelSpec] = {
    spec.name: spec for mod in (carn, imdn, rfdn, rlfn) for spec in mod.SPECS
}
REGISTERED = [(name, s) for name, spec in SPECS.items() for s in spec.scales]
ESA_MIN = {"rfdn": rfdn.MIN_INPUT, "rlfn": rlfn.MIN_INPUT}  # ESA's 7x7 max-pool after stride 2


def build(name: str, scale: int) -> SRModel:
    spec = SPECS[name]
    return spec.build(spec.config_for(scale))


def test_specs_names_scales_and_families():
    assert {n: s.scales for n, s in SPECS.items()} == {
        "carn": [2, 3, 4], "carn-m": [2, 3, 4], "imdn": [2, 3, 4], "rfdn": [4],
        "rlfn": [2, 3, 4]}
    assert {n: s.family for n, s in SPECS.items()} == {
        "carn": "carn", "carn-m": "carn", "imdn": "imdn", "rfdn": "rfdn", "rlfn": "rlfn"}
    model = build("carn-m", 3)
    assert (model.name, model.scale, model.arch, model.duals) == ("carn-m", 3, "carn", None)


# Counted on the reference implementations with random weights (sr_zoo.md). CARN / CARN-M are
# the published multi-scale nets: the same count at every scale (all three upsamplers kept),
# including the 24 frozen mean-shift parameters, as the reference counts them.
COUNTS = [("carn", 4, 1_591_963), ("carn", 2, 1_591_963), ("carn-m", 4, 414_811),
          ("imdn", 4, 715_176), ("imdn", 2, 694_404), ("rfdn", 4, 433_448),
          ("rlfn", 4, 543_740), ("rlfn", 2, 526_856)]


@pytest.mark.parametrize(("name", "scale", "count"), COUNTS)
def test_parameter_counts_match_reference(name, scale, count):
    assert build(name, scale).n_params == count


def test_carn_single_scale_build_count_and_keys():
    net = carn.build_carn(4, multi_scale=False).net
    assert sum(p.numel() for p in net.parameters()) == 1_111_899
    keys = net.state_dict().keys()
    assert {"upsample.up.body.0.weight", "upsample.up.body.3.weight"} <= set(keys)
    assert not any(k.startswith("upsample.up2") for k in keys)


# Representative keys of the official repositories (read from their model sources).
OFFICIAL_KEYS = {
    "carn": (76, [
        "sub_mean.shifter.weight", "sub_mean.shifter.bias", "add_mean.shifter.bias",
        "entry.weight", "b1.b1.body.0.weight", "b1.b1.body.2.bias", "b2.b3.body.2.weight",
        "b3.c1.body.0.weight", "b3.c3.body.0.bias", "c1.body.0.weight", "c3.body.0.weight",
        "upsample.up2.body.0.weight", "upsample.up3.body.0.weight",
        "upsample.up4.body.0.weight", "upsample.up4.body.3.bias", "exit.weight", "exit.bias"]),
    "carn-m": (58, [
        "sub_mean.shifter.weight", "entry.weight", "b1.b1.body.0.weight",
        "b1.b1.body.2.weight", "b1.b1.body.4.weight", "b2.c2.body.0.weight",
        "b3.c3.body.0.bias", "c2.body.0.weight", "upsample.up2.body.0.weight",
        "upsample.up3.body.0.bias", "upsample.up4.body.3.weight", "exit.weight",
        "add_mean.shifter.weight"]),
    "imdn": (92, [
        "fea_conv.weight", "IMDB1.c1.weight", "IMDB1.c2.bias", "IMDB3.c3.weight",
        "IMDB4.c4.weight", "IMDB6.c5.weight", "IMDB1.cca.conv_du.0.weight",
        "IMDB6.cca.conv_du.2.bias", "c.0.weight", "c.0.bias", "LR_conv.weight",
        "upsampler.0.weight", "upsampler.0.bias"]),
    "rfdn": (128, [
        "fea_conv.weight", "B1.c1_d.weight", "B1.c1_r.weight", "B2.c2_d.bias",
        "B2.c2_r.weight", "B3.c3_d.weight", "B3.c3_r.bias", "B4.c4.weight", "B4.c5.weight",
        "B1.esa.conv1.weight", "B1.esa.conv_f.weight", "B2.esa.conv_max.weight",
        "B3.esa.conv2.weight", "B3.esa.conv3.weight", "B4.esa.conv3_.weight",
        "B4.esa.conv4.bias", "c.0.weight", "LR_conv.weight", "upsampler.0.weight"]),
    "rlfn": (114, [
        "conv_1.weight", "block_1.c1_r.weight", "block_2.c2_r.bias", "block_3.c3_r.weight",
        "block_4.c5.weight", "block_5.esa.conv1.weight", "block_5.esa.conv_f.weight",
        "block_6.esa.conv2.weight", "block_6.esa.conv3.bias", "block_6.esa.conv4.weight",
        "conv_2.weight", "upsampler.0.weight"]),
}
SHAPES = {  # a few shapes that pin the layouts (grouped convs, splits, ESA widths, upsamplers)
    ("carn", 4): {"upsample.up3.body.0.weight": (576, 64, 3, 3), "b1.c3.body.0.weight":
                  (64, 256, 1, 1), "sub_mean.shifter.weight": (3, 3, 1, 1)},
    ("carn-m", 4): {"b1.b1.body.0.weight": (64, 16, 3, 3), "b1.b1.body.4.weight":
                    (64, 64, 1, 1), "upsample.up4.body.0.weight": (256, 16, 3, 3)},
    ("imdn", 2): {"IMDB1.c2.weight": (64, 48, 3, 3), "IMDB1.c4.weight": (16, 48, 3, 3),
                  "IMDB1.cca.conv_du.0.weight": (4, 64, 1, 1), "c.0.weight": (64, 384, 1, 1),
                  "upsampler.0.weight": (12, 64, 3, 3)},
    ("rfdn", 4): {"B1.c1_d.weight": (25, 50, 1, 1), "B1.c5.weight": (50, 100, 1, 1),
                  "B1.esa.conv1.weight": (12, 50, 1, 1), "upsampler.0.weight": (48, 50, 3, 3)},
    ("rlfn", 4): {"block_1.esa.conv1.weight": (16, 52, 1, 1),
                  "block_1.esa.conv4.weight": (52, 16, 1, 1),
                  "upsampler.0.weight": (48, 52, 3, 3)},
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEYS))
def test_official_keys_present(name):
    n_keys, keys = OFFICIAL_KEYS[name]
    sd = build(name, 4).net.state_dict()
    missing = [k for k in keys if k not in sd]
    assert not missing
    assert len(sd) == n_keys
    for (arch, scale), shapes in SHAPES.items():
        if arch == name:
            sd_s = build(name, scale).net.state_dict()
            assert {k: tuple(sd_s[k].shape) for k in shapes} == shapes


@pytest.mark.parametrize("name", sorted(SPECS))
def test_state_dict_round_trip_strict(name):
    source = build(name, 4).net
    buf = io.BytesIO()
    torch.save(source.state_dict(), buf)  # the official release format: a plain state_dict
    buf.seek(0)
    target = build(name, 4).net
    target.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key


def test_carn_multi_scale_checkpoint_serves_every_scale():
    """One multi-scale checkpoint loads strictly into the x2, x3 and x4 builds."""
    sd = build("carn", 4).net.state_dict()
    for scale in (2, 3):
        build("carn", scale).net.load_state_dict(sd, strict=True)


def test_carn_mean_shifts_are_frozen_and_in_unit_range():
    net = build("carn", 4).net
    mean = torch.tensor(carn.DIV2K_MEAN)
    assert torch.allclose(net.sub_mean.shifter.bias, -mean)
    assert torch.allclose(net.add_mean.shifter.bias, mean)
    assert not any(p.requires_grad for p in net.sub_mean.parameters())
    assert all(p.requires_grad for p in net.entry.parameters())
    with torch.no_grad():  # exit conv zeroed: the output is the mean, in [0, 255] units
        net.exit.weight.zero_()
        net.exit.bias.zero_()
        out = net(torch.rand(1, 3, 8, 8) * 255)
    assert torch.allclose(out, (255 * mean).view(1, 3, 1, 1).expand_as(out), atol=1e-3)


@pytest.mark.parametrize("name", ["imdn", "rfdn", "rlfn"])
def test_unit_range_nets_scale_output_to_255(name):
    net = build(name, 4).net
    with torch.no_grad():  # the last conv outputs its bias 0.5 (in [0, 1] units) everywhere
        net.upsampler[0].weight.zero_()
        net.upsampler[0].bias.fill_(0.5)
        out = net(torch.rand(1, 3, 16, 16) * 255)
    assert torch.allclose(out, torch.full_like(out, 127.5))


@pytest.mark.parametrize(("name", "scale"), REGISTERED)
def test_forward_shape_finite_and_input_untouched(name, scale):
    model = build(name, scale).eval()
    size = 12 if name not in ESA_MIN else 16  # ESA nets need >= 15 (see next test)
    x = torch.rand(1, 3, size, size) * 255
    x_copy = x.clone()
    with torch.no_grad():
        out = model(x)
    assert tuple(out.shape) == (1, 3, size * scale, size * scale)
    assert torch.isfinite(out).all()
    assert torch.equal(x, x_copy)


@pytest.mark.parametrize("name", sorted(ESA_MIN))
def test_esa_minimum_input_size(name):
    """ESA (stride-2 conv, then a 7x7 max-pool) needs LR sides >= 15, as in the originals."""
    net = build(name, 4).net.eval()
    n = ESA_MIN[name]
    assert SPECS[name].extra["min_input"] == n
    with torch.no_grad():
        assert net(torch.rand(1, 3, n, n) * 255).shape[-1] == 4 * n
        with pytest.raises(RuntimeError):
            net(torch.rand(1, 3, n - 1, n - 1) * 255)


@pytest.mark.parametrize("mobile", [False, True])
def test_carn_single_scale_conversion_keeps_the_function(mobile):
    multi = carn.build_carn(3, mobile=mobile).net.eval()
    single = carn.build_carn(3, multi_scale=False, mobile=mobile).net.eval()
    single.load_state_dict(carn.single_scale_state_dict(multi.state_dict(), 3), strict=True)
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        assert torch.allclose(single(x), multi(x))
