"""Pruning plans (kept width per unit) and their exact cost before anything is pruned.

A plan maps each unit's name to the number of channels it keeps. :class:`PlanCost` predicts
the primal net's parameters and MACs for any plan from the layer/unit coupling alone, so
strategies can search plans in microseconds; tests check the prediction against the real
pruned model.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.prune.graph import PruningUnit, SRGraph

Plan = dict[str, int]


@dataclass
class _Dim:
    fixed: int
    parts: list[tuple[str, int]]  # (unit name, channels per unit channel)

    def size(self, keep: Plan, widths: dict[str, int]) -> int:
        return self.fixed + sum(m * keep.get(u, widths[u]) for u, m in self.parts)


class PlanCost:
    """Parameters and MACs of the primal net under a plan (no pruning needed)."""

    def __init__(self, graph: SRGraph, input_size: tuple[int, int] = (96, 96)) -> None:
        self.units = graph.all_units()
        self.widths = {u.name: u.width for u in self.units}
        self._layers: dict[str, tuple[nn.Module, _Dim, _Dim]] = {}
        outs: dict[str, list[tuple[str, int]]] = {}
        ins: dict[str, list[tuple[str, int]]] = {}
        for unit in self.units:
            for member in unit.members():
                target = outs if member.dim == "out" else ins
                target.setdefault(member.name, []).append((unit.name, member.per_channel))
        self._channelwise: dict[str, tuple[int, _Dim]] = {}
        self._fixed_params = 0
        for name, module in graph.net.named_modules():
            direct = sum(p.numel() for p in module.parameters(recurse=False))
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                c_out, c_in = layer_channels(module)
                self._layers[name] = (module, self._dim(c_out, outs.get(name, [])),
                                      self._dim(c_in, ins.get(name, [])))
            elif direct and name in outs:
                channels = _dim_total(outs[name], self.widths)
                self._channelwise[name] = (direct // max(1, channels),
                                           _Dim(0, outs[name]))
            else:
                self._fixed_params += direct
        self._positions = _output_positions(graph.net, graph.example, input_size)
        self.input_size = input_size

    def _dim(self, total: int, parts: list[tuple[str, int]]) -> _Dim:
        return _Dim(total - _dim_total(parts, self.widths), parts)

    def params(self, keep: Plan) -> int:
        total = self._fixed_params
        for module, d_out, d_in in self._layers.values():
            total += _layer_params(module, d_out.size(keep, self.widths),
                                   d_in.size(keep, self.widths))
        for per_channel, dim in self._channelwise.values():
            total += per_channel * dim.size(keep, self.widths)
        return total

    def macs(self, keep: Plan) -> int:
        total = 0
        for name, (module, d_out, d_in) in self._layers.items():
            c_out, c_in = d_out.size(keep, self.widths), d_in.size(keep, self.widths)
            groups = _groups_after(module, c_in, c_out)
            kernel = math.prod(module.kernel_size) if isinstance(module, nn.Conv2d) else 1
            total += kernel * (c_in // groups) * c_out * self._positions.get(name, 0)
        return total

    def reduction(self, keep: Plan) -> float:
        """Fraction of the current primal parameters removed by ``keep``."""
        return 1.0 - self.params(keep) / self.params({})


def _dim_total(parts: list[tuple[str, int]], widths: dict[str, int]) -> int:
    return sum(m * widths[u] for u, m in parts)


def layer_channels(module: nn.Module) -> tuple[int, int]:
    """(output, input) channels of a conv or linear layer."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    return module.out_channels, module.in_channels


def _depthwise(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.groups > 1
            and module.groups == module.in_channels == module.out_channels)


def _groups_after(module: nn.Module, c_in: int, c_out: int) -> int:
    if _depthwise(module):
        return c_in
    return module.groups if isinstance(module, nn.Conv2d) else 1


def _layer_params(module: nn.Module, c_out: int, c_in: int) -> int:
    groups = _groups_after(module, c_in, c_out)
    kernel = math.prod(module.kernel_size) if isinstance(module, nn.Conv2d) else 1
    bias = c_out if module.bias is not None else 0
    return kernel * (c_in // groups) * c_out + bias


def _output_positions(net: nn.Module, example: torch.Tensor,
                      input_size: tuple[int, int]) -> dict[str, int]:
    """Output positions (batch 1) per conv/linear call summed over calls, at ``input_size``."""
    shadow = copy.deepcopy(net).to("meta")
    names = {m: n for n, m in shadow.named_modules()}
    positions: dict[str, int] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        channels = output.shape[1] if output.dim() > 1 else 1
        n = output.numel() // channels if output.dim() == 4 else output.numel() // output.shape[-1]
        positions[names[module]] = positions.get(names[module], 0) + n

    handles = [m.register_forward_hook(hook) for m in shadow.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        shadow(torch.zeros(1, example.shape[1], *input_size, device="meta"))
    for h in handles:
        h.remove()
    return positions


# ----------------------------------------------------------------- plan files


def plan_to_json(units: list[PruningUnit], keep: Plan) -> dict:
    """Our JSON plan: ``{"units": {name: kept width}, "original": {name: width}}``."""
    return {"format": "srprune-plan", "units": {u.name: keep.get(u.name, u.width) for u in units},
            "original": {u.name: u.original_width for u in units}}


def plan_to_text(units: list[PruningUnit], keep: Plan) -> str:
    """The authors' channel-config text format: one kept width per unit, network order."""
    return "".join(f"{keep.get(u.name, u.width)}\n" for u in units)


def read_plan(path: str | Path, units: list[PruningUnit]) -> Plan:
    """Read a JSON plan or an authors'-format text plan for these units."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SrpruneError(f"cannot read plan {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        return _plan_from_json(text, path, units)
    return _plan_from_text(text, path, units)


def _plan_from_json(text: str, path: Path, units: list[PruningUnit]) -> Plan:
    try:
        data = json.loads(text)
        widths = data["units"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise SrpruneError(f"{path}: not a plan (expected JSON with a 'units' object)") from None
    by_name = {u.name: u for u in units}
    unknown = [n for n in widths if n not in by_name]
    if unknown:
        raise SrpruneError(f"{path}: unit '{unknown[0]}' is not a prunable unit of this model")
    plan = {}
    for name, value in widths.items():
        if not isinstance(value, int):
            raise SrpruneError(f"{path}: width of {name} is not an integer: {value!r}")
        plan[name] = _check_width(value, by_name[name], f"{path}: unit {name}")
    return plan


def _plan_from_text(text: str, path: Path, units: list[PruningUnit]) -> Plan:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) != len(units):
        raise SrpruneError(f"{path}: plan has {len(lines)} lines, the model has {len(units)} "
                           "prunable units in this scope")
    plan = {}
    for number, (line, unit) in enumerate(zip(lines, units), start=1):
        try:
            value = int(line)
        except ValueError:
            raise SrpruneError(f"{path}: line {number} is not an integer: {line!r}") from None
        plan[unit.name] = _check_width(value, unit, f"{path}: line {number}")
    return plan


def _check_width(value: int, unit: PruningUnit, where: str) -> int:
    if not 1 <= value <= unit.width:
        raise SrpruneError(f"{where}: width {value} is outside 1..{unit.width} "
                           "(the current width)")
    return value
