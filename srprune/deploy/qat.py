"""Quantization-aware fine-tuning (QAT) ahead of ONNX Runtime's INT8 quantization.

The torch model is given the rounding ORT's QDQ quantization (``measure.quantize``) will
apply, and fine-tuned through it, so that its weights learn to live with that noise:

* **weights** of every conv/linear layer: symmetric per-output-channel int8, scale
  ``max|w| / 127`` recomputed from the current weights at each call (ORT's ``WeightSymmetric``
  range -127..127; -64..64 with ``reduce_range``), through
  ``torch.fake_quantize_per_channel_affine``, whose gradient is the straight-through
  estimator (a torch parametrization, removed afterwards);
* **activations**: the input of every conv/linear layer, per-tensor affine in uint8 (0..255)
  or int8 (-128..127, asymmetric like ORT's default), with the range of a moving-average
  min/max observer (``torch.ao.quantization.FakeQuantize``, a forward pre-hook). Before
  training the observers take one pass over the INT8 calibration patches with fake
  quantization off: the min/max of the float model, which is ORT's MinMax calibration.

Layers the mixed-precision search keeps in FP32 are left alone: the ONNX nodes it excludes
are mapped to module names (the legacy exporter's scope names, or failing that the unique
module whose weight equals the node's initializer); a layer computes with float weights when
its node is excluded, and reads a float input when every node next to its input tensor is
excluded (QDQ quantizes a tensor when any neighbour is quantized). Approximations: tensors
other than conv/linear inputs (the outputs of adds, the graph output) are not fake
quantized, bias rounding to int32 is ignored, a linear layer is quantized along torch's
output axis, and an excluded node that maps to no module is reported and left quantized.

Training is srprune's own :class:`~srprune.training.trainer.Trainer`: the dual-regression
loss on patches of the user's images (the dual term only when the model brings trained dual
nets), plus distillation to the FP32 model's SR output, at a low learning rate.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize

from srprune.data.images import ImageSet, PatchSampler
from srprune.errors import SrpruneError
from srprune.hooks import hooked
from srprune.measure.quantize import WEIGHT_OPS
from srprune.models.srmodel import SRModel
from srprune.training.trainer import TrainConfig, Trainer

WEIGHT_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose1d,
                  nn.ConvTranspose2d, nn.ConvTranspose3d)
ACTIVATION_RANGES = {"uint8": (0, 255, torch.quint8), "int8": (-128, 127, torch.qint8)}
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FakeQuantSpec:
    """What to mimic: ORT's activation type and its 7-bit weight option."""

    activations: str = "uint8"
    reduce_range: bool = False
    averaging_constant: float = 0.01  # moving-average weight of each new batch's min/max

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATION_RANGES:
            raise SrpruneError(f"activations must be one of {sorted(ACTIVATION_RANGES)}, "
                               f"got {self.activations!r}")
        if not 0 < self.averaging_constant <= 1:
            raise SrpruneError(f"averaging_constant must be in (0, 1], "
                               f"got {self.averaging_constant}")

    @property
    def weight_range(self) -> tuple[int, int]:
        return (-64, 64) if self.reduce_range else (-127, 127)

    def activation_quantizer(self) -> FakeQuantize:
        low, high, dtype = ACTIVATION_RANGES[self.activations]
        return FakeQuantize(MovingAverageMinMaxObserver, quant_min=low, quant_max=high,
                            dtype=dtype, qscheme=torch.per_tensor_affine,
                            averaging_constant=self.averaging_constant)


class WeightFakeQuant(nn.Module):
    """Parametrization: symmetric per-channel fake quantization along ``axis`` (STE)."""

    def __init__(self, axis: int, qmin: int, qmax: int) -> None:
        super().__init__()
        self.axis, self.qmin, self.qmax = axis, qmin, qmax
        self.enabled = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        dims = [d for d in range(weight.dim()) if d != self.axis]
        absmax = weight.detach().abs().amax(dim=dims).float()
        scale = torch.where(absmax > 0, 2 * absmax / (self.qmax - self.qmin),
                            torch.ones_like(absmax))
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, self.axis,
                                                      self.qmin, self.qmax)


