"""The compression engine: model + ratio + criterion + strategy -> a physically smaller model.

The ratio is the paper's: the fraction of the primal network's parameters removed (dual nets
are not counted). The strategy turns it into kept widths per unit, computed to hit it; the
criterion picks which channels each unit keeps, unit by unit in network order; the graph
removes them from every coupled layer.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from srprune.config import RunConfig
from srprune.errors import SrpruneError
from srprune.measure.cost import Cost, model_cost
from srprune.models.depth import find_residual_blocks, inside_blocks, remove_blocks
from srprune.models.srmodel import SRModel
from srprune.prune.compensation import compensate_biases, consumer_state
from srprune.prune.context import PruneContext
from srprune.prune.contracts import Batch, ProgressFn  # ProgressFn: (stage, done, total)
from srprune.prune.factory import instantiate
from srprune.prune.graph import PruningUnit, SRGraph
from srprune.prune.plan import PlanCost, plan_to_json
from srprune.registry import CRITERIA, STRATEGIES


@dataclass
class CompressResult:
    """The pruned model and the evidence: costs, plan, quality and timings."""

    model: SRModel
    plan: dict[str, Any]
    before: Cost
    after: Cost
    ratio_requested: float | None  # None: the strategy takes widths, not a ratio
    criterion: str
    strategy: str
    scope: str
    seconds: dict[str, float] = field(default_factory=dict)
    quality_before: dict[str, Any] | None = None
    quality_pruned: dict[str, Any] | None = None  # after pruning, before fine-tuning
    quality_after: dict[str, Any] | None = None
    finetune: dict[str, Any] | None = None
    strategy_report: dict[str, Any] | None = None  # e.g. latency: target, predicted, measured

    @property
    def ratio_achieved(self) -> float:
        return 1.0 - self.after.params / self.before.params

    def summary(self) -> dict[str, Any]:
        """JSON-ready report."""
        data = {
            "criterion": self.criterion, "strategy": self.strategy, "scope": self.scope,
            "ratio_requested": self.ratio_requested,
            "ratio_achieved": round(self.ratio_achieved, 6),
            "params_before": self.before.params, "params_after": self.after.params,
            "macs_before": self.before.macs, "macs_after": self.after.macs,
            "paper_macs_before": self.before.paper_macs, "paper_macs_after": self.after.paper_macs,
            "input_size": list(self.before.input_size),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "units": len(self.plan["units"]),
        }
        if self.plan.get("removed_blocks"):
            data["removed_blocks"] = list(self.plan["removed_blocks"])
        if self.quality_before is not None:
            data["quality_before"] = _quality_brief(self.quality_before)
        if self.quality_pruned is not None:
            data["quality_pruned"] = _quality_brief(self.quality_pruned)
        if self.quality_after is not None:
            data["quality_after"] = _quality_brief(self.quality_after)
        if self.finetune is not None:
            data["finetune"] = self.finetune
        if self.strategy_report is not None:
            data["strategy_report"] = self.strategy_report
        if self.model.meta.get("reparameterized"):  # pruned in the deploy form: say so
            data["reparameterized"] = self.model.meta["reparameterized"]
        return data



REACH_MARGIN = 0.02  # the strategies' own tolerance on the ratio


def resolve_scope(scope: str, graph: SRGraph, ratio: float,
                  input_size: tuple[int, int], macs: float = 0.0) -> str:
    """``auto``: block-inner channels (``internal``) when pruning them alone can reach
    ``ratio``, else trunks too (``all``), said in a ``warning:`` line. Most released nets
    (ESRGAN, OmniSR, CARN, SwinIR, PLKSR) keep most of their parameters in trunk-coupled
    layers, so ``internal`` alone stops far below 50 %.

    A strategy with a speed target has no ratio; ``macs`` is then the share of the MACs it
    must remove at least (``1 - 1/speedup``: convs run no faster than their MACs shrink),
    and trunks join when the block-inner channels alone cannot remove that much. Without
    it (ESRGAN: 0.7 % of the parameters are block-inner) a latency target failed as out of
    reach, after minutes of measuring."""
    if scope != "auto":
        return scope
    internal = graph.units("internal")
    if ratio <= 0 and macs > 0:
        cost = PlanCost(graph, input_size)
        most = 1.0 - cost.macs({u.name: 1 for u in internal}) / cost.macs({}) \
            if internal else 0.0
        if most >= macs:
            return "internal"
        warnings.warn(f"block-inner channels alone remove at most {most:.1%} of the MACs, "
                      f"short of the {macs:.1%} the speed target needs at least: pruning the "
                      "trunks too (--scope all; pass --scope internal to keep them)",
                      stacklevel=2)
        return "all"
    if ratio <= 0:
        return "internal"
    floor = (PlanCost(graph, input_size).reduction({u.name: 1 for u in internal})
             if internal else 0.0)
    if floor >= ratio - REACH_MARGIN:
        return "internal"
    warnings.warn(f"block-inner channels alone remove at most {floor:.1%} of the parameters, "
                  f"short of --ratio {ratio:g}: pruning the trunks too (--scope all; pass "
                  "--scope internal to keep them)", stacklevel=2)
    return "all"


def warn_uncovered(graph: SRGraph) -> None:
    """A ``warning:`` line naming weight layers the dependency graph does not see."""
    cover = graph.coverage()
    if cover["missing"]:
        names = ", ".join(cover["missing"][:6]) + (" ..." if len(cover["missing"]) > 6 else "")
        warnings.warn(f"the dependency graph sees {cover['covered']} of {cover['layers']} "
                      f"weight layers; not traced: {names} (channels next to them are "
                      "pruned without them; please report the model)", stacklevel=2)

def _remove_blocks(model: SRModel, names: list[str], scope: str,
                   ctx: PruneContext) -> list[PruningUnit]:
    """Replace residual blocks with identities, rebuild the graph on the shallower net
    (``ctx.graph``) and return its units in ``scope`` (units can change: those inside the
    blocks are gone, and a trunk no longer tied by the blocks' adds can become internal)."""
    offered = {b.name for b in find_residual_blocks(
        model.net, ctx.graph.example, exclude=ctx.graph.settings["protect"])}
    unknown = [n for n in names if n not in offered]
    if unknown:
        raise SrpruneError(f"cannot remove block '{unknown[0]}': it is not a residual block "
                           "of this model")
    remove_blocks(model.net, names)
    model.removed_blocks = [*model.removed_blocks, *names]
    ctx.graph = SRGraph(model.net, model.scale, **ctx.graph.settings)
    return ctx.graph.units(scope)


def _check_survivors(units: Sequence[PruningUnit], survivors: Sequence[PruningUnit],
                     keep: dict[str, int], removed: list[str]) -> None:
    """Every unit the plan narrows outside the removed blocks is still there, by name."""
    present = {u.name for u in survivors}
    for unit in units:
        if unit.name not in present and keep.get(unit.name, unit.width) < unit.width \
                and not inside_blocks((*unit.producers, *unit.consumers), removed):
            raise SrpruneError(f"unit {unit.name} is planned narrower but is not a unit of "
                               "the model once the blocks are removed")


def _quality_brief(q: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(q[k]), 4) for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}


