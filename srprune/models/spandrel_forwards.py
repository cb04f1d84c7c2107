"""Traceable forwards for spandrel architectures: the table
:data:`FORWARDS` that :func:`srprune.models.spandrel_zoo.functional_forwards` applies to every
spandrel model srprune builds (from a registered name or from a checkpoint).

The table is keyed by class name, and spandrel reuses names across architectures: HAT,
Swin2SR, DRCT, ATD, RGT, GRL and DCTLSA all have a ``WindowAttention``, RealPLKSR has its own
``PLKConv2d``. A forward written for SwinIR's ``WindowAttention`` breaks HAT's (other
arguments) or computes another function (Swin2SR's cosine attention). So every name is
served by a dispatcher that picks the forward by the class's own spandrel module and falls
back to the class's own forward for a module it does not know: a class name shared by two
architectures can never hand one of them the other's forward.

Every forward computes spandrel's numbers (``tests/test_spandrel_archs.py`` compares each
architecture with spandrel's own descriptor); what changes is what the tracer, the pruner
and the exporters can follow: widths read from tensors instead of the widths a block was
built with, splits with explicit sizes, no in-place writes, no data-dependent Python
control flow. ``benchmarks/spandrel_zoo.py`` measures every architecture with them.

Whole-net forwards (MMRealSR, IPT, GRL, Real-CUGAN) replace the root net's forward; the root
is then srprune's [0, 255] subclass of the spandrel class (marked :data:`PIXEL_RANGE`), so
they map the pixel range themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ARCH = "spandrel.architectures."
# the class attribute marking srprune's [0, 255] subclass of a spandrel class
PIXEL_RANGE = "srprune_pixel_range"
# class name -> dispatcher (what spandrel_zoo.functional_forwards installs)
FORWARDS: dict[str, Callable[..., Any]] = {}
# (module of the spandrel class, class name) -> forward with the same numbers
_BY_MODULE: dict[tuple[str, str], Callable[..., Any]] = {}


def spandrel_base(cls: type) -> type:
    """The spandrel class behind srprune's subclasses of it (functional, pixel range)."""
    for klass in cls.__mro__:
        if klass.__module__.startswith(_ARCH):
            return klass
    return cls


def _dispatcher(name: str) -> Callable[..., Any]:
    """One forward for every spandrel class called ``name``: the registered forward of the
    instance's own architecture module, else the forward the class had before it was
    switched (spandrel's own, or srprune's pixel-range one)."""

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        base = spandrel_base(type(self))
        chosen = _BY_MODULE.get((base.__module__, name))
        if chosen is not None:
            return chosen(self, *args, **kwargs)
        mro = type(self).__mro__
        start = next(i for i, k in enumerate(mro) if k.__dict__.get("forward") is forward)
        for klass in mro[start + 1:]:
            own = klass.__dict__.get("forward")
            if own is not None:
                return own(self, *args, **kwargs)
        raise TypeError(f"{name} has no forward")

    forward.__name__ = f"dispatch_{name}"
    forward.__doc__ = f"{name}.forward chosen by the class's spandrel module."
    return forward


def register(module: str, name: str, forward: Callable[..., Any]) -> None:
    """Use ``forward`` for the spandrel class ``name`` defined in ``module`` (a full module
    path, e.g. ``spandrel.architectures.HAT.__arch.HAT``)."""
    _BY_MODULE[(module, name)] = forward
    if name not in FORWARDS:
        FORWARDS[name] = _dispatcher(name)


def _range_adapted(module: nn.Module) -> bool:
    """True when ``module`` is srprune's [0, 255] subclass of its spandrel class."""
    return bool(getattr(type(module), PIXEL_RANGE, False))


# ----------------------------------------------------------------- SwinIR, PLKSR


