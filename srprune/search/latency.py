"""The ``latency`` strategy: per-unit widths chosen by measured ORT latency, not parameters.

A plan's latency is predicted from a :class:`~srprune.measure.latency_table.LatencyTable`
(every convolution measured alone at its planned channel counts and real input size, cached
per machine and thread count) plus the rest of the network, measured once on the unpruned
model. ORT's profile of the unpruned model (:mod:`srprune.measure.profile`) calibrates this
(``nonconv``): the table is scaled to the convs' measured share of the run (a conv timed
alone carries layout changes it does not have inside the net), and the rest is split into
fixed work (the bicubic resize of the input, anything writing image-sized tensors) and work
on feature tensors (adds, attention, layout reorders, PixelShuffle), predicted to shrink
with the conv outputs' elements. Starting from the full widths, a greedy search takes one
step (an eighth of a unit's width by default) at a time from the unit where it saves the
most predicted time per unit of expected quality lost, until the prediction meets the
target. Expected quality loss of a unit at width w, with calibration data: the measured mean
change of the SR output when that unit alone is narrowed to w channels (``order`` "l1", the
default: its w strongest channels by L1 filter mass stay, nothing else changes; "criterion":
the run's criterion chooses the channels and updates their consumers, with the run's bias
compensation, :mod:`srprune.search.narrowing`); without data: the share of its L1 filter mass
outside the w largest (the channels ``l1`` would drop). The "criterion" order prices each unit
as the run will cut it (on SPAN x4 the "l1" order prices halving ``conv_cat`` at 16.9 dB, which
``cp`` does for almost nothing), yet on SPAN x4 at 2x its plans were worse, not better (mean of
3 seeds, benchmarks/RESULTS.md); likely (not measured) because the greedy adds single-unit
losses, and cheaper-looking units are cut deeper until their losses compound.

Widths stay multiples of the width ORT's blocked NCHWc convs accept on this CPU
(:func:`~srprune.measure.nchwc.nchwc_alignment`, probed; ``align``): a conv reading any other
width falls back to ORT's slower NCHW path, and so does every conv after it, which the
per-conv table, measured one conv at a time, cannot see. The plan is then measured end to end
(cut into a copy of the model, timed interleaved with the unpruned one) and, while it is
slower than the target or more than ``TOLERANCE`` faster, the predicted goal moves by the
measured miss and the search narrows or widens (``refine`` rounds). After pruning, the engine
calls :meth:`verify`: the unpruned and pruned models are timed end to end once more, and the
report puts that measurement beside the target and the prediction.

With ``depth``, whole residual blocks (:mod:`srprune.models.depth`) compete with width steps
in the same greedy: a block saves its convs' predicted time plus its measured non-conv time
(attention, adds: measured once per kind of block by timing the model without them) and
costs its measured quality loss (the SR output change with the block removed). The engine
removes the chosen blocks before any channel is cut, so criteria see the shallower net.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.export import export_onnx
from srprune.measure.latency import ort_latency
from srprune.measure.latency_table import ConvShape, LatencyTable, conv_inputs
from srprune.measure.profile import TimeSplit, profile_split
from srprune.models.depth import inside_blocks, remove_blocks
from srprune.models.srmodel import SRModel
from srprune.prune.contracts import Context, CostModel, Plan, Unit
from srprune.search.base import Strategy, register_strategy
from srprune.search.depth import BLOCK, Depth, measure_depth, removed_in
from srprune.search.narrowing import narrowed

TOLERANCE = 0.03  # a measured plan this much faster than needed is widened again


@register_strategy("latency")
class LatencyTarget(Strategy):
    """Widths that meet ``target_ms`` (or ``speedup`` over the unpruned model) at the run's
    ``--input-size`` with ``threads`` ORT threads, losing the least L1 mass.

    Options: ``target_ms`` or ``speedup`` (one of them), ``threads`` (1), ``levels`` (8:
    widths move in steps of 1/levels of a unit's width), ``runs`` (9: timed runs of the
    end-to-end measurements), ``table`` (a latency-table file; default: the cache),
    ``align`` ("auto": the width multiple ORT's NCHWc convs accept here; an integer; 1 = any
    width): every unit whose width is a multiple of ``align`` keeps a multiple of it;
    ``refine`` (2: measured rounds), ``quality`` ("measured" or "l1-mass"), ``batches`` (2:
    calibration batches the sensitivities use), ``order`` ("l1": a unit's sensitivity is
    measured with its strongest channels by L1 filter mass kept; "criterion": with the run's
    criterion choosing the channels and refitting their consumers, slower, and on SPAN x4 at
    2x not better: 26.2 against 27.4 dB, mean of 3 seeds, benchmarks/RESULTS.md), ``depth``
    (false: also remove whole residual
    blocks, chosen in the same greedy by measured time saved per measured quality lost;
    needs calibration data), ``nonconv`` ("profile": ORT's profile of the unpruned model
    scales the table to the convs' share of the run and splits the rest into fixed time and
    time that shrinks with the conv outputs' elements; "fixed": the table as measured, all
    other time constant).
    """

    uses_ratio = False

    def __init__(self, target_ms: float | None = None, speedup: float | None = None,
                 threads: int = 1, levels: int = 8, runs: int = 9,
                 table: str | None = None, align: int | str = "auto",
                 refine: int = 2, quality: str = "measured", batches: int = 2,
                 depth: bool = False, nonconv: str = "profile",
                 order: str = "l1") -> None:
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
        if align != "auto" and not (str(align).isdigit() and int(align) >= 1):
            raise SrpruneError(f"latency: align must be 'auto' or an integer >= 1, got {align!r}")
        self.align = align
        if int(refine) < 0:
            raise SrpruneError(f"latency: refine must be >= 0, got {refine}")
        self.refine = int(refine)
        if quality not in ("measured", "l1-mass"):
            raise SrpruneError(f"latency: quality must be 'measured' or 'l1-mass', got "
                               f"{quality!r}")
        if int(batches) < 1:
            raise SrpruneError(f"latency: batches must be >= 1, got {batches}")
        self.quality, self.batches = quality, int(batches)
        if depth and quality != "measured":
            raise SrpruneError("latency: depth=true needs quality=measured (a block's quality "
                               "loss has no L1-mass stand-in)")
        self.depth = bool(depth)
        if nonconv not in ("profile", "fixed"):
            raise SrpruneError(f"latency: nonconv must be 'profile' or 'fixed', got "
                               f"{nonconv!r}")
        self.nonconv = nonconv
        if order not in ("criterion", "l1"):
            raise SrpruneError(f"latency: order must be 'criterion' or 'l1', got {order!r}")
        self.order = order
        self.sensitivity_order = "l1"
        self.needs_data = self.depth  # block losses are measured: checked before any work
        self.removed_blocks: list[str] = []
        self.report: dict[str, Any] = {}

    @property
    def mac_share_needed(self) -> float:
        """The least share of the MACs a ``speedup`` target must remove (0 for ``target_ms``,
        unknown before the unpruned model is timed): the engine's ``auto`` scope reads it."""
        return 1.0 - 1.0 / self.speedup if self.speedup else 0.0

    def _block(self) -> int:
        """The width multiple units keep: what ORT's NCHWc convs accept here, or ``align``."""
        if self.align == "auto":
            from srprune.measure.nchwc import nchwc_alignment
            return nchwc_alignment()
        return int(self.align)

    def _steps(self, unit: Unit, block: int) -> tuple[int, int]:
        """(step, floor) of a unit's width: multiples of ``block`` when its width is one."""
        step = max(1, math.ceil(unit.width / self.levels))
        if block > 1 and unit.width % block == 0:
            step = max(block, round(step / block) * block)
            return step, block
        return step, min(unit.width, step)

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
    def _l1_scores(unit: Unit) -> torch.Tensor:
        """L1 filter mass per channel of the unit, summed over the layers that write it."""
        scores = torch.zeros(unit.width, dtype=torch.float64)
        for _, module, index in unit.producer_modules():
            rows = module.weight.detach().abs().flatten(1).sum(1).double().cpu()
            scores += rows[index.cpu()].sum(1)
        return scores

    @classmethod
    def _importance(cls, unit: Unit) -> torch.Tensor:
        """L1 filter mass per channel, sorted high to low, as a share of the total."""
        scores = cls._l1_scores(unit)
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
        positions = {n: cost.out_positions(n) for n in full}

        def volume(names: Sequence[str], widths: dict) -> int:
            """Output elements of these layers at these widths (what feature-tensor work
            scales with)."""
            return sum(widths[n][2] * positions[n] for n in names)

        volume_full = volume(list(full), full)
        split = self._profile(ctx, input_size) if self.nonconv == "profile" else None
        calibrated = split is not None and split.conv > 0 and conv_full > 0 and volume_full
        if calibrated:
            # The table times each conv alone (layout changes around it included); the
            # profile says what share of the real run the convs take: the table is scaled
            # to that share, and the rest split into fixed and width-scaled work.
            conv_scale = base_ms * split.conv / split.total / conv_full
            scaled_ms = base_ms * split.width_scaled / split.total
            fixed_rest = base_ms - conv_scale * conv_full - scaled_ms
        else:
            conv_scale, scaled_ms = 1.0, 0.0
            fixed_rest = max(0.0, base_ms - conv_full)
        whole = fixed_rest + scaled_ms + conv_scale * conv_full
        scale = base_ms / whole if whole > 0 else 1.0
        per_element = scaled_ms / volume_full if volume_full else 0.0

        def convs(names: Sequence[str], widths: dict) -> float:
            return conv_scale * self._conv_ms(names, widths, table, inputs)
        target = self.target_ms if self.target_ms is not None else base_ms / self.speedup

        keep: dict[str, int] = {u.name: u.width for u in units}
        block = self._block()
        steps, floor = {}, {}
        for u in units:
            steps[u.name], floor[u.name] = self._steps(u, block)
        mass = {u.name: self._importance(u) for u in units}
        layers = {u.name: cost.layers_of(u.name) for u in units}
        loss = self._sensitivity(ctx, units, steps, floor) if self.quality == "measured" \
            else None
        depth = measure_depth(
            ctx, list(full), lambda names: convs(names, full),
            lambda a, b: self._measure(a, b, input_size=input_size), scale, self.batches,
        ) if self.depth else Depth()
        inside = {u.name: depth.enclosing(layers[u.name]) for u in units}
        block_of = {n: depth.enclosing([n]) for n in full}  # once, not in every prediction

        def live(names: Sequence[str], removed: set[str]) -> list[str]:
            return [n for n in names if block_of[n] not in removed]

        def layer_ms(names: Sequence[str], widths: dict, removed: set[str]) -> float:
            """Predicted ms of these layers' convs and of the feature-tensor work that
            scales with their outputs."""
            alive = live(names, removed)
            return convs(alive, widths) + per_element * volume(alive, widths)

        # a block's measured non-conv time beyond the share that scales with its outputs
        extra = {b: depth.overhead_ms[b] - per_element * volume(depth.layers[b], full)
                 for b in depth.names}

        def lost_by(name: str, width: int, new: int) -> float:
            """Expected quality lost narrowing unit ``name`` from ``width`` to ``new``."""
            if loss is not None:
                return loss[name][new] - loss[name][width]
            return float(mass[name][new:width].sum())

        def predict(plan: dict[str, int]) -> float:
            removed = removed_in(plan)
            widths = cost.layer_widths(plan)
            fixed = fixed_rest - sum(extra[b] for b in removed)
            return scale * (fixed + layer_ms(list(widths), widths, removed))

        smallest = predict({**floor, **{BLOCK + b: 0 for b in depth.names}})
        if smallest > target:
            table.save()
            raise SrpruneError(
                f"latency target {target:.2f} ms is out of reach: the smallest model the graph "
                f"allows in this scope is predicted at {smallest:.2f} ms (unpruned "
                f"{base_ms:.2f} ms, {self.threads} thread(s), input {input_size[0]}x"
                f"{input_size[1]})" + ("" if any(u.kind != "internal" for u in units) else
                                       "; --scope all lets the trunks go too"))
        total_steps = sum((keep[n] - floor[n]) // steps[n] + 1 for n in keep) \
            + len(depth.names)
        done = 0

        def narrow(goal: float) -> float:
            """Narrow ``keep`` (or remove blocks) greedily until the prediction is at most
            ``goal`` ms."""
            nonlocal done
            predicted = predict(keep)
            while predicted > goal:
                removed = removed_in(keep)
                widths = cost.layer_widths(keep)
                best, best_gain = None, -math.inf
                for unit in units:
                    name = unit.name
                    new = keep[name] - steps[name]
                    if new < floor[name] or inside[name] in removed:
                        continue
                    changed = cost.layer_widths({**keep, name: new}, layers[name])
                    saved = (layer_ms(layers[name], widths, removed)
                             - layer_ms(layers[name], changed, removed))
                    gain = scale * saved / max(lost_by(name, keep[name], new), 1e-9)
                    if gain > best_gain:
                        best, best_gain = name, gain
                for name in depth.names:
                    if name in removed:
                        continue
                    saved = extra[name] + layer_ms(depth.layers[name], widths, removed)
                    gain = scale * saved / max(depth.loss[name], 1e-9)
                    if gain > best_gain:
                        best, best_gain = BLOCK + name, gain
                if best is None:
                    break
                if best.startswith(BLOCK):
                    keep[best] = 0
                else:
                    keep[best] -= steps[best]
                predicted = predict(keep)
                done += 1
                ctx.report("latency search", done, total_steps)
            return predicted

        def widen(goal: float) -> float:
            """Give steps (or blocks) back, most quality recovered per predicted ms first,
            while the prediction stays at most ``goal`` ms."""
            predicted = predict(keep)
            while True:
                removed = removed_in(keep)
                widths = cost.layer_widths(keep)
                best, best_gain = None, 0.0
                for unit in units:
                    name = unit.name
                    new = keep[name] + steps[name]
                    if new > unit.width or inside[name] in removed:
                        continue
                    changed = cost.layer_widths({**keep, name: new}, layers[name])
                    added = scale * (layer_ms(layers[name], changed, removed)
                                     - layer_ms(layers[name], widths, removed))
                    if predicted + added > goal:
                        continue
                    gain = lost_by(name, new, keep[name]) / max(added, 1e-9)
                    if gain > best_gain:
                        best, best_gain = name, gain
                for name in removed:
                    added = scale * (extra[name] + layer_ms(depth.layers[name], widths,
                                                            set()))
                    if predicted + added <= goal and \
                            depth.loss[name] / max(added, 1e-9) > best_gain:
                        best, best_gain = BLOCK + name, depth.loss[name] / max(added, 1e-9)
                if best is None:
                    return predicted
                if best.startswith(BLOCK):
                    del keep[best]
                else:
                    keep[best] += steps[best]
                predicted = predict(keep)

        def adjust(goal: float) -> float:
            return narrow(goal) if predict(keep) > goal else widen(goal)

        narrow(target)
        widen(target)  # a last step may overshoot (a block is a big one): give back the slack
        table.save()
        rounds = self._refine(ctx, keep, input_size, target, base_ms, predict, adjust)
        removed = removed_in(keep)
        self.removed_blocks = [b for b in depth.names if b in removed]
        self.report = {"clock": self.report.get("clock"),
                       "target_ms": round(target, 3), "unpruned_ms": round(base_ms, 3),
                       "predicted_ms": round(predict(keep), 3),
                       "threads": self.threads,
                       "input_size": list(input_size), "table": str(table.path),
                       "shapes_measured": table.measured, "machine": table.key,
                       "table_rejected": table.rejected,
                       "align": block, "refinements": rounds,
                       "nonconv": "profile" if calibrated else (
                           "fixed" if split is None else "fixed (the profile timed no conv)"),
                       "nonconv_ms": {"fixed": round(fixed_rest, 3),
                                      "width_scaled": round(scaled_ms, 3)},
                       "conv_scale": round(conv_scale, 4),
                       "quality_proxy": "measured" if loss is not None else "l1-mass"}
        if loss is not None:
            self.report["sensitivity_order"] = self.sensitivity_order
        if self.depth:
            self.report.update({"blocks_offered": len(depth.names),
                                "removed_blocks": list(self.removed_blocks),
                                "block_loss": {b: round(depth.loss[b], 4)
                                               for b in self.removed_blocks},
                                "block_overhead_ms": {
                                    str(k): round(v, 3) for k, v in depth.by_kind.items()}})
        for name in [k for k in keep if k.startswith(BLOCK)]:
            del keep[name]
        return keep

    def _profile(self, ctx: Context, input_size: tuple[int, int]) -> TimeSplit:
        """ORT's profile of the unpruned model, split into conv, width-scaled and fixed
        kernel time."""
        graph = getattr(ctx, "graph", None)
        channels = int(graph.example.shape[1]) if graph is not None else 3
        ctx.report("latency: profiling the unpruned model", 0, 1)
        with tempfile.TemporaryDirectory() as folder:
            path = export_onnx(ctx.model, Path(folder) / "unpruned.onnx", input_size).path
            split = profile_split(path, input_size, self.threads, runs=2,
                                  image_channels=channels)
        ctx.report("latency: profiling the unpruned model", 1, 1)
        return split

    # -- measured sensitivity -------------------------------------------------------------

    def _sensitivity(self, ctx: Context, units: Sequence[Unit], steps: dict[str, int],
                     floor: dict[str, int]) -> dict[str, dict[int, float]] | None:
        """Mean |SR - SR of the unpruned model| (0..255) on calibration LR patches with only
        one unit narrowed, for every unit and every width the search can give it.

        A unit is narrowed by :func:`~srprune.search.narrowing.narrowed`: with ``order``
        "criterion" and the run's criterion in ``ctx`` (the engine puts it there), that
        criterion chooses the channels and updates their consumers, with the run's bias
        compensation; otherwise the channels with the lowest L1 filter mass (the ones ``l1``
        drops) are zeroed. None without calibration data: the search then uses L1 mass alone.
        """
        if not ctx.batches:
            return None
        criterion = getattr(ctx, "criterion", None) if self.order == "criterion" else None
        compensate = bool(getattr(ctx, "compensate", False))
        self.sensitivity_order = "l1" if criterion is None else (
            getattr(ctx, "criterion_name", "") or type(criterion).__name__)
        if criterion is not None:
            criterion.prepare(ctx)
        inputs = [lr[0].to(ctx.device) for lr, _ in ctx.batches[:self.batches]]
        model = ctx.model
        table: dict[str, dict[int, float]] = {}
        with torch.no_grad():
            reference = [model(x) for x in inputs]
        for done, unit in enumerate(units, 1):
            order = None if criterion is not None else self._order(unit)
            table[unit.name] = {unit.width: 0.0}
            for width in range(unit.width - steps[unit.name], floor[unit.name] - 1,
                               -steps[unit.name]):
                with narrowed(unit, width, ctx, criterion, compensate, order), torch.no_grad():
                    table[unit.name][width] = float(np.mean(
                        [(model(x) - r).abs().mean().item()
                         for x, r in zip(inputs, reference, strict=True)]))
            ctx.report("latency sensitivity", done, len(units))
        return table

    @classmethod
    def _order(cls, unit: Unit) -> torch.Tensor:
        """The unit's channels by L1 filter mass, strongest first."""
        return torch.argsort(cls._l1_scores(unit), descending=True)

    # -- measured refinement --------------------------------------------------------------

    def _refine(self, ctx: Context, keep: dict[str, int], input_size: tuple[int, int],
                target: float, base_ms: float, predict: Callable[[dict], float],
                adjust: Callable[[float], float]) -> list[dict[str, Any]]:
        """Measure the plan end to end; while its share of the unpruned latency misses the
        wanted share (slower, or more than ``TOLERANCE`` faster than needed), move the
        predicted goal by the measured miss and narrow or widen (``refine`` rounds, then one
        last measurement). A plan that ends slower than the target falls back to the widest
        measured plan that met it."""
        rounds: list[dict[str, Any]] = []
        wanted = target / base_ms
        met: list[tuple[float, dict[str, int]]] = []
        total = self.refine + 1 if self.refine else 0
        for i in range(total):
            ctx.report("latency: timing the plan", i, total)
            predicted = predict(keep)
            unpruned_ms, plan_ms = self._measure(ctx.model, _pruned_copy(ctx, keep),
                                                 input_size=input_size)
            share = plan_ms / unpruned_ms
            rounds.append({"predicted_ms": round(predicted, 3),
                           "measured_ms": round(plan_ms, 3),
                           "measured_unpruned_ms": round(unpruned_ms, 3)})
            if share <= wanted:
                met.append((share, dict(keep)))
            if i == self.refine or wanted * (1 - TOLERANCE) <= share <= wanted:
                break
            # measured / predicted share of the unpruned latency: the prediction's miss
            miss = share / (predicted / base_ms)
            before = dict(keep)
            adjust(target / miss * (1 - 0.01 * (i + 1)))  # and a growing margin
            if keep == before:
                break
        if rounds:
            ctx.report("latency: timing the plan", total, total)
        if rounds and share > wanted and met:
            widest = max(met, key=lambda m: m[0])[1]
            keep.clear()
            keep.update(widest)
        return rounds

    # -- measurement ---------------------------------------------------------------------

    def _measure(self, *models: SRModel, input_size: tuple[int, int] | None = None) -> Any:
        """Median ORT latency (ms) of each model, timed in one interleaved run."""
        size = input_size or self.report.get("input_size")
        with tempfile.TemporaryDirectory() as folder:
            paths = [export_onnx(m, Path(folder) / f"m{i}.onnx", tuple(size)).path
                     for i, m in enumerate(models)]
            results = ort_latency(paths, tuple(size), threads=self.threads, runs=self.runs,
                                  warmup=2)
        medians = [self._clock(r) for r in results]
        return medians[0] if len(medians) == 1 else medians

    def _clock(self, result: Any) -> float:
        """The median the search trusts: at one thread the process CPU time (what the run
        takes on an idle core: a busy machine preempts the thread and inflates the wall
        time unevenly: on SPAN x4 under load a search read 3.50x by the wall clock for a plan
        that timed 2.22x beside the others), else the wall time."""
        cpu = getattr(result, "cpu_stats", None)
        if self.threads == 1 and cpu is not None and cpu.median > 0:
            self.report["clock"] = "process CPU time (1 thread)"
            return float(cpu.median)
        self.report["clock"] = "wall"
        return float(result.stats.median)

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


def _pruned_copy(ctx: Context, keep: dict[str, int]) -> SRModel:
    """A copy of the unpruned model cut to the plan's widths (first channels kept: latency
    depends on the widths, not on which channels stay), without the blocks it removes."""
    from srprune.prune.graph import SRGraph

    model = copy.deepcopy(ctx.model)
    graph = SRGraph(model.net, model.scale, screen=False, **ctx.graph.settings)
    by_name = {u.name: u for u in graph.all_units()}
    removed = removed_in(keep)
    for name, width in keep.items():
        unit = by_name.get(name)
        if unit is None or width >= unit.width \
                or inside_blocks((*unit.producers, *unit.consumers), removed):
            continue
        graph.prune(unit, list(range(width)))
    remove_blocks(model.net, removed)
    return model