def make_criterion(name: str, options: dict[str, Any] | None = None) -> Any:
    """A registered criterion built with its options (bad options: SrpruneError)."""
    return instantiate(CRITERIA, "criterion", name, options)


def make_strategy(name: str, options: dict[str, Any] | None = None) -> Any:
    """A registered strategy built with its options (bad options: SrpruneError)."""
    return instantiate(STRATEGIES, "strategy", name, options)


def compress(model: SRModel, ratio: float | None = None, batches: Sequence[Batch] = (), *,
             config: RunConfig | None = None, progress: ProgressFn | None = None,
             **settings: Any) -> CompressResult:
    """Prune ``model`` in place and return the result (see module docstring).

    The run is described by ``config`` (a :class:`~srprune.config.RunConfig`) or by flat
    settings (``criterion="dr"``, ``scope="all"``, ``seed=3``, ...: the names of
    ``RunConfig.build``), not both. The engine reads the selection, seed, device, dual weight
    and cost input size. ``batches`` are calibration batches ``(LR pyramid, HR)`` for
    data-driven criteria and strategies.
    """
    if config is None:
        config = RunConfig.build(ratio=ratio, **settings)
    elif ratio is not None or settings:
        raise TypeError("pass either config= or flat settings, not both")
    sel = config.selection
    crit = make_criterion(sel.criterion, sel.criterion_options)
    strat = make_strategy(sel.strategy, sel.strategy_options)
    torch.manual_seed(config.seed)
    model.to(config.device).eval()
    input_size = config.cost.input_size
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    before = model_cost(model, input_size)
    original = copy.deepcopy(model).eval()
    for p in list(original.net.parameters()) + (
            list(original.duals.parameters()) if original.duals is not None else []):
        p.requires_grad_(False)
    graph = SRGraph(model.net, model.scale, protect=sel.protect)
    warn_uncovered(graph)
    scope = resolve_scope(sel.scope, graph, sel.ratio if strat.uses_ratio else 0.0,
                          input_size, float(getattr(strat, "mac_share_needed", 0.0) or 0.0))
    units = graph.units(scope)
    if not units:
        raise SrpruneError(f"the model has no prunable unit in scope '{scope}'")
    ctx = PruneContext(model=model, original=original, graph=graph, batches=list(batches),
                       device=config.device, seed=config.seed, dual_weight=config.dual_weight,
                       progress=progress, criterion=crit, criterion_name=sel.criterion,
                       compensate=bool(sel.compensate))
    for needs, who in ((crit.needs_data, f"criterion '{sel.criterion}'"),
                       (strat.needs_data, f"strategy '{sel.strategy}'")):
        if needs:
            ctx.require_data(who)
    cost = PlanCost(graph, input_size)
    seconds["graph"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ctx.report("search", 0, 1)  # strategies report their own loops under their own stage
    first = getattr(strat, "blocks_to_remove", None)  # known before planning (a plan file)
    removed = list(first() if callable(first) else [])
    if removed:
        units = _remove_blocks(model, removed, scope, ctx)
        graph, cost = ctx.graph, PlanCost(ctx.graph, input_size)
    keep = strat.plan(units, sel.ratio, ctx, cost)
    ctx.report("search", 1, 1)
    seconds["search"] = time.perf_counter() - t0
    chosen = list(getattr(strat, "removed_blocks", None) or [])  # chosen by the search
    if chosen:  # depth first: the widths are then cut in the net the model will have
        survivors = _remove_blocks(model, chosen, scope, ctx)
        _check_survivors(units, survivors, keep, chosen)
        units, graph, removed = survivors, ctx.graph, removed + chosen

    t0 = time.perf_counter()
    ctx.report("prune", 0, len(units))
    if any(keep.get(u.name, u.width) < u.width for u in units):
        crit.prepare(ctx)
    for done, unit in enumerate(units):
        n_keep = keep.get(unit.name, unit.width)
        if n_keep < unit.width:
            state = consumer_state(unit) if sel.compensate and ctx.batches else None
            kept = crit.select(unit, n_keep, ctx)
            if len(set(kept)) != n_keep:
                raise SrpruneError(f"criterion '{sel.criterion}' kept {len(set(kept))} channels "
                                   f"of {unit.name}, {n_keep} were asked")
            if state is not None:  # biases the criterion left absorb the removed means
                compensate_biases(unit, kept, ctx, state)
            ctx.kept_rows.record(unit, kept)
            graph.prune(unit, kept)
        ctx.report("prune", done + 1, len(units))
    graph.verify_output()
    seconds["prune"] = time.perf_counter() - t0

    plan = plan_to_json(units, keep)
    if removed:
        plan["removed_blocks"] = removed
    model.plan = plan
    after = model_cost(model, input_size)
    report = getattr(strat, "report", None)  # e.g. uniform: the widths' rounding
    strategy_report = dict(report) if isinstance(report, dict) and report else None
    verify = getattr(strat, "verify", None)
    if callable(verify):  # a strategy with a measured target checks it on the real model
        t0 = time.perf_counter()
        ctx.report("verify", 0, 1)
        strategy_report = verify(original, model)
        ctx.report("verify", 1, 1)
        seconds["verify"] = time.perf_counter() - t0
    return CompressResult(model=model, plan=plan, before=before, after=after,
                          ratio_requested=sel.ratio if strat.uses_ratio else None,
                          criterion=sel.criterion,
                          strategy=sel.strategy, scope=scope, seconds=seconds,
                          strategy_report=strategy_report)
