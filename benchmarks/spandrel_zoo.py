"""Every SR architecture spandrel detects, through srprune's front door: load, count, prune,
export.

    python benchmarks/spandrel_zoo.py                         # print the markdown table
    python benchmarks/spandrel_zoo.py --json out.json         # the rows as JSON too
    python benchmarks/spandrel_zoo.py --only HAT DAT          # some architectures
    python benchmarks/spandrel_zoo.py --no-prune              # load, count and export only
    python benchmarks/spandrel_zoo.py --jobs 2 --json benchmarks/results/spandrel-zoo.json \
        --doc docs/architectures.md                           # the published table

Each architecture is built with its own spandrel class at a small configuration (random
weights, seeded), its state dict saved to a temporary ``.pth`` and opened with
``srprune.models.resolve_model``, as a user's checkpoint would be (that is how the row's
forwards are chosen: ``functional_forwards`` runs on checkpoint loads). Then, at the
architecture's own LR size (window sizes, patch sizes, minimum sizes):

* ``match``: srprune's model on [0, 255] against spandrel's own descriptor on [0, 1] (max
  difference on [0, 1], clamped as spandrel clamps): the front door computes the same function;
* params and MACs (``model_cost``), units, blocked units and the graph's coverage (no layer
  may be ``missing``), the prunable share with ``--scope all`` (``PlanCost``: every unit
  kept at one channel, exact, no pruning);
* ONNX export of the unpruned model with parity against PyTorch (``check_parity``);
* ``compress_model(model, 0.5, criterion="l1", scope=...)`` on a copy, in scope ``auto``
  then, where that falls short, ``all`` (``--scope``); the pruned model runs at two input
  sizes at the right scale, exports with parity and its graph still covers every layer.

Non-SR architectures (face restoration, inpainting, x1 restoration) are listed as skipped
with the reason; an architecture of the installed spandrel that is neither configured nor
skipped is a row saying so, so a new spandrel release cannot slip through unnoticed.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from srprune.api import compress_model
from srprune.errors import SrpruneError
from srprune.measure.cost import model_cost
from srprune.measure.export import check_parity, export_onnx
from srprune.models import detect, resolve_model, spandrel_zoo
from srprune.models.spandrel_zoo import import_spandrel, spandrel_class
from srprune.models.srmodel import SRModel
from srprune.prune.engine import REACH_MARGIN
from srprune.prune.graph import SRGraph
from srprune.prune.plan import PlanCost


@dataclass(frozen=True)
class Arch:
    """One spandrel architecture at a small configuration."""

    name: str  # the row's label
    package: str  # spandrel.architectures.<package>
    class_name: str  # the class that package exports
    config: dict[str, Any]
    size: int = 16  # LR side for MACs, the graph, export and parity
    other: int = 24  # a second LR side the pruned model must also run at
    note: str = ""  # a fact about the architecture worth a table note


def _swin_like(**extra: Any) -> dict[str, Any]:
    return {"embed_dim": 24, "depths": [2], "num_heads": [2], "window_size": 8,
            "mlp_ratio": 2.0, **extra}


ARCHS: list[Arch] = [
    Arch("ATD", "ATD", "ATD", {"embed_dim": 24, "depths": [2], "num_heads": [2],
                              "window_size": 8, "category_size": 32, "num_tokens": 16,
                              "reducted_dim": 4, "mlp_ratio": 2.0, "upscale": 4,
                              "upsampler": "pixelshuffledirect"},
         note="blocked: window attention (wqkv -> proj) and the token-dictionary attention "
              "(trunk -> wq) break when narrowed, so the trunk and every qkv stay whole"),
    Arch("AuraSR", "AuraSR", "AuraSR", {
        "dim": 16, "image_size": None, "input_image_size": None,
        "style_network": {"dim_in": 16, "dim_out": 64, "depth": 1},
        "up_dim_mults": [1, 2, 2, 4, 4], "down_dim_mults": [2, 4, 4],
        "attn_depths": [1, 1, 1, 1, 1], "mid_attn_depth": 1, "self_attn_dim_head": 8,
        "self_attn_heads": 8},
         note="a GAN: style-modulated convs (kernels computed at run time) neither trace nor "
              "export; its forward samples noise"),
    Arch("Compact", "Compact", "Compact", {"num_feat": 16, "num_conv": 4, "upscale": 4}),
    Arch("CRAFT", "CRAFT", "CRAFT", {"embed_dim": 48, "depths": [1], "num_heads": [2],
                                    "window_size": 16, "split_size_0": 4,
                                    "split_size_1": 16, "mlp_ratio": 2.0, "upscale": 2},
         other=32),
    Arch("DAT", "DAT", "DAT", {"embed_dim": 32, "depth": [2], "num_heads": [2],
                              "split_size": [4, 8], "expansion_factor": 2.0, "upscale": 2}),
    Arch("DCTLSA", "DCTLSA", "DCTLSA", {"nf": 20, "num_modules": 6, "num_head": 5,
                                       "upscale": 4}),
    Arch("DITN", "DITN", "DITN", {"dim": 24, "ITL_blocks": 1, "SAL_blocks": 1,
                                 "UFONE_blocks": 1, "patch_size": 8, "upscale": 2}),
    Arch("DRCT", "DRCT", "DRCT", _swin_like(depths=[1], gc=8, upscale=2,
                                            upsampler="pixelshuffle"), other=32),
    Arch("ESRGAN", "ESRGAN", "ESRGAN", {"num_filters": 16, "num_blocks": 2, "scale": 4}),
    Arch("FDAT", "FDAT", "FDAT", {"embed_dim": 24, "num_groups": 2, "depth_per_group": 2,
                                 "num_heads": 2, "window_size": 8, "mid_dim": 16,
                                 "scale": 4},
         note="blocked: each qkv's channels meet fixed-width slices of the trunk; the trunk "
              "would empty conv_after"),
    Arch("GRL", "GRL", "GRL", {"embed_dim": 16, "depths": [1], "num_heads_window": [1],
                              "num_heads_stripe": [1], "window_size": 8,
                              "stripe_size": [8, 8], "mlp_ratio": 2.0, "upscale": 2,
                              "upsampler": "pixelshuffle"}),
    Arch("HAT", "HAT", "HAT", _swin_like(compress_ratio=3, squeeze_factor=6, num_feat=16,
                                         upscale=4)),
    Arch("IPT", "IPT", "IPT", {"patch_size": 24, "patch_dim": 3, "n_feats": 16,
                              "scale": [2], "num_heads": 12, "num_layers": 1},
         size=24, other=24,
         note="blocked: a position embedding per token of its one patch size; narrowing the "
              "head or the transformer breaks the token matmuls. spandrel tiles larger inputs"),
    Arch("MMRealSR", "MMRealSR", "MMRealSR", {
        "num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 16, "num_block": 1,
        "num_grow_ch": 8, "num_feats": [16, 32, 64, 128], "num_blocks": [1, 1, 1, 1]}),
    Arch("MoESR", "MoESR", "MoESR", {"dim": 16, "n_blocks": 2, "n_block": 1,
                                    "upsample_dim": 16, "scale": 4},
         note="blocked: in each gated block one part of fc1 gates the other, and the "
              "depthwise branches take fixed-size splits"),
    Arch("MoSR", "MoSR", "MoSR", {"dim": 16, "n_block": 2, "upscale": 4}),
    Arch("OmniSR", "OmniSR", "OmniSR", {"num_feat": 16, "res_num": 1, "window_size": 8,
                                       "up_scale": 4}),
    Arch("PLKSR", "PLKSR", "PLKSR", {"dim": 16, "n_blocks": 2, "upscaling_factor": 4}),
    Arch("RealPLKSR", "PLKSR", "RealPLKSR", {"dim": 16, "n_blocks": 2,
                                             "upscaling_factor": 4}),
    Arch("RCAN", "RCAN", "RCAN", {"n_resgroups": 2, "n_resblocks": 2, "n_feats": 16,
                                 "reduction": 4, "scale": 4}),
    Arch("RealCUGAN", "RealCUGAN", "UpCunet2x", {}, size=40, other=48,
         note="fixed widths (no size options); minimum input 32"),
    Arch("RGT", "RGT", "RGT", {"embed_dim": 32, "depth": [2], "num_heads": [2],
                              "split_size": [8, 8], "mlp_ratio": 2.0, "upscale": 2}),
    Arch("SAFMN", "SAFMN", "SAFMN", {"dim": 24, "n_blocks": 2, "upscaling_factor": 4}),
    Arch("SeemoRe", "SeemoRe", "SeemoRe", {"num_experts": 2, "num_layers": 2,
                                          "embedding_dim": 16, "scale": 4}),
    Arch("SPAN", "SPAN", "SPAN", {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 16,
                                 "upscale": 4}),
    Arch("SwiftSRGAN", "SwiftSRGAN", "SwiftSRGAN", {"num_channels": 24, "num_blocks": 2,
                                                   "upscale_factor": 4}),
    Arch("Swin2SR", "Swin2SR", "Swin2SR", _swin_like(upscale=2,
                                                     upsampler="pixelshuffledirect")),
    Arch("SwinIR", "SwinIR", "SwinIR", _swin_like(upscale=2, upsampler="pixelshuffledirect")),
]

SKIPPED = {
    "GFPGAN": "face restoration (512x512 aligned faces, x1)",
    "RestoreFormer": "face restoration (512x512 aligned faces, x1)",
    "LaMa": "inpainting (image + mask, x1)",
    "SCUNet": "denoising at x1",
    "FBCNN": "JPEG artifact removal at x1",
    "Uformer": "denoising / deblurring at x1",
    "KBNet": "denoising / deblurring at x1",
    "FFTformer": "deblurring at x1",
    "NAFNet": "denoising / deblurring at x1",
    "MixDehazeNet": "dehazing at x1",
    "DRUNet": "denoising at x1 (noise-level map input)",
    "DnCNN": "denoising at x1",
    "RetinexFormer": "low-light enhancement at x1",
    "HVICIDNet": "low-light enhancement at x1",
    "SAFMNBCIE": "compressed-image enhancement at x1 (SAFMN for BCIE)",
}


def front_door_hooks() -> dict[str, bool]:
    """Which of the front-door hooks that ``spandrel_forwards`` relies on are in place (the
    rows of MMRealSR, Real-CUGAN, GRL, IPT and AuraSR depend on them; see the README)."""
    probe = type("SrpruneProbe", (torch.nn.Module,), {
        "__module__": "spandrel.architectures.Probe", "forward": lambda self, x: x})
    adapted = type("SrpruneProbe", (probe,), {"__module__": spandrel_zoo.__name__})
    spandrel_zoo._FUNCTIONAL_FORWARDS["SrpruneProbe"] = lambda self, x: x
    try:
        whole_nets = spandrel_zoo.functional_forwards(adapted()) == 1
    finally:
        del spandrel_zoo._FUNCTIONAL_FORWARDS["SrpruneProbe"]
    plain = getattr(detect, "plain_value", None)
    return {"forwards imported by spandrel_zoo":
            "spandrel_forwards" in inspect.getsource(spandrel_zoo),
            "whole-net forwards switched": whole_nets,
            "dict hyperparameters kept": bool(plain and plain({"depth": 1}))}


def spandrel_ids() -> list[str]:
    """The architecture ids of the installed spandrel's registry."""
    return [a.architecture.id for a in import_spandrel().MAIN_REGISTRY.architectures()]