def output_axis(module: nn.Module) -> int:
    """The weight axis of output channels (1 for transposed convs, as ORT quantizes them)."""
    return 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0


@dataclass(frozen=True)
class FloatLayers:
    """Modules left out of fake quantization, from the ONNX nodes kept in FP32."""

    weights: frozenset[str] = frozenset()  # compute with float weights
    inputs: frozenset[str] = frozenset()  # read a float input
    unmapped: tuple[str, ...] = ()  # excluded weight nodes no module was found for


@dataclass
class FakeQuantizer:
    """The fake quantizers attached to one net by :func:`fake_quantized`."""

    weights: dict[str, WeightFakeQuant] = field(default_factory=dict)
    inputs: dict[str, FakeQuantize] = field(default_factory=dict)

    def set_fake(self, on: bool) -> None:
        """Switch the rounding itself on or off (observers are separate)."""
        for wq in self.weights.values():
            wq.enabled = on
        for aq in self.inputs.values():
            (aq.enable_fake_quant if on else aq.disable_fake_quant)()

    def set_observe(self, on: bool) -> None:
        for aq in self.inputs.values():
            (aq.enable_observer if on else aq.disable_observer)()

    def calibrate(self, net: nn.Module, batch: torch.Tensor) -> None:
        """Fresh activation ranges: min/max of the float net on ``batch`` (ORT's MinMax)."""
        for aq in self.inputs.values():
            aq.activation_post_process.reset_min_max_vals()
        self.set_fake(False)
        self.set_observe(True)
        with torch.no_grad():
            net(batch)
        self.set_fake(True)

    def grids(self) -> dict[str, tuple[float, int]]:
        """(scale, zero point) of each activation quantizer."""
        out = {}
        for name, aq in self.inputs.items():
            scale, zero = aq.calculate_qparams()
            out[name] = (float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0]))
        return out


def quantizable(net: nn.Module) -> dict[str, nn.Module]:
    """The conv/linear modules of ``net`` by name."""
    return {name: m for name, m in net.named_modules() if isinstance(m, WEIGHT_MODULES)}


@contextlib.contextmanager
def fake_quantized(net: nn.Module, spec: FakeQuantSpec | None = None,
                   skip: FloatLayers | None = None) -> Iterator[FakeQuantizer]:
    """Fake quantization of ``net``'s conv/linear layers inside the block, removed after it.

    Weights are parametrized (so ``net.parameters()`` yields the float originals, which an
    optimiser trains); inputs pass through a pre-hook. On exit every parametrization and
    hook is gone: the net holds plain float weights (fine-tuned ones if trained), under its
    original state_dict keys.
    """
    spec = spec or FakeQuantSpec()
    skip = skip or FloatLayers()
    layers = quantizable(net)
    fq = FakeQuantizer()
    qmin, qmax = spec.weight_range
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    order = {name: list(m._parameters) for name, m in layers.items()}
    try:
        for name, module in layers.items():
            if name not in skip.weights:
                fq.weights[name] = WeightFakeQuant(output_axis(module), qmin, qmax)
                parametrize.register_parametrization(module, "weight", fq.weights[name])
        for name in layers:
            if name not in skip.inputs:
                fq.inputs[name] = spec.activation_quantizer().to(device)
        with hooked(((layers[name], _input_hook(aq)) for name, aq in fq.inputs.items()),
                    kind="pre"):
            yield fq
    finally:
        for name in fq.weights:
            if parametrize.is_parametrized(layers[name], "weight"):
                parametrize.remove_parametrizations(layers[name], "weight",
                                                    leave_parametrized=False)
            params = layers[name]._parameters  # "weight" back in its place
            for key in order[name]:
                params[key] = params.pop(key)