def _functional_partial_conv(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """PLKSR's partial large-kernel conv written as split, conv, concat (the form its
    training pass uses) instead of an in-place write into a slice of the input: the same
    numbers, a graph the channel tracer can follow, and no ScatterND in ONNX."""
    head, tail = torch.split(x, [self.idx, x.size(1) - self.idx], dim=1)
    out = self.conv(head)
    if self.with_idt:
        out = out + head
    return torch.cat([out, tail], dim=1)


def _masked_window_output(self: nn.Module, attn: torch.Tensor, v: torch.Tensor,
                          mask: torch.Tensor | None) -> torch.Tensor:
    """The end every Swin-style window attention shares: the shifted-window mask added per
    window, softmax, the weighted values and the output projection."""
    batch, heads, tokens, _ = attn.shape
    if mask is not None:
        windows = mask.shape[0]
        attn = attn.view(batch // windows, windows, heads, tokens, tokens) + \
            mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, tokens, tokens)
    attn = self.attn_drop(self.softmax(attn))
    out = (attn @ v).transpose(1, 2).reshape(batch, tokens, -1)
    return self.proj_drop(self.proj(out))


def _window_attention(self: nn.Module, x: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """SwinIR's window attention with its head width read from the ``qkv`` layer rather
    than from the token width (the same numbers unpruned; after the trunk is pruned, the
    attention keeps its own width)."""
    return _indexed_window_attention(self, x, self.relative_position_index, mask)


def _indexed_window_attention(self: nn.Module, x: torch.Tensor, index: torch.Tensor,
                              mask: torch.Tensor | None) -> torch.Tensor:
    """Window attention with a learned relative-position bias looked up by ``index``."""
    batch, tokens, _ = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q * self.scale) @ k.transpose(-2, -1)
    area = self.window_size[0] * self.window_size[1]
    bias = self.relative_position_bias_table[index.view(-1)].view(area, area, -1)
    attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
    return _masked_window_output(self, attn, v, mask)


def _patch_unembed(self: nn.Module, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
    """Tokens back to a feature map as wide as the tokens are (not ``self.embed_dim``)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], x_size[0], x_size[1])


_SWINIR = f"{_ARCH}SwinIR.__arch.SwinIR"
register(_SWINIR, "WindowAttention", _window_attention)
register(_SWINIR, "PatchUnEmbed", _patch_unembed)
register(f"{_ARCH}PLKSR.__arch.PLKSR", "PLKConv2d", _functional_partial_conv)


# ----------------------------------------------------------------- whole nets
# A net whose forward must change as a whole (a tuple output, another input range) is the
# root module: srprune's subclass of the spandrel class (``pixel_range_adapted``) maps
# [0, 255] around spandrel's forward, so these forwards do that mapping themselves.


def _mmrealsr(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MMRealSR returns ``(image, degradation degrees)``; spandrel calls it and keeps the
    image. srprune's nets return the image: the degrees would pass for the final output."""
    base = spandrel_base(type(self))
    if not _range_adapted(self):
        return base.forward(self, x)[0]
    return base.forward(self, x / 255.0)[0] * 255.0


class _IPTCore:
    """An IPT net seen through spandrel's own forward (its tiler calls the net's forward on
    each patch; srprune's whole-net forward below would tile again)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spandrel_base(type(self.net)).forward(self.net, x)

    __call__ = forward

    def set_scale(self, idx: int) -> None:
        self.net.scale_idx = idx


def _ipt(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """IPT as spandrel runs it: its largest scale, on [0, ``rgb_range``], tiled into patches
    of its one input size (its transformer has a position embedding per patch token). An
    input smaller than one patch (spandrel refuses it; srprune's graph traces at 16x16) is
    reflect-padded to a patch and the output cropped."""
    from spandrel.architectures.IPT.__arch.model import Model

    tiler = Model(_IPTCore(self))  # type: ignore[arg-type]
    idx = self.scale.index(max(self.scale))
    h, w, patch, scale = x.shape[2], x.shape[3], int(self.patch_size), max(self.scale)
    if h < patch or w < patch:
        x = reflect_pad(x, (0, max(0, patch - w), 0, max(0, patch - h)))
    gain = self.rgb_range / 255.0 if _range_adapted(self) else self.rgb_range
    return (tiler.forward(x * gain, idx) / gain)[:, :, :h * scale, :w * scale]


def _grl(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GRL padded to its window multiple without an exception: spandrel tries reflect
    padding and falls back to zeros on the error reflect raises when the pad exceeds the
    input; under the TorchScript tracer (ONNX export) that caught error crashes the process.
    Here the mode is chosen first (the same padding, the same numbers)."""
    base = spandrel_base(type(self))
    adapted = _range_adapted(self)
    x = x / 255.0 if adapted else x
    h, w = x.shape[2], x.shape[3]
    pad_h, pad_w = (-h) % self.pad_size, (-w) % self.pad_size
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "constant"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    out = base.forward(self, x)[:, :, :h * self.upscale, :w * self.upscale]
    return out * 255.0 if adapted else out


def reflect_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect padding ``(left, right, top, bottom)`` of any width: where one reflection
    cannot reach (a pad as wide as the input), reflect again; a side one pixel wide, which
    has nothing to reflect, is repeated. Where one reflection is enough this is
    ``F.pad(x, pads, "reflect")`` itself."""
    if (x.shape[3] == 1 and (pads[0] or pads[1])) or (x.shape[2] == 1 and (pads[2] or pads[3])):
        return F.pad(x, pads, "replicate")
    while any(pads):
        h, w = x.shape[2], x.shape[3]
        step = (min(pads[0], w - 1), min(pads[1], w - 1), min(pads[2], h - 1),
                min(pads[3], h - 1))
        x = F.pad(x, step, "reflect")
        pads = (pads[0] - step[0], pads[1] - step[1], pads[2] - step[2], pads[3] - step[3])
    return x


def _cugan2x(self: nn.Module, x: torch.Tensor, alpha: float = 1) -> torch.Tensor:
    """Real-CUGAN x2 with its 18-pixel reflect padding repeated where the input is smaller
    than 19 pixels (spandrel's raises there): the same numbers on every input spandrel
    runs, and a model srprune's graph can trace (it traces at 16x16)."""
    adapted = _range_adapted(self)
    x = x / 255.0 if adapted else x
    h0, w0 = x.shape[2], x.shape[3]
    if self.is_pro:
        x = x * 0.7 + 0.15
    ph, pw = ((h0 - 1) // 2 + 1) * 2, ((w0 - 1) // 2 + 1) * 2
    x = reflect_pad(x, (18, 18 + pw - w0, 18, 18 + ph - h0))
    x = self.unet1.forward(x)
    x0 = self.unet2.forward(x, alpha)
    x = torch.add(x0, F.pad(x, (-20, -20, -20, -20)))
    if w0 != pw or h0 != ph:
        x = x[:, :, :h0 * 2, :w0 * 2]
    if self.is_pro:
        x = (x - 0.15) / 0.7
    return x * 255.0 if adapted else x


register(f"{_ARCH}MMRealSR.__arch.mmrealsr_arch", "MMRRDBNet_test", _mmrealsr)
register(f"{_ARCH}IPT.__arch.ipt", "IPT", _ipt)
register(f"{_ARCH}GRL.__arch.grl", "GRL", _grl)
register(f"{_ARCH}RealCUGAN.__arch.upcunet_v3", "UpCunet2x", _cugan2x)


# ----------------------------------------------------------------- blocks


def _moe_dense(self: nn.Module, inputs: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """SeemoRe's mixture of experts with every expert run and the unselected ones weighted 0
    (its training form), instead of calling only the top-k experts picked by the router.

    The same numbers (the zero-weighted experts add exact zeros), but a graph without
    data-dependent control flow: every expert is traced and pruned with its neighbours, the
    ONNX file keeps the routing for any input, MACs count on the meta device (no ``.item()``)
    and a batch of several images works (spandrel's eval path indexes experts by batch row).
    MACs then count every expert, where an eval call runs ``topk`` of them.
    """
    weights = torch.softmax(self.gate(inputs).float(), dim=1).to(inputs.dtype)
    top_weights, top_experts = torch.topk(weights, self.num_expert)
    dense = torch.zeros_like(weights).scatter(1, top_experts, top_weights)
    out = inputs
    for i, expert in enumerate(self.experts):
        out = out + expert(inputs, k) * dense[:, i:i + 1, None, None]
    return out


register(f"{_ARCH}SeemoRe.__arch.seemore_arch", "MoELayer", _moe_dense)


def _real_plk_conv(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """RealPLKSR's partial large-kernel conv as split, conv, concat (its training form), as
    for PLKSR: in eval mode spandrel writes into a slice of its input, which the tracer
    cannot follow (and which writes into the caller's tensor)."""
    head, tail = torch.split(x, [self.idx, x.size(1) - self.idx], dim=1)
    return torch.cat([self.conv(head), tail], dim=1)


register(f"{_ARCH}PLKSR.__arch.RealPLKSR", "PLKConv2d", _real_plk_conv)


def _craft_srwab(self: nn.Module, x: torch.Tensor, x_size: tuple[int, int],
                 params: dict[str, torch.Tensor],
                 attn_mask: Any = NotImplementedError) -> torch.Tensor:
    """CRAFT's shifted rectangle-window block with each half of ``q, k, v`` sliced before it
    is reshaped to an image (spandrel reshapes first, then slices the 5-D view), and the
    attention width read from ``qkv`` (spandrel uses the token width).

    The same numbers; but on the 5-D view Torch-Pruning's search for the ``qkv`` layer's
    coupled channels never ends (it keeps finding new index sets through the view, slice,
    roll and concatenation), so the graph of any CRAFT with a shifted block hung."""
    h, w = x_size
    self.h, self.w = x_size
    b = x.shape[0]
    shortcut = x
    qkv = self.qkv(self.norm1(x))
    c = qkv.shape[-1] // 3
    qkv = qkv.reshape(b, -1, 3, c).permute(2, 0, 1, 3)  # 3, B, HW, C
    v = qkv[2].transpose(-2, -1).contiguous().view(b, c, h, w)
    half = c // 2
    first, second = qkv[..., :half], qkv[..., half:]
    if self.shift_size[0] > 0 or self.shift_size[1] > 0:
        s0, s1 = self.shift_size
        first = torch.roll(first.reshape(3, b, h, w, half), shifts=(-s0, -s1),
                           dims=(2, 3)).reshape(3, b, h * w, half)
        second = torch.roll(second.reshape(3, b, h, w, c - half), shifts=(-s1, -s0),
                            dims=(2, 3)).reshape(3, b, h * w, c - half)
        x1 = self.attns[0](first, h, w, mask=attn_mask[0], rpi=params["rpi_sa_h"],
                           rpe_biases=params["biases_h"])
        x2 = self.attns[1](second, h, w, mask=attn_mask[1], rpi=params["rpi_sa_v"],
                           rpe_biases=params["biases_v"])
        x1 = torch.roll(x1, shifts=(s0, s1), dims=(1, 2))
        x2 = torch.roll(x2, shifts=(s1, s0), dims=(1, 2))
    else:
        x1 = self.attns[0](first, h, w, rpi=params["rpi_sa_h"], rpe_biases=params["biases_h"])
        x2 = self.attns[1](second, h, w, rpi=params["rpi_sa_v"],
                           rpe_biases=params["biases_v"])
    attended = torch.cat([x1, x2], dim=-1).view(b, -1, c).contiguous()
    local = self.get_v(v).permute(0, 2, 3, 1).contiguous().view(b, -1, c)
    x = shortcut + self.proj(attended + local)
    return x + self.mlp(self.norm2(x))


def _craft_hferb(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CRAFT's high-frequency block with its two halves taken by ``torch.split`` rather than
    by slicing: the graph then cuts the trunk into the two parts (each pruned as a whole,
    the split sizes replayed after pruning) instead of blocking the whole trunk."""
    self.h, self.w = x.shape[2:]
    local, high = torch.split(x, [self.mid_dim, x.shape[1] - self.mid_dim], dim=1)
    lfe = self.act(self.conv(local))
    hfe = self.act(self.fc(self.max_pool(high)))
    return x + self.last_fc(torch.cat([lfe, hfe], dim=1))


register(f"{_ARCH}CRAFT.__arch.CRAFT", "SRWAB", _craft_srwab)
register(f"{_ARCH}CRAFT.__arch.CRAFT", "HFERB", _craft_hferb)


# ----------------------------------------------------------------- window attention
# Transformer SR nets reshape their tokens with the width they were built with (``C`` of the
# input, ``self.embed_dim``); once the trunk (the embedding width) is pruned, those shapes
# are wrong, so the graph's trial blocks the trunk. These forwards read every width from the
# tensor or the layer that produces it: the same numbers unpruned, and a trunk that prunes.


def _cpb_mlp(mlp: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    """The continuous position-bias MLP (Linear, ReLU, Linear) with its ReLU not in place:
    in place, it rewrites the first layer's output on a tensor that does not depend on the
    image, and the tracer loses that layer (the graph's coverage names it)."""
    return mlp[2](F.relu(mlp[0](coords)))


def _swin2sr_attention(self: nn.Module, x: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Swin2SR's cosine window attention with ``qkv`` called as a layer (spandrel calls
    ``F.linear`` on its weight, which hides the layer from the tracer, the MAC counter and
    the pruner: the trunk could not shrink its inputs) and its head width read from it."""
    batch, tokens, _ = x.shape
    heads = self.num_heads
    qkv = self.qkv(x)
    if self.q_bias is not None:
        qkv = qkv + torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
    qkv = qkv.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    limit = torch.log(torch.tensor(1.0 / 0.01)).to(self.logit_scale.device)
    attn = attn * torch.clamp(self.logit_scale, max=limit).exp()
    area = self.window_size[0] * self.window_size[1]
    table = _cpb_mlp(self.cpb_mlp, self.relative_coords_table).view(-1, heads)
    bias = table[self.relative_position_index.view(-1)].view(area, area, -1)
    attn = attn + 16 * torch.sigmoid(bias.permute(2, 0, 1).contiguous()).unsqueeze(0)
    return _masked_window_output(self, attn, v, mask)


register(f"{_ARCH}Swin2SR.__arch.Swin2SR", "WindowAttention", _swin2sr_attention)
register(f"{_ARCH}Swin2SR.__arch.Swin2SR", "PatchUnEmbed", _patch_unembed)


def _grl_mixed_attention(self: nn.Module, x: torch.Tensor, x_size: tuple[int, int],
                         table_index_mask: dict[str, torch.Tensor]) -> torch.Tensor:
    """GRL's mixed window/stripe attention with ``qkv`` split in two by explicit sizes read
    from it: spandrel splits by an integer computed from the token width, a split whose part
    sizes the tracer cannot read (the graph failed on it) and which a pruned trunk breaks."""
    qkv = self.qkv(x, x_size)
    half = qkv.shape[-1] // 2
    qkv_window, qkv_stripe = torch.split(qkv, [half, qkv.shape[-1] - half], dim=-1)
    anchor = self.anchor(x, x_size)
    x_window = self.window_attn(qkv_window, x_size,
                                *self._get_table_index_mask(table_index_mask, True))
    x_stripe = self.stripe_attn(qkv_stripe, anchor, x_size,
                                *self._get_table_index_mask(table_index_mask, False))
    x = torch.cat([x_window, x_stripe], dim=-1)
    return self.proj_drop(self.proj(x))


register(f"{_ARCH}GRL.__arch.mixed_attn_block_efficient", "MixedAttention",
         _grl_mixed_attention)
register(f"{_ARCH}GRL.__arch.mixed_attn_block", "CPB_MLP", _cpb_mlp)


# ----------------------------------------------------------------- ATD


def _token_dwconv(self: nn.Module, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
    """A depthwise conv on tokens (ATD's ConvFFN) reshaped with the tokens' own width, not
    the hidden width it was built with: the FFN's hidden channels can then be pruned."""
    x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], x_size[0], x_size[1])
    return self.depthwise_conv(x.contiguous()).flatten(2).transpose(1, 2).contiguous()


def _category_order(category: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token order sorted by category, ties in token order, and its inverse permutation.

    spandrel sorts with ``torch.sort(stable=False)``, which the ONNX exporter refuses and
    whose order among equal categories is the sort's own; the key ``category * n + index``
    is unique, so any sort (ONNX TopK included) gives this one order, the stable one. The
    inverse is a scatter, not a Python loop over the batch."""
    tokens = category.shape[-1]
    index = torch.arange(tokens, device=category.device).expand_as(category)
    key = category.long() * tokens + index
    order = torch.topk(key, tokens, dim=-1, largest=False, sorted=True).indices
    return order, torch.zeros_like(order).scatter(-1, order, index)


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _atd_category_attention(self: nn.Module, qkv: torch.Tensor, sim: torch.Tensor,
                            x_size: tuple[int, int]) -> torch.Tensor:
    """ATD's category-based attention (AC-MSA) with an exportable, deterministic sort
    (:func:`_category_order`); widths read from ``qkv``."""
    b, n, c3 = qkv.shape
    c = c3 // 3
    group = min(n, self.category_size)
    groups = (n + group - 1) // group
    order, reverse = _category_order(torch.argmax(sim, dim=-1))
    shuffled = _gather_tokens(qkv, order)
    pad = groups * group - n
    padded = torch.cat((shuffled, torch.flip(shuffled[:, n - pad:n, :], dims=[1])), dim=1)
    heads = self.num_heads
    qkv = padded.reshape(b, groups, group, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
    q, k, v = qkv[0], qkv[1], qkv[2]
    limit = torch.log(torch.tensor(1.0 / 0.01)).to(qkv.device)
    attn = (q @ k.transpose(-2, -1)) * torch.clamp(self.logit_scale, max=limit).exp()
    attn = self.softmax(attn)
    y = (attn @ v).permute(0, 1, 3, 2, 4).reshape(b, n + pad, c)[:, :n, :]
    return self.proj(_gather_tokens(y, reverse))


def _atd_layer(self: nn.Module, x: torch.Tensor, td: torch.Tensor, x_size: tuple[int, int],
               params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """ATD's transformer layer with the attention width read from ``wqkv`` (spandrel uses
    the token width three times over, which a pruned trunk no longer is)."""
    from spandrel.architectures.ATD.__arch.atd_arch import window_partition, window_reverse

    h, w = x_size
    b, n, _ = x.shape
    shortcut = x
    x = self.norm1(x)
    qkv = self.wqkv(x)
    c3 = qkv.shape[-1]
    x_atd, sim_atd = self.attn_atd(x, td, x_size)
    x_aca = self.attn_aca(qkv, sim_atd, x_size)
    qkv = qkv.reshape(b, h, w, c3)
    attn_mask = None
    if self.shift_size > 0:
        qkv = torch.roll(qkv, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        attn_mask = params["attn_mask"]
    windows = window_partition(qkv, self.window_size).view(-1, self.window_size ** 2, c3)
    attended = self.attn_win(windows, rpi=params["rpi_sa"], mask=attn_mask)
    attended = attended.view(-1, self.window_size, self.window_size, attended.shape[-1])
    x_win = window_reverse(attended, self.window_size, h, w)
    if self.shift_size > 0:
        x_win = torch.roll(x_win, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
    x = shortcut + x_win.reshape(b, n, -1) + x_atd + x_aca
    x = x + self.convffn(self.norm2(x), x_size)
    if not self.is_last:
        mask_soft = self.softmax(self.norm3(sim_atd.transpose(-1, -2)))
        s = self.sigmoid(self.sigma)
        td = s * td + (1 - s) * torch.einsum("btn,bnc->btc", mask_soft, x)
    return x, td


def _atd_dictionary_attention(self: nn.Module, x: torch.Tensor, td: torch.Tensor,
                              x_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """ATD's token-dictionary cross-attention, its output as wide as ``wv`` makes it."""
    q, k, v = self.wq(x), self.wk(td), self.wv(td)
    attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    attn = attn * (1 + torch.clamp(self.scale, 0, 1) * math.log(self.num_tokens))
    attn = self.softmax(attn)
    return attn @ v, attn


_ATD = f"{_ARCH}ATD.__arch.atd_arch"
register(_ATD, "dwconv", _token_dwconv)
register(_ATD, "AC_MSA", _atd_category_attention)
register(_ATD, "ATDTransformerLayer", _atd_layer)
register(_ATD, "ATD_CA", _atd_dictionary_attention)
register(_ATD, "PatchUnEmbed", _patch_unembed)


# ----------------------------------------------------------------- HAT, DRCT

# DRCT's window attention is SwinIR's, line for line: the same width-reading forward
register(f"{_ARCH}DRCT.__arch.drct_arch", "WindowAttention",
         _BY_MODULE[(_SWINIR, "WindowAttention")])


def _hat_window_attention(self: nn.Module, x: torch.Tensor, rpi: torch.Tensor,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """HAT's window attention (position index passed in) with its head width read from
    ``qkv`` rather than from the token width."""
    return _indexed_window_attention(self, x, rpi, mask)


def _hat_overlap_attention(self: nn.Module, x: torch.Tensor, x_size: tuple[int, int],
                           rpi: torch.Tensor) -> torch.Tensor:
    """HAT's overlapping cross-attention block with the attention width read from ``qkv``
    (spandrel reshapes with the token width and ``self.dim``)."""
    from spandrel.architectures.HAT.__arch.HAT import window_partition, window_reverse

    h, w = x_size
    b, _, c = x.shape
    shortcut = x
    x = self.norm1(x).view(b, h, w, c)
    qkv = self.qkv(x)
    width = qkv.shape[-1] // 3
    qkv = qkv.reshape(b, h, w, 3, width).permute(3, 0, 4, 1, 2)  # 3, b, c, h, w
    q = qkv[0].permute(0, 2, 3, 1)
    kv = torch.cat((qkv[1], qkv[2]), dim=1)
    ws, ows = self.window_size, self.overlap_win_size
    q_windows = window_partition(q, ws).view(-1, ws * ws, width)
    kv_windows = self.unfold(kv)  # b, 2 * c * ow * ow, windows
    kv_windows = kv_windows.view(b, 2, width, ows, ows, -1).permute(1, 0, 5, 3, 4, 2)
    kv_windows = kv_windows.reshape(2, -1, ows * ows, width).contiguous()
    k_windows, v_windows = kv_windows[0], kv_windows[1]
    b_, nq, _ = q_windows.shape
    n = k_windows.shape[1]
    heads = self.num_heads
    q = q_windows.reshape(b_, nq, heads, -1).permute(0, 2, 1, 3)
    k = k_windows.reshape(b_, n, heads, -1).permute(0, 2, 1, 3)
    v = v_windows.reshape(b_, n, heads, -1).permute(0, 2, 1, 3)
    attn = (q * self.scale) @ k.transpose(-2, -1)
    bias = self.relative_position_bias_table[rpi.view(-1)].view(ws * ws, ows * ows, -1)
    attn = self.softmax(attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0))
    attended = (attn @ v).transpose(1, 2).reshape(b_, nq, width).view(-1, ws, ws, width)
    x = window_reverse(attended, ws, h, w).reshape(b, h * w, width)
    x = self.proj(x) + shortcut
    return x + self.mlp(self.norm2(x))


_HAT = f"{_ARCH}HAT.__arch.HAT"
register(_HAT, "WindowAttention", _hat_window_attention)
register(_HAT, "OCAB", _hat_overlap_attention)
register(_HAT, "PatchUnEmbed", _patch_unembed)


# ----------------------------------------------------------------- MoESR


def _space_to_depth(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``F.pixel_unshuffle`` written as reshape, permute, reshape: the same numbers, and
    channel ``c`` becomes channels ``c * r^2 .. c * r^2 + r^2 - 1`` through a reshape that
    the tracer maps channel by channel (it takes a pixel-unshuffle layer for an elementwise
    op that keeps the channel count, and couples layers of different widths)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // factor, factor, w // factor, factor)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * factor * factor, h // factor,
                                               w // factor)


def _moesr_msg(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MoESR's multi-scale gated block with its pixel unshuffle as :func:`_space_to_depth`."""
    conv, unshuffle, act = self.down
    out = act(_space_to_depth(conv(x), unshuffle.downscale_factor))
    return self.up(self.gated(out)) + x


register(f"{_ARCH}MoESR.__arch.MoESR", "MSG", _moesr_msg)