def build_net(arch: Arch) -> torch.nn.Module:
    """The architecture with seeded random weights, as spandrel's own class builds it."""
    torch.manual_seed(0)
    return spandrel_class(arch.package, arch.class_name)(**arch.config).eval()


def load_checkpoint(arch: Arch, folder: Path) -> tuple[SRModel, torch.nn.Module]:
    """srprune's model opened from a ``.pth`` of the net's state dict, and the net."""
    net = build_net(arch)
    path = folder / f"{arch.name}.pth"
    torch.save(net.state_dict(), path)
    return resolve_model(str(path)), net


def spandrel_match(model: SRModel, net: torch.nn.Module, size: int) -> float:
    """Max difference on [0, 1] between srprune's model and spandrel's own descriptor (which
    runs the net its way: its call function, clamping) on one random input."""
    descriptor = import_spandrel().ModelLoader().load_from_state_dict(net.state_dict())
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = descriptor(x.clone())
        ours = (model(x * 255) / 255).clamp(0, 1)
    if ref.shape != ours.shape:
        raise SrpruneError(f"output {tuple(ours.shape)}, spandrel's {tuple(ref.shape)}")
    return float((ref - ours).abs().max())


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:240]


class StageTimeout(Exception):
    """A stage ran past ``--stage-timeout`` (Torch-Pruning's group search can loop)."""