def _input_hook(aq: FakeQuantize) -> Callable[[nn.Module, tuple], tuple]:
    def hook(_module: nn.Module, args: tuple) -> tuple:
        return (aq(args[0]), *args[1:])
    return hook


def float_layers(onnx_path: str | Path, net: nn.Module, exclude: Sequence[str]) -> FloatLayers:
    """The modules of ``net`` that ORT leaves in float when ``exclude`` (node names of the
    pre-processed graph at ``onnx_path``) is kept out of quantization."""
    excluded = set(exclude)
    if not excluded:
        return FloatLayers()
    graph = onnx.load(str(onnx_path)).graph
    producer = {out: n.name for n in graph.node for out in n.output}
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for tensor in n.input:
            consumers.setdefault(tensor, []).append(n.name)
    mapping = node_modules(graph, net)
    weights, inputs, unmapped = set(), set(), []
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        module = mapping.get(node.name)
        neighbours = consumers.get(node.input[0], []) + (
            [producer[node.input[0]]] if node.input[0] in producer else [])
        if module is None:
            if node.name in excluded:
                unmapped.append(node.name)
            continue
        if node.name in excluded:
            weights.add(module)
        if all(n in excluded for n in neighbours):
            inputs.add(module)
    return FloatLayers(frozenset(weights), frozenset(inputs), tuple(unmapped))


def node_modules(graph: onnx.GraphProto, net: nn.Module) -> dict[str, str]:
    """ONNX weight node name -> module name: the exporter's scope path when it names a
    module of ``net``, else the one module whose weight equals the node's initializer."""
    layers = quantizable(net)
    inits = {t.name: t for t in graph.initializer}
    mapping = {}
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        name = scope_module(node.name, layers)
        if name is None and len(node.input) > 1 and node.input[1] in inits:
            name = _same_weight(numpy_helper.to_array(inits[node.input[1]]), layers)
        if name is not None:
            mapping[node.name] = name
    return mapping


