"""A grid from start to reports: checks first (nothing written on bad input), then the
frozen model, the unpruned reference, the pending cells, one latency run, the reports."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from srprune.api import check_plugins
from srprune.compare.cell import failed_row, open_eval_set, reference_row
from srprune.compare.crops import grid_crops
from srprune.compare.grid import Cell, GridSpec, check_axes
from srprune.compare.latency import UNPRUNED, bench_grid
from srprune.compare.plots import quality_plot, widths_plot
from srprune.compare.report import (
    groups_json,
    report_html,
    results_csv,
    table_markdown,
)
from srprune.compare.runner import check_ray, pending, plan_threads, run_local, run_ray
from srprune.compare.stats import Group, group_rows
from srprune.compare.store import GridFolder, read_json
from srprune.compare.verdict import Verdict, verdicts
from srprune.config import RunConfig
from srprune.data.images import ImageSet, open_image_set
from srprune.errors import SrpruneError
from srprune.measure.export import check_input_size
from srprune.measure.roofline import available_cpus
from srprune.models import SRModel, resolve_model
from srprune.models.artifacts import save_artifact
from srprune.models.trust import command_line_imports

MODEL_SEED = 0  # random-weight models are built from this seed, so a grid can be resumed
Progress = Callable[..., None]


@dataclass(frozen=True)
class Execution:
    """How the cells run and how the artifacts are timed (no effect on a cell's result)."""

    jobs: int = 1
    threads: int | None = None
    backend: str = "local"
    address: str | None = None
    bench_threads: int = 1
    bench_runs: int = 20
    bench_warmup: int = 3
    bench: bool = True  # False: no latency run (quality, params and MACs only)


@dataclass
class Prepared:
    """Everything checked, nothing written yet."""

    spec: GridSpec
    execution: Execution
    folder: GridFolder
    model: SRModel
    identity: dict[str, Any]
    stored: dict[str, Any] | None
    eval_sets: list[ImageSet]
    threads: int


@dataclass
class Outcome:
    """A finished run of the grid (its cells may have failed: see ``failures``)."""

    spec: GridSpec
    folder: GridFolder
    reference: dict[str, Any]
    rows: list[dict[str, Any]]
    groups: list[Group]
    verdicts: list[Verdict]
    bench: dict[str, Any]
    ran: int
    kept: int
    files: list[Path] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("status") != "ok"]


def prepare(spec: GridSpec, out: str | Path, execution: Execution) -> Prepared:
    """Check every input before any work: names, settings, folders, the model, ``out``."""
    check_axes(spec)
    for criterion in spec.criteria:
        for strategy in spec.strategies:
            cell = Cell(criterion, strategy, spec.ratios[0], spec.seeds[0])
            check_plugins(RunConfig.build(**spec.run_settings(cell, None)))
    if execution.backend not in ("local", "ray"):
        raise SrpruneError(f"unknown backend '{execution.backend}'; use local or ray")
    if execution.address is not None and execution.backend != "ray":
        raise SrpruneError("--address is for --backend ray")
    if execution.backend == "ray":
        check_ray()
    threads = plan_threads(execution.jobs, execution.threads, execution.backend)
    for flag, value in (("--bench-threads", execution.bench_threads),
                        ("--bench-runs", execution.bench_runs)):
        if value < 1:
            raise SrpruneError(f"{flag} must be at least 1, got {value}")
    if execution.bench_warmup < 0:
        raise SrpruneError(f"--bench-warmup must be at least 0, got {execution.bench_warmup}")
    folder = GridFolder(out)
    folder.stored()  # a foreign folder is refused before the model loads
    torch.manual_seed(MODEL_SEED)
    trust = True if spec.trust_import else command_line_imports([spec.model])
    model = resolve_model(spec.model, spec.scale, weights=spec.weights,
                          arch_options=spec.arch_options, trust_import=trust)
    spec = replace(spec, scale=model.scale, trusted_imports=(
        (str(model.config["path"]),) if model.arch == "import" else ()))
    check_input_size(model, spec.input_size, spec.model)
    eval_sets = [open_eval_set(path, model.scale) for path in spec.evals]
    if spec.data is not None:
        if spec.data != "builtin" and not Path(spec.data).is_dir():
            raise SrpruneError(f"data folder not found: {spec.data}")
        open_image_set(spec.data, model.scale, spec.lr_dir)
    identity = model_identity(model)
    stored = folder.check_same_grid(spec, identity)
    return Prepared(spec, execution, folder, model, identity, stored, eval_sets, threads)