STAGE_TIMEOUT = [300]  # seconds per stage (main sets it from --stage-timeout)


def _alarm(signum: int, frame: object) -> None:
    raise StageTimeout(f"no result in {STAGE_TIMEOUT[0]} s")


def _stage(row: dict[str, Any], name: str, run: Callable[[], Any]) -> Any:
    """Run one stage; a failure or a timeout is recorded in ``row["errors"]`` instead of
    ending the row."""
    row["running"] = name
    if row.get("save"):
        row["save"](row)
    t0 = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(STAGE_TIMEOUT[0])
    try:
        return run()
    except Exception as exc:  # every architecture's own failure modes: record, go on
        row["errors"][name] = _brief(exc)
        if row.get("verbose"):
            traceback.print_exc()
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        row["seconds"][name] = round(time.perf_counter() - t0, 2)


def graph_facts(model: SRModel, size: int) -> dict[str, Any]:
    """Units, blocked units with reasons, coverage and the prunable share (scope all)."""
    graph = SRGraph(model.net, model.scale, example_size=(size, size))
    units = graph.units("all")
    blocked = graph.blocked_units()
    share = PlanCost(graph, (size, size)).reduction({u.name: 1 for u in units}) if units else 0
    return {"units": len(units), "internal": len(graph.units("internal")),
            "blocked": len(blocked), "blocked_reasons": [f"{u.name}: {u.blocked}"
                                                         for u in blocked],
            "coverage": graph.coverage(), "prunable_share": round(float(share), 4)}


