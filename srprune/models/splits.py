"""Channel splits that follow pruning.

Many SR blocks split a feature map along its channels with sizes written into their code
(``torch.split(x, [16, 48], dim=1)`` in IMDN, ``x.chunk(2, dim=1)`` elsewhere). Once the
channels before such a split are pruned, those sizes are wrong. Instead of editing the
block's code, srprune numbers every split call of one forward pass in execution order and,
for a pruned model, replays the calls whose sizes changed with their new sizes.

What it changes, and only on a pruned model: the net's class becomes a subclass of its own
class whose ``forward`` runs the original one under a ``TorchFunctionMode`` that rewrites
those calls (``torch.split``, ``Tensor.split``, ``torch.chunk``, ``Tensor.chunk``). The state
dict, the module tree and every other call are unchanged; the table is the attribute
``_srprune_channel_splits`` (``{call number: [sizes]}``), saved in artifacts and re-installed
when they load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

SPLIT_FUNCS: frozenset[Callable] = frozenset(
    {torch.split, torch.Tensor.split, torch.chunk, torch.Tensor.chunk})
TABLE_ATTR = "_srprune_channel_splits"


def _split_dim(func: Callable, args: tuple, kwargs: dict) -> tuple[torch.Tensor, int]:
    """The tensor and (non-negative) dimension a split or chunk call works on."""
    tensor = args[0] if args else kwargs.get("input", kwargs.get("tensor", kwargs.get("self")))
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    return tensor, int(dim) % max(1, tensor.dim())


class SplitRecorder(TorchFunctionMode):
    """Records every split/chunk call it sees, in order.

    Each entry of ``calls`` is ``(number, dim, sizes, grad_fn)``: the call's number within
    its forward pass (call :meth:`new_pass` when one starts, e.g. from a forward pre-hook on
    the net), and ``grad_fn`` of its first output, which Torch-Pruning's split node keeps too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int, list[int], Any]] = []
        self.count = 0

    def new_pass(self, *_args: Any) -> None:
        self.count = 0

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in SPLIT_FUNCS:
            _, dim = _split_dim(func, args, kwargs)
            parts = list(out)
            self.calls.append((self.count, dim, [int(p.shape[dim]) for p in parts],
                               parts[0].grad_fn if parts else None))
            self.count += 1
        return out


class _SplitReplay(TorchFunctionMode):
    """Replays the numbered split calls of one forward pass with the sizes of ``table``."""

    def __init__(self, table: dict[int, list[int]]) -> None:
        super().__init__()
        self.table, self.count = table, 0

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func not in SPLIT_FUNCS:
            return func(*args, **kwargs)
        number, self.count = self.count, self.count + 1
        sizes = self.table.get(number)
        if sizes is None:
            return func(*args, **kwargs)
        tensor, dim = _split_dim(func, args, kwargs)
        return torch.split(tensor, list(sizes), dim=dim)


def _replaying_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    base = type(self).__mro__[1]
    table = getattr(self, TABLE_ATTR, None)
    if not table:
        return base.forward(self, *args, **kwargs)
    with _SplitReplay(table):
        return base.forward(self, *args, **kwargs)


def set_channel_splits(net: nn.Module, table: dict[int, list[int]]) -> None:
    """Make ``net`` replay its numbered split calls with the sizes in ``table``."""
    cls = type(net)
    if not getattr(cls, "_srprune_replays_splits", False):
        net.__class__ = type(cls.__name__, (cls,), {
            "forward": _replaying_forward, "_srprune_replays_splits": True,
            "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    setattr(net, TABLE_ATTR, {int(k): [int(s) for s in v] for k, v in table.items()})


def channel_splits(net: nn.Module) -> dict[int, list[int]]:
    """The split table ``net`` replays (empty for a model whose splits never changed)."""
    return dict(getattr(net, TABLE_ATTR, {}) or {})