def model_identity(model: SRModel) -> dict[str, Any]:
    """What makes two grids' models the same: architecture, scale, size, exact weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.net.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"arch": model.arch, "scale": model.scale, "params": model.n_params,
            "weights": model.meta.get("weights", "file"), "sha256": digest.hexdigest()}


def run_grid(prep: Prepared, command: str, progress: Progress | None = None,
             log: Callable[[str], None] | None = None) -> Outcome:
    """Run the pending cells, time every artifact, write every report."""
    spec, folder, execution = prep.spec, prep.folder, prep.execution
    report = progress or (lambda *_a, **_k: None)
    say = log or (lambda _line: None)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cells = folder.open(spec, prep.identity, prep.stored, spec.cells(), command, started)
    cells = sorted(cells, key=lambda c: c.ratio)  # stable: the grid's order within a ratio
    if not folder.model_file.is_file():
        save_artifact(prep.model, folder.model_file, force=True,
                      meta={"source": spec.model, "weights": prep.identity["weights"]})
    reference = _reference(prep, report)
    todo = pending(folder, cells)
    kept = len(cells) - len(todo)
    if kept:
        say(f"{kept} of {len(cells)} cells already done in {folder.root}: kept")
    done = [0]

    def on_start(cell: Cell) -> None:
        report("cells", done[0], len(todo), note=cell.key)

    def on_done(cell: Cell, row: dict[str, Any]) -> None:
        done[0] += 1
        say(_cell_line(done[0], len(todo), row, spec.eval_names()[0]))
        report("cells", done[0], len(todo), note=cell.key)

    if todo:
        report("cells", 0, len(todo))
        if execution.backend == "ray":
            run_ray(spec, folder, todo, prep.threads, execution.address, on_start, on_done)
        else:
            run_local(spec, folder, todo, execution.jobs, prep.threads, on_start, on_done)
    rows = [folder.read_row(c) or failed_row(c, "no result (the run stopped)") for c in cells]
    bench = (_bench(folder, rows, spec, execution, report) if execution.bench
             else {"records": {}, "error": None, "skipped": True})
    _merge_latency(rows, reference, bench)
    groups = group_rows(rows)
    judged = verdicts(groups, spec.eval_names()[0])
    outcome = Outcome(spec, folder, reference, rows, groups, judged, bench, len(todo), kept)
    write_reports(outcome, prep, command)
    return outcome


def _reference(prep: Prepared, report: Progress) -> dict[str, Any]:
    spec, folder = prep.spec, prep.folder
    stored = read_json(folder.reference_file)
    names = spec.eval_names()
    if isinstance(stored, dict) and list(stored.get("quality", {})) == names:
        return stored
    report("eval: unpruned", 0, 1)
    reference = reference_row(spec, prep.model, prep.eval_sets)
    reference.update(scale=prep.model.scale, weights=prep.identity["weights"])
    folder.write_json(folder.reference_file, reference)
    report("eval: unpruned", 1, 1)
    return reference


def _cell_line(done: int, total: int, row: dict[str, Any], eval_name: str) -> str:
    head = f"cell {done}/{total} {row['key']}"
    seconds = (row.get("seconds") or {}).get("total")
    took = f" ({seconds:.0f} s)" if seconds is not None else ""
    if row.get("status") != "ok":
        return f"{head}: failed: {row.get('error')}{took}"
    q = row["quality"][eval_name]
    pruned = (f" (pruned {row['psnr_pruned']:.3f})" if row.get("psnr_pruned") is not None
              else "")
    return f"{head}: PSNR {q['psnr']:.3f} dB on {eval_name}{pruned}, {row['params']:,} params{took}"


def _bench(folder: GridFolder, rows: Sequence[dict[str, Any]], spec: GridSpec,
           execution: Execution, report: Progress) -> dict[str, Any]:
    ok = sum(r.get("status") == "ok" for r in rows) + 1
    total = 2 * ok + (ok + 1) * (execution.bench_runs + execution.bench_warmup)
    steps = [0]
    report("latency", 0, total)

    def step(_description: str) -> None:
        steps[0] += 1
        report("latency", min(steps[0], total), total)

    bench = bench_grid(folder, rows, spec.input_size, execution.bench_threads,
                       execution.bench_runs, execution.bench_warmup, on_step=step,
                       trusted_imports=spec.trusted_imports)
    report("latency", total, total)
    bench.update(threads=execution.bench_threads, runs=execution.bench_runs,
                 warmup=execution.bench_warmup, input_size=list(spec.input_size))
    return bench


def _merge_latency(rows: list[dict[str, Any]], reference: dict[str, Any],
                   bench: dict[str, Any]) -> None:
    records = bench.get("records") or {}
    for label, target in [(UNPRUNED, reference)] + [(r["key"], r) for r in rows]:
        rec = records.get(label)
        if rec is None:
            target["latency"] = None
            continue
        target["latency"] = {
            "median_ms": rec["latency_ms"]["median"], "p10_ms": rec["latency_ms"]["p10"],
            "p90_ms": rec["latency_ms"]["p90"], "speedup": rec["speedup"],
            "gflops": rec["gflops"], "cpu_per_wall": rec.get("cpu_per_wall"),
            "efficiency": (rec.get("roofline") or {}).get("efficiency"),
            "parity_max_abs_diff": rec["parity_max_abs_diff"]}


def _version() -> str:
    try:
        return importlib.metadata.version("srprune")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


PLOTS = (("psnr_vs_latency.png", "PSNR vs ORT latency"), ("psnr_vs_macs.png", "PSNR vs MACs"),
         ("widths.png", "Kept width per unit"))


def write_reports(outcome: Outcome, prep: Prepared, command: str) -> None:
    """results.json, results.csv, table.md, the PNGs and report.html (all atomic)."""
    spec, folder, bench = outcome.spec, outcome.folder, outcome.bench
    names = spec.eval_names()
    subtitle = (f"{spec.model} x{outcome.reference['scale']}, {spec.eval_names()[0]}; "
                f"mean ± std over seeds")
    if bench.get("error") or bench.get("skipped"):
        subtitle += "; latency not measured"
    paths = [folder.root / name for name, _ in PLOTS]
    quality_plot(outcome.groups, outcome.reference, names[0], "latency", paths[0], subtitle)
    quality_plot(outcome.groups, outcome.reference, names[0], "macs", paths[1], subtitle)
    widths_plot(outcome.groups, paths[2])
    results = {
        "format": "srprune-compare-results", "version": 1, "command": command,
        "runs": (read_json(folder.grid_file) or {}).get("runs", []),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "grid": {key: list(dict.fromkeys(r[key] for r in outcome.rows))
                 for key in ("criterion", "strategy", "ratio", "seed")},
        "srprune": _version(), "torch": torch.__version__,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": available_cpus()},
        "execution": vars(prep.execution) | {"threads": prep.threads},
        "spec": spec.to_json(), "model": prep.identity, "reference": outcome.reference,
        "bench": {k: v for k, v in bench.items() if k not in ("records", "fingerprint")},
        "verdicts": [v.as_dict() for v in outcome.verdicts],
        "groups": groups_json(outcome.groups, names), "rows": outcome.rows,
    }
    folder.write_json(folder.root / "results.json", results)
    folder.write_text("results.csv", results_csv(outcome.rows, names))
    folder.write_text("table.md", table_markdown(spec, outcome.reference, outcome.groups,
                                                 outcome.verdicts, bench, outcome.failures))
    images = [(title, folder.root / name) for name, title in PLOTS]
    crops = grid_crops(prep.model, outcome.rows, prep.eval_sets[0], names[0],
                       spec.trusted_imports)
    folder.write_text("report.html", report_html(spec, outcome.reference, outcome.groups,
                                                 outcome.verdicts, bench, outcome.failures,
                                                 images, command, crops))
    outcome.files = [folder.root / n for n in ("results.json", "results.csv", "table.md",
                                               "report.html")] + paths