def export_parity(model: SRModel, size: int, folder: Path, tag: str) -> dict[str, Any]:
    """ONNX export at ``size`` and parity against PyTorch (raises when parity fails)."""
    exported = export_onnx(model, folder / f"{tag}.onnx", (size, size), force=True)
    parity = check_parity(model, exported.path, (size, size))
    return {"exporter": exported.exporter, "dynamic": exported.dynamic,
            "max_abs_diff": parity.max_abs_diff, "limit": parity.limit}


def pruned_facts(model: SRModel, arch: Arch, ratio: float, scope: str,
                 folder: Path) -> dict[str, Any]:
    """Prune by ``ratio`` with l1 and check the result runs, exports and stays covered."""
    result = compress_model(model, ratio, criterion="l1", scope=scope,
                            input_size=(arch.size, arch.size))
    shapes = {}
    with torch.no_grad():
        for side in (arch.size, arch.other):
            out = model(torch.rand(1, 3, side, side) * 255)
            shapes[side] = list(out.shape) == [1, 3, side * model.scale, side * model.scale]
    facts: dict[str, Any] = {"ratio": ratio, "scope": result.scope,
                             "achieved": round(result.ratio_achieved, 4),
                             "reached": result.ratio_achieved >= ratio - REACH_MARGIN,
                             "params_after": result.after.params,
                             "macs_after": result.after.macs,
                             "shapes_ok": all(shapes.values())}
    cover = SRGraph(model.net, model.scale, example_size=(arch.size, arch.size)).coverage()
    facts["coverage_missing"] = cover["missing"]
    facts["onnx"] = export_parity(model, arch.size, folder, "pruned")
    return facts


def base_row(arch: Arch) -> dict[str, Any]:
    """What a row says before anything ran."""
    return {"name": arch.name, "source": f"spandrel.architectures.{arch.package}."
            f"{arch.class_name}", "config": arch.config, "input": arch.size, "errors": {},
            "seconds": {}, "note": arch.note}