def scope_module(node_name: str, modules: dict[str, nn.Module]) -> str | None:
    """The module a legacy-exporter node name (``/net/body/body.0/Conv``) comes from.

    A scope that extends the previous one (``body`` then ``body.0``) replaces it; the
    exporter's wrapper (``net``) may lead the path.
    """
    path: list[str] = []
    for part in [p for p in node_name.split("/") if p][:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    for start in range(min(2, len(path))):
        name = ".".join(path[start:])
        if name in modules:
            return name
    return None


def _same_weight(array: np.ndarray, layers: dict[str, nn.Module]) -> str | None:
    found = [name for name, m in layers.items()
             if tuple(m.weight.shape) == array.shape
             and np.array_equal(m.weight.detach().cpu().numpy(), array)]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class QatSettings:
    """A QAT run: steps, learning rate (cosine to a tenth of it), batch of LR patches."""

    steps: int
    lr: float = 2e-5
    batch: int = 8
    patch: int = 32  # LR side; smaller when the smallest image is
    distill_weight: float = 1.0  # L1 to the FP32 model's SR output
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("steps", "batch", "patch"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SrpruneError(f"QAT {key} must be an integer >= 1, got {value!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise SrpruneError(f"--qat-lr must be a finite number > 0, got {self.lr}")
        if not math.isfinite(self.distill_weight) or self.distill_weight < 0:
            raise SrpruneError(f"QAT distill_weight must be a finite number >= 0, "
                               f"got {self.distill_weight}")

    def as_dict(self) -> dict:
        return {"steps": self.steps, "lr": self.lr, "lr_min": self.lr / 10,
                "batch": self.batch, "patch": self.patch,
                "distill_weight": self.distill_weight, "seed": self.seed}


@dataclass
class QatResult:
    """The fine-tuned float model and what the run did."""

    model: SRModel
    settings: dict
    seconds: float
    loss_first: float
    loss_last: float
    torch_psnr_before: float  # fake-quant torch model vs float, calibration patches, RGB
    torch_psnr_after: float
    weight_change: float  # relative L2 change of the quantized layers' weights
    fake_weights: int  # layers with fake-quantized weights
    fake_inputs: int  # layers with fake-quantized inputs
    skipped: dict  # float_weights, float_inputs, unmapped (module / node names)

    def as_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "model"}
        return data


def finetune_qat(model: SRModel, images: ImageSet, calibration: Sequence[np.ndarray],
                 settings: QatSettings, spec: FakeQuantSpec | None = None,
                 skip: FloatLayers | None = None,
                 progress: Progress | None = None) -> QatResult:
    """QAT of a copy of ``model`` (left untouched, it is the distillation teacher)."""
    spec, skip = spec or FakeQuantSpec(), skip or FloatLayers()
    student = copy.deepcopy(model).to("cpu")
    teacher = copy.deepcopy(model).to("cpu").eval()
    calib = torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a in calibration]))
    before = {k: v.detach().clone() for k, v in student.net.state_dict().items()}
    side = min(settings.patch, min(min(p.lr[0].shape[:2]) for p in images))
    sampler = PatchSampler(images, model.scale, side, settings.batch, seed=settings.seed)
    config = TrainConfig(steps=settings.steps, batch=settings.batch, patch=side,
                         lr=settings.lr, lr_min=settings.lr / 10,
                         dual_weight=0.1 if model.duals is not None else 0.0,
                         seed=settings.seed, distill_weight=settings.distill_weight)
    report = progress or (lambda _stage, _done, _total: None)
    student.net.eval()
    with fake_quantized(student.net, spec, skip) as fq:
        fq.calibrate(student.net, calib)
        fq.set_observe(False)
        psnr_before = fake_quant_psnr(student.net, fq, calib)
        fq.set_observe(True)
        trainer = Trainer(student, sampler, config,
                          teacher=teacher if settings.distill_weight else None)
        start = time.perf_counter()
        report("qat", 0, settings.steps)
        log = trainer.run(on_step=lambda step, _: report("qat", step, settings.steps))
        seconds = time.perf_counter() - start
        student.net.eval()
        fq.calibrate(student.net, calib)  # the ranges ORT will calibrate on the tuned net
        fq.set_observe(False)
        psnr_after = fake_quant_psnr(student.net, fq, calib)
        counts = len(fq.weights), len(fq.inputs)
    return QatResult(student, {**settings.as_dict(), "patch": side,
                               "dual_weight": config.dual_weight, **_spec_dict(spec)},
                     seconds, log.loss[0], log.loss[-1], psnr_before, psnr_after,
                     _weight_change(before, student.net, quantizable(student.net)), *counts,
                     {"float_weights": sorted(skip.weights), "float_inputs": sorted(skip.inputs),
                      "unmapped": list(skip.unmapped)})


def fake_quant_psnr(net: nn.Module, fq: FakeQuantizer, batch: torch.Tensor) -> float:
    """PSNR (dB, 0..255, RGB) of the fake-quantized net's output against the float net's."""
    with torch.no_grad():
        fq.set_fake(False)
        ref = _final(net(batch))
        fq.set_fake(True)
        out = _final(net(batch))
    mse = float(torch.mean((out.double() - ref.double()) ** 2))
    return 100.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _final(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return out[-1] if isinstance(out, (list, tuple)) else out


def _weight_change(before: dict[str, torch.Tensor], net: nn.Module,
                   layers: dict[str, nn.Module]) -> float:
    """||W_after - W_before|| / ||W_before|| over the conv/linear weights."""
    num = den = 0.0
    for name, module in layers.items():
        old = before[f"{name}.weight" if name else "weight"].double()
        num += float(((module.weight.detach().double() - old) ** 2).sum())
        den += float((old ** 2).sum())
    return math.sqrt(num / den) if den else 0.0


def _spec_dict(spec: FakeQuantSpec) -> dict:
    return {"activations": spec.activations, "reduce_range": spec.reduce_range,
            "averaging_constant": spec.averaging_constant}
