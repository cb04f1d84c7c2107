"""The ``latency`` strategy: per-unit widths chosen by measured ORT latency, not parameters.

A plan's latency is predicted from a :class:`~srprune.measure.latency_table.LatencyTable`
(every convolution measured alone at its planned channel counts and real input size, cached
per machine and thread count) plus the rest of the network, measured once on the unpruned
model. Starting from the full widths, a greedy search takes one step (an eighth of a unit's
width by default) at a time from the unit where it saves the most predicted time per unit of
expected quality lost, until the prediction meets the target. Expected quality loss of a unit
at width w: the share of its channels' L1 filter mass outside the w largest (the channels
the ``l1`` criterion would drop). After pruning, the engine calls :meth:`verify`: the
unpruned and pruned models are timed end to end in one interleaved ORT run, and the report
puts that measurement beside the target and the prediction.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.export import export_onnx
from srprune.measure.latency import ort_latency
from srprune.measure.latency_table import ConvShape, LatencyTable, conv_inputs
from srprune.models.srmodel import SRModel
from srprune.prune.contracts import Context, CostModel, Plan, Unit
from srprune.search.base import Strategy, register_strategy


@register_strategy("latency")
class LatencyTarget(Strategy):
    """Widths that meet ``target_ms`` (or ``speedup`` over the unpruned model) at the run's
    ``--input-size`` with ``threads`` ORT threads, losing the least L1 mass.

    Options: ``target_ms`` or ``speedup`` (one of them), ``threads`` (1), ``levels`` (8:
    widths move in steps of 1/levels of a unit's width), ``runs`` (9: timed runs of the
    end-to-end measurements), ``table`` (a latency-table file; default: the cache).
    """

    uses_ratio = False

    def __init__(self, target_ms: float | None = None, speedup: float | None = None,
                 threads: int = 1, levels: int = 8, runs: int = 9,
                 table: str | None = None) -> None:
        if (target_ms is None) == (speedup is None):
            raise SrpruneError("strategy latency needs exactly one of --target-latency MS "
                               "(target_ms) and --speedup X (speedup)")
        if target_ms is not None and not float(target_ms) > 0:
            raise SrpruneError(f"target latency must be positive, got {target_ms}")
        if speedup is not None and not float(speedup) > 1:
            raise SrpruneError(f"speedup must be above 1, got {speedup}")
        if int(threads) < 1 or int(levels) < 2 or int(runs) < 1:
            raise SrpruneError("latency: threads and runs must be >= 1 and levels >= 2")
        self.target_ms = None if target_ms is None else float(target_ms)
        self.speedup = None if speedup is None else float(speedup)
        self.threads, self.levels, self.runs = int(threads), int(levels), int(runs)
        self.table_path = table
        self.report: dict[str, Any] = {}

    # -- prediction ----------------------------------------------------------------------

    def _conv_ms(self, names: Sequence[str], widths: dict[str, tuple[nn.Module, int, int]],
                 table: LatencyTable, inputs: dict[str, list[tuple[int, int]]]) -> float:
        total = 0.0
        for name in names:
            module, c_in, c_out = widths[name]
            if isinstance(module, nn.Conv2d):
                total += sum(table(ConvShape.of(module, c_in, c_out, size))
                             for size in inputs.get(name, []))
        return total

    @staticmethod
    def _importance(unit: Unit) -> torch.Tensor:
        """L1 filter mass per channel, sorted high to low, as a share of the total."""
        scores = torch.zeros(unit.width, dtype=torch.float64)
        for _, module, index in unit.producer_modules():
            rows = module.weight.detach().abs().flatten(1).sum(1).double().cpu()
            scores += rows[index].sum(1)
        total = float(scores.sum()) or 1.0
        return torch.sort(scores, descending=True).values / total

    def plan(self, units: Sequence[Unit], ratio: float, ctx: Context, cost: CostModel) -> Plan:
        if not hasattr(cost, "layer_widths") or not hasattr(cost, "layers_of"):
            raise SrpruneError("strategy latency needs srprune's exact cost model")
        input_size = tuple(getattr(cost, "input_size", (96, 96)))
        table = LatencyTable(self.threads, self.table_path)
        inputs = conv_inputs(ctx.model.net, input_size)
        base_ms = self._measure(ctx.model, input_size=input_size)
        full = cost.layer_widths({})
        conv_full = self._conv_ms(list(full), full, table, inputs)
        rest = max(0.0, base_ms - conv_full)
        scale = base_ms / (rest + conv_full) if rest + conv_full > 0 else 1.0
        target = self.target_ms if self.target_ms is not None else base_ms / self.speedup

        keep = {u.name: u.width for u in units}
        steps = {u.name: max(1, math.ceil(u.width / self.levels)) for u in units}
        floor = {u.name: min(u.width, steps[u.name]) for u in units}
        mass = {u.name: self._importance(u) for u in units}
        layers = {u.name: cost.layers_of(u.name) for u in units}

        def predict(plan: Plan) -> float:
            widths = cost.layer_widths(plan)
            return scale * (rest + self._conv_ms(list(widths), widths, table, inputs))

        smallest = predict(floor)
        if smallest > target:
            table.save()
            raise SrpruneError(
                f"latency target {target:.2f} ms is out of reach: the smallest model the graph "
                f"allows in this scope is predicted at {smallest:.2f} ms (unpruned "
                f"{base_ms:.2f} ms, {self.threads} thread(s), input {input_size[0]}x"
                f"{input_size[1]})")
        predicted = predict(keep)
        total_steps = sum((keep[n] - floor[n]) // steps[n] + 1 for n in keep)
        done = 0
        while predicted > target:
            widths = cost.layer_widths(keep)
            best, best_gain = None, -math.inf
            for unit in units:
                name = unit.name
                new = keep[name] - steps[name]
                if new < floor[name]:
                    continue
                trial = {**keep, name: new}
                changed = cost.layer_widths(trial, layers[name])
                saved = (self._conv_ms(layers[name], widths, table, inputs)
                         - self._conv_ms(layers[name], changed, table, inputs))
                lost = float(mass[name][new:keep[name]].sum())
                gain = scale * saved / max(lost, 1e-9)
                if gain > best_gain:
                    best, best_gain = name, gain
            if best is None:
                break
            keep[best] -= steps[best]
            predicted = predict(keep)
            done += 1
            ctx.report("latency search", done, total_steps)
        table.save()
        self.report = {"target_ms": round(target, 3), "unpruned_ms": round(base_ms, 3),
                       "predicted_ms": round(predicted, 3), "threads": self.threads,
                       "input_size": list(input_size), "table": str(table.path),
                       "shapes_measured": table.measured, "machine": table.key}
        return keep

    # -- measurement ---------------------------------------------------------------------

    def _measure(self, *models: SRModel, input_size: tuple[int, int] | None = None) -> Any:
        """Median ORT latency (ms) of each model, timed in one interleaved run."""
        size = input_size or self.report.get("input_size")
        with tempfile.TemporaryDirectory() as folder:
            paths = [export_onnx(m, Path(folder) / f"m{i}.onnx", tuple(size)).path
                     for i, m in enumerate(models)]
            results = ort_latency(paths, tuple(size), threads=self.threads, runs=self.runs,
                                  warmup=2)
        medians = [r.stats.median for r in results]
        return medians[0] if len(medians) == 1 else medians

    def verify(self, original: SRModel, pruned: SRModel) -> dict[str, Any]:
        """Time the unpruned and pruned models end to end, interleaved; the report's figures."""
        before, after = self._measure(original, pruned,
                                      input_size=tuple(self.report["input_size"]))
        self.report.update({"measured_unpruned_ms": round(before, 3),
                            "measured_ms": round(after, 3),
                            "measured_speedup": round(before / after, 3),
                            # a speedup is checked as measured (both timed together);
                            # a target in ms against the clock
                            "met": (before / after >= self.speedup if self.speedup
                                    else after <= self.report["target_ms"])})
        return self.report