def run_arch(arch: Arch, ratio: float | None, scope: str, verbose: bool = False,
             save: Callable[[dict], None] | None = None) -> dict:
    """Every measurement of one architecture (failures recorded per stage); ``save`` gets
    the row before each stage, so a stage that kills the process is known."""
    row = {**base_row(arch), "verbose": verbose, "save": save}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loaded = _stage(row, "load", lambda: load_checkpoint(arch, folder))
        if loaded is None:
            return _finished(row)
        model, net = loaded
        row.update(detected=model.meta.get("detected"), scale=model.scale,
                   params=model.n_params, spandrel_params=sum(p.numel()
                                                              for p in net.parameters()))
        row["match"] = _stage(row, "match", lambda: spandrel_match(model, net, arch.size))
        cost = _stage(row, "count", lambda: model_cost(model, (arch.size, arch.size)))
        row["macs"] = cost.macs if cost is not None else None
        row["graph"] = _stage(row, "graph", lambda: graph_facts(model, arch.size))
        row["onnx"] = _stage(row, "export", lambda: export_parity(model, arch.size, folder,
                                                                  "model"))
        if ratio is not None:
            attempts: dict[str, Any] = {}
            for one in scopes(scope):
                pruned = _stage(row, f"prune {one}", lambda one=one: pruned_facts(
                    copy.deepcopy(model), arch, ratio, one, folder))
                attempts[one] = pruned
                if pruned is not None and pruned["reached"]:
                    row["pruned"] = pruned
                    break
            else:
                row["pruned"] = next((p for p in reversed(attempts.values()) if p), None)
            row["prune_attempts"] = {
                one: (f"{p['achieved']:.1%} in scope {p['scope']}" if p else
                      row["errors"].get(f"prune {one}", "not run"))
                for one, p in attempts.items()}
    return _finished(row)


def scopes(scope: str) -> tuple[str, ...]:
    """The scopes to try in order: ``auto-all`` is the default scope, then every layer."""
    return ("auto", "all") if scope == "auto-all" else (scope,)


