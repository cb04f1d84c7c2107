"""Pruning plans (kept width per unit) and their exact cost before anything is pruned.

A plan maps each unit's name to the number of channels it keeps. :class:`PlanCost` predicts
the primal net's parameters and MACs for any plan from the layer/unit coupling alone, so
strategies can search plans in microseconds; tests check the prediction against the real
pruned model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from srprune.errors import SrpruneError
from srprune.io.widths import check_width, format_width_lines, parse_width_lines, read_text
from srprune.measure.cost import layer_channels, layer_macs, layer_params, meta_calls
from srprune.prune.contracts import Plan, Unit
from srprune.prune.graph import SRGraph


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
        self._calls, _ = meta_calls(graph.net, input_size, graph.example.shape[1])
        self.input_size = input_size

    def _dim(self, total: int, parts: list[tuple[str, int]]) -> _Dim:
        return _Dim(total - _dim_total(parts, self.widths), parts)

    def params(self, keep: Plan) -> int:
        total = self._fixed_params
        for module, d_out, d_in in self._layers.values():
            total += layer_params(module, d_in.size(keep, self.widths),
                                  d_out.size(keep, self.widths))
        for per_channel, dim in self._channelwise.values():
            total += per_channel * dim.size(keep, self.widths)
        return total

    def macs(self, keep: Plan) -> int:
        total = 0
        for name, (module, d_out, d_in) in self._layers.items():
            calls = self._calls.get(name)
            if calls is not None:  # a layer the forward pass never calls costs no MACs
                total += layer_macs(module, d_in.size(keep, self.widths),
                                    d_out.size(keep, self.widths), calls)
        return total

    def layer_widths(self, keep: Plan, names: Sequence[str] | None = None,
                     ) -> dict[str, tuple[nn.Module, int, int]]:
        """``(module, c_in, c_out)`` of every conv/linear layer (or of ``names``) under
        ``keep``."""
        chosen = self._layers if names is None else {n: self._layers[n] for n in names}
        return {name: (module, d_in.size(keep, self.widths), d_out.size(keep, self.widths))
                for name, (module, d_out, d_in) in chosen.items()}

    def out_positions(self, name: str) -> int:
        """Output elements per output channel of layer ``name`` in one forward pass (0 if
        the pass never calls it)."""
        calls = self._calls.get(name)
        return calls.out_positions if calls is not None else 0

    def layers_of(self, unit: str) -> list[str]:
        """Names of the conv/linear layers whose channel counts ``unit``'s width sets."""
        return [name for name, (_, d_out, d_in) in self._layers.items()
                if any(u == unit for u, _ in d_out.parts + d_in.parts)]

    def reduction(self, keep: Plan) -> float:
        """Fraction of the current primal parameters removed by ``keep``."""
        return 1.0 - self.params(keep) / self.params({})


def _dim_total(parts: list[tuple[str, int]], widths: dict[str, int]) -> int:
    return sum(m * widths[u] for u, m in parts)


# ----------------------------------------------------------------- plan files


def plan_to_json(units: Sequence[Unit], keep: Plan) -> dict:
    """Our JSON plan: ``{"units": {name: kept width}, "original": {name: width}}``."""
    return {"format": "srprune-plan", "units": {u.name: keep.get(u.name, u.width) for u in units},
            "original": {u.name: u.original_width for u in units}}


def plan_to_text(units: Sequence[Unit], keep: Plan) -> str:
    """The authors' channel-config text format: one kept width per unit, network order."""
    return format_width_lines([keep.get(u.name, u.width) for u in units])


def read_plan(path: str | Path, units: Sequence[Unit]) -> Plan:
    """Read a JSON plan or an authors'-format text plan for these units."""
    path = Path(path)
    text = read_text(path, "plan")
    if text.lstrip().startswith("{"):
        return _plan_from_json(text, path, units)
    return _plan_from_text(text, path, units)


def read_removed_blocks(path: str | Path) -> list[str]:
    """The residual blocks a JSON plan removes (``"removed_blocks"``; [] for text plans)."""
    path = Path(path)
    text = read_text(path, "plan")
    if not text.lstrip().startswith("{"):
        return []
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return []  # not a plan at all: read_plan says so
    value = data.get("removed_blocks", []) if isinstance(data, dict) else []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SrpruneError(f"{path}: 'removed_blocks' is not a list of module names")
    return value


def _plan_from_json(text: str, path: Path, units: Sequence[Unit]) -> Plan:
    try:
        data = json.loads(text)
        widths = data["units"]
    except (ValueError, KeyError, TypeError, RecursionError):  # ValueError: JSONDecodeError too
        widths = None
    if not isinstance(widths, dict):
        raise SrpruneError(f"{path}: not a plan (expected JSON with a 'units' object)")
    by_name = {u.name: u for u in units}
    unknown = [n for n in widths if n not in by_name]
    if unknown:
        from srprune.io.artifact import show_key

        raise SrpruneError(f"{path}: unit '{show_key(unknown[0])}' is not a prunable unit of "
                           "this model")
    plan = {}
    for name, value in widths.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise SrpruneError(f"{path}: width of {name} is not an integer: {value!r:.40}")
        plan[name] = check_width(value, by_name[name].width, f"{path}: unit {name}:",
                                 "the current width")
    return plan


def _plan_from_text(text: str, path: Path, units: Sequence[Unit]) -> Plan:
    values = parse_width_lines(text, str(path), [u.width for u in units], what="plan",
                               expected=" (one per prunable unit in this scope)",
                               bound="the current width")
    return {unit.name: value for unit, value in zip(units, values)}
