"""Distillation from the unpruned model while fine-tuning a pruned one.

The teacher (the model before pruning) runs in eval mode without gradients on the student's
LR batch. Two terms, each added to the DR loss with its own weight:

* **output** (``weight``, ``--distill-weight``): mean L1 between the student's final SR image
  and the teacher's, on the [0, 255] scale like the DR loss;
* **features** (``feature_weight``, ``--distill-features``): at every *unit consumer*, i.e.
  each conv whose input channels pruning reduced (found by comparing the two nets' convs of
  the same name), the mean L1 between the student's and the teacher's conv outputs, averaged
  over those layers. Where the conv's output channels were pruned too, the two outputs have
  different widths and are compared as channel-mean maps (N x 1 x H x W). No projection
  layers: nothing new is trained.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from srprune.errors import SrpruneError
from srprune.hooks import hooked
from srprune.models.srmodel import SRModel


def check_weights(weight: float, feature_weight: float, flags: bool = True) -> None:
    """Both weights are finite numbers >= 0 (one-line ``SrpruneError`` naming the flag)."""
    for name, value in (("distill-weight", weight), ("distill-features", feature_weight)):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and value >= 0)
        if not ok:
            label = f"--{name}" if flags else name.replace("-", "_")
            raise SrpruneError(f"{label} must be a finite number >= 0, got {value!r}")


def consumer_layers(teacher: nn.Module, student: nn.Module) -> list[str]:
    """Names of the student's convs whose input channels pruning reduced (unit consumers)."""
    theirs = dict(teacher.named_modules())
    names = []
    for name, module in student.named_modules():
        other = theirs.get(name)
        if (isinstance(module, nn.Conv2d) and isinstance(other, nn.Conv2d)
                and module.in_channels < other.in_channels):
            names.append(name)
    return names


def feature_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L1 of two conv outputs: elementwise when the widths agree, else of channel means."""
    if student.shape != teacher.shape:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    return F.l1_loss(student, teacher.to(student.dtype))


class Distiller:
    """The distillation term of one fine-tuning run (see the module docstring).

    Use :meth:`watch` around the student's forward pass, then :meth:`loss` on the same LR
    batch; the teacher is put in eval mode and its parameters stop requiring gradients.
    """

    def __init__(self, teacher: SRModel, student: SRModel, weight: float,
                 feature_weight: float = 0.0) -> None:
        check_weights(weight, feature_weight, flags=False)
        if teacher.scale != student.scale:
            raise SrpruneError(f"the teacher is x{teacher.scale}, the student x{student.scale}; "
                               "distil from a model of the same scale")
        self.teacher, self.student = teacher, student
        self.weight, self.feature_weight = float(weight), float(feature_weight)
        self.layers = consumer_layers(teacher.net, student.net) if feature_weight else []
        if feature_weight and not self.layers:
            raise SrpruneError("--distill-features: no layer of the student has fewer input "
                               "channels than the teacher's (is the student pruned, and the "
                               "teacher the model it was pruned from?)")
        teacher.net.eval()
        for p in teacher.net.parameters():
            p.requires_grad_(False)
        self._student_out: torch.Tensor | None = None
        self._student_feats: dict[str, torch.Tensor] = {}

    def to(self, device: str | torch.device) -> Distiller:
        self.teacher.net.to(device)
        return self

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Record the student's final output and consumer features during the block."""
        self._student_out, self._student_feats = None, {}

        def final(_m: nn.Module, _i: tuple, out: object) -> None:
            self._student_out = out[-1] if isinstance(out, (list, tuple)) else out

        with _hooks(self.student.net, self.layers, self._student_feats, final):
            yield

    def loss(self, lr: torch.Tensor) -> torch.Tensor:
        """The weighted distillation term for the batch the student just saw."""
        if self._student_out is None:
            raise RuntimeError("Distiller.loss needs a student forward pass inside watch()")
        feats: dict[str, torch.Tensor] = {}
        with torch.no_grad(), _hooks(self.teacher.net, self.layers, feats):
            out = self.teacher.net(lr)
        target = out[-1] if isinstance(out, (list, tuple)) else out
        total = self.weight * F.l1_loss(self._student_out, target.to(self._student_out.dtype))
        if self.layers:
            terms = [feature_l1(self._student_feats[n], feats[n]) for n in self.layers]
            total = total + self.feature_weight * torch.stack(terms).mean()
        self._student_out, self._student_feats = None, {}
        return total


def _hooks(net: nn.Module, layers: list[str], store: dict[str, torch.Tensor],
           final: Callable[..., None] | None = None) -> contextlib.AbstractContextManager:
    """Hooks (through ``srprune.hooks``) storing each named layer's output in ``store``."""
    modules = dict(net.named_modules())

    def keeper(name: str) -> Callable[..., None]:
        def keep(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            store[name] = out
        return keep

    pairs = [(modules[name], keeper(name)) for name in layers]
    if final is not None:
        pairs.append((net, final))
    return hooked(pairs)