def _finished(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("verbose", "save", "running"):
        row.pop(key, None)
    return row


def run_isolated(arch: Arch, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`run_arch` in a child process: a stage that crashes the interpreter (the
    TorchScript tracer segfaults on some nets) or hangs costs that row, not the run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, __file__, "--child", arch.name, "--row-file", str(out),
                   "--ratio", str(args.ratio), "--scope", args.scope,
                   "--stage-timeout", str(args.stage_timeout)]
        command += ["--no-prune"] if args.no_prune else []
        command += ["--verbose"] if args.verbose else []
        try:
            done = subprocess.run(command, timeout=args.stage_timeout * 8,
                                  stdout=subprocess.DEVNULL, check=False)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = None
        row = json.loads(out.read_text()) if out.is_file() else {
            **base_row(arch), "running": "start"}
    if code != 0:
        stage = row.get("running", "start")
        row["errors"][stage] = ("the process timed out" if code is None else
                                f"the process died (signal {-code})" if code < 0 else
                                f"the process exited with {code}")
    return _finished(row)


# ----------------------------------------------------------------- the table


REASONS = (("grouped convolution", "grouped convs"),
           ("unsupported channel coupling", "split/chunk couplings"),
           ("irregular channel coupling", "irregular couplings"),
           ("pruning breaks the model", "trial pruning breaks it"),
           ("the dependency graph cannot map", "Torch-Pruning cannot map the channels"))


def blocked_kinds(reasons: list[str]) -> str:
    """Blocked units counted by kind of reason."""
    counts: dict[str, int] = {}
    for text in reasons:
        reason = text.split(": ", 1)[-1]
        kind = next((label for prefix, label in REASONS if reason.startswith(prefix)),
                    reason[:50])
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def config_text(config: dict[str, Any]) -> str:
    """A config as short ``key=value`` text for a table cell."""
    def show(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "[" + ",".join(show(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
        return str(value)

    return " ".join(f"{k}={show(v)}" for k, v in config.items()
                    if k not in ("num_in_ch", "num_out_ch"))


def _notes(row: dict[str, Any]) -> str:
    notes: list[str] = []
    for stage, text in row.get("errors", {}).items():
        if stage.startswith("prune ") and (row.get("pruned") or {}).get("reached"):
            continue  # scope auto fell short, scope all reached: the cell says which
        if stage == "prune all" and row["errors"].get("prune auto") == text:
            notes[-1] = f"prune (auto, all): {text}"
            continue
        notes.append(f"{stage}: {text}")
    graph = row.get("graph") or {}
    if graph.get("coverage", {}).get("missing"):
        notes.append(f"not traced: {', '.join(graph['coverage']['missing'][:3])}")
    if graph.get("blocked_reasons"):
        notes.append("blocked: " + blocked_kinds(graph["blocked_reasons"]))
    pruned = row.get("pruned") or {}
    if pruned and not pruned.get("shapes_ok"):
        notes.append("pruned model: wrong output size")
    if pruned.get("coverage_missing"):
        notes.append("pruned model: layers not traced")
    if row.get("match") is not None and row["match"] > 1e-4:
        notes.append(f"differs from spandrel's by {row['match']:.2g}")
    if row.get("note"):
        notes.append(row["note"])
    return "; ".join(n.replace("|", "/") for n in notes)


def reaches(row: dict[str, Any]) -> bool:
    """The row reached the ratio, and the pruned model runs, covers and exports with parity."""
    pruned = row.get("pruned") or {}
    return bool(pruned.get("reached") and pruned.get("onnx") and pruned.get("shapes_ok")
                and not pruned.get("coverage_missing"))


def _reach_cell(row: dict[str, Any]) -> str:
    pruned = row.get("pruned") or {}
    if reaches(row):
        return f"yes: {pruned['achieved']:.1%} ({pruned['scope']})"
    if pruned:
        why = ("pruned model fails ONNX parity" if not pruned.get("onnx") else
               f"{pruned['achieved']:.1%} ({pruned['scope']})")
        return f"no: {why}"
    return "no" if any(k.startswith("prune") for k in row.get("errors", {})) else "–"


def _parity_cell(row: dict[str, Any]) -> str:
    onnx, pruned = row.get("onnx"), row.get("pruned") or {}
    cell = f"ok ({onnx['max_abs_diff']:.1e})" if onnx else "fails"
    if pruned:
        cell += ", pruned " + (f"ok ({pruned['onnx']['max_abs_diff']:.1e})"
                               if pruned.get("onnx") else "fails")
    return cell


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table: one row per architecture, skipped ones at the end."""
    ratio = next((r["pruned"]["ratio"] for r in rows if r.get("pruned")), 0.5)
    lines = ["| architecture | source | small config | params | MACs (LR) | units (blocked) "
             f"| prunable share | reaches {ratio} (scope) | ONNX parity (max abs diff) "
             "| reason when blocked, notes |",
             "|---|---|---|---:|---:|---|---:|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | spandrel | – | – | – | – | – | – | – | "
                         f"not SR, skipped: {r['skipped']} |")
            continue
        if "uncovered" in r:
            lines.append(f"| {r['name']} | spandrel | – | – | – | – | – | – | – | "
                         f"{r['errors']['setup']} |")
            continue
        graph = r.get("graph") or {}
        params = f"{r['params']:,}" if r.get("params") is not None else "fails"
        macs = (f"{r['macs'] / 1e6:,.1f} M ({r['input']}x{r['input']})"
                if r.get("macs") is not None else "fails")
        units = f"{graph['units']} ({graph['blocked']})" if graph else "fails"
        share = f"{graph['prunable_share']:.0%}" if graph else "–"
        source = r["source"].removeprefix("spandrel.architectures.")
        lines.append(f"| {r['name']} | `{source}` | {config_text(r.get('config', {}))} "
                     f"x{r.get('scale', '?')} | {params} | {macs} | {units} | {share} "
                     f"| {_reach_cell(r)} | {_parity_cell(r)} | {_notes(r)} |")
    return "\n".join(lines) + "\n"


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many load and count, how many reach the ratio with ONNX parity, and whether the
    goal (every one loads and counts, at least 80 % reach the ratio with parity) holds."""
    measured = [r for r in rows if "skipped" not in r and "uncovered" not in r]
    counted = [r for r in measured if r.get("params") is not None
               and r.get("macs") is not None and "load" not in r.get("errors", {})]
    reached = [r for r in measured if reaches(r)]
    share = round(len(reached) / len(measured), 3) if measured else 0.0
    return {"architectures": len(measured), "load_and_count": len(counted),
            "reach_ratio_with_parity": len(reached), "reach_share": share,
            "not_reached": sorted(r["name"] for r in measured if not reaches(r)),
            "goal_holds": bool(measured) and len(counted) == len(measured) and share >= 0.8,
            "skipped": sorted(r["name"] for r in rows if "skipped" in r),
            "uncovered": sorted(r["name"] for r in rows if "uncovered" in r)}


def machine() -> str:
    """The CPU model named in /proc/cpuinfo, and the core count."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def page(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """docs/architectures.md: the table with the command, date, machine and the goal."""
    total = meta["summary"]
    verdict = "holds" if total["goal_holds"] else "does not hold"
    return "\n".join([
        "# Every architecture spandrel detects", "",
        "Each SR architecture of spandrel " + meta["spandrel"] + " built with its own class "
        "at a small configuration (random weights, seed 0), saved as a plain `.pth` state dict "
        "and opened through srprune's front door (`resolve_model`), as a user's checkpoint "
        "is. Per row: parameters and MACs at the LR size shown, the graph's units (blocked "
        "ones with their reasons), the prunable share (the share of parameters removed with "
        "every unit of `--scope all` kept at one channel: what pruning can reach at most), "
        f"`l1` pruning to {meta['ratio']} in scope `auto` and, where that falls short, "
        "`all`, and ONNX export of the unpruned and the pruned model with parity against "
        "PyTorch. A row \"reaches\" "
        "when the pruned model hits the ratio, runs at two input sizes, keeps every layer in "
        "the graph and exports with parity.", "",
        f"* command: `{meta['command']}`",
        f"* date: {meta['date']}; machine: {meta['machine']}; torch {meta['torch']}, "
        f"spandrel {meta['spandrel']}",
        f"* **{total['load_and_count']} of {total['architectures']}** load and count; "
        f"**{total['reach_ratio_with_parity']} of {total['architectures']}** "
        f"({total['reach_share']:.0%}) reach {meta['ratio']} with ONNX parity"
        + (f" (not: {', '.join(total['not_reached'])})" if total["not_reached"] else "")
        + f". The goal (every one loads and counts, at least 80 % reach it) {verdict}.",
        f"* the rows as JSON: `{meta['json']}`", "",
        markdown(rows)])


def _run_all(archs: list[Arch], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every architecture in its own process, ``--jobs`` at a time, rows in table order."""
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda a: run_isolated(a, args), archs))
    for row in rows:
        print(json.dumps(row, default=str), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="architecture names")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--scope", default="auto-all",
                    choices=("auto-all", "all", "internal", "auto"),
                    help="auto-all (default): scope auto, then all where auto falls short")
    ap.add_argument("--no-prune", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--doc", default=None, help="write the markdown page here too")
    ap.add_argument("--jobs", type=int, default=1, help="architectures run at once")
    ap.add_argument("--verbose", action="store_true", help="tracebacks of failed stages")
    ap.add_argument("--stage-timeout", type=int, default=300, metavar="S",
                    help="seconds one stage of one architecture may take")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--row-file", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    STAGE_TIMEOUT[0] = args.stage_timeout
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.child:  # one architecture, its row written to --row-file as it goes
        arch = next(a for a in ARCHS if a.name == args.child)
        path = Path(args.row_file)

        def save(row: dict[str, Any]) -> None:
            path.write_text(json.dumps({k: v for k, v in row.items() if k != "save"},
                                       default=str))

        save(run_arch(arch, None if args.no_prune else args.ratio, args.scope,
                      args.verbose, save))
        return 0
    wanted = set(args.only) if args.only else None
    known = {a.package for a in ARCHS} | set(SKIPPED)
    rows = _run_all([a for a in ARCHS if wanted is None or a.name in wanted], args)
    if wanted is None:
        rows += [{"name": name, "skipped": why} for name, why in SKIPPED.items()]
        rows += [{"name": arch_id, "uncovered": True, "errors": {
            "setup": "in this spandrel, neither configured here nor skipped"}}
            for arch_id in spandrel_ids() if arch_id not in known]
    print(markdown(rows))
    totals = summary(rows)
    hooks = front_door_hooks()
    print(json.dumps({**totals, "hooks": hooks}))
    meta = {"command": "python " + " ".join(["benchmarks/spandrel_zoo.py", *(argv or
                                                                          sys.argv[1:])]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine(), "torch": torch.__version__,
            "spandrel": import_spandrel().__version__, "ratio": args.ratio,
            "json": args.json, "hooks": hooks, "summary": totals}
    if args.json:
        Path(args.json).write_text(json.dumps({**meta, "rows": rows}, indent=1,
                                              default=str) + "\n")
    if args.doc:
        Path(args.doc).write_text(page(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
