"""``srprune compare``: criteria x strategies x ratios x seeds on one model, at one budget."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from srprune.cli.common import (
    LEARNING_RATE,
    arch_options,
    command_trust,
    console,
    distill_options,
    err_console,
    input_size_option,
    json_option,
    lr_dir_option,
    print_json,
    scale_option,
)
from srprune.cli.progress import ProgressReporter
from srprune.config import FineTune, rate_text

CRITERIA = "l1,random,cp,thinet,dcp,dr"


@click.command("compare")
@click.argument("model")
@scale_option
@click.option("--weights", type=click.Path(), default=None, help="Checkpoint to load first.")
@click.option("--criteria", default=CRITERIA, show_default=True,
              help="Comma-separated criterion names.")
@click.option("--strategies", default="uniform", show_default=True,
              help="Comma-separated strategy names (e.g. uniform,dr-search).")
@click.option("--ratios", default="0.3,0.5,0.7", show_default=True,
              help="Comma-separated fractions of parameters to remove, each in [0, 1).")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--data", type=click.Path(), default=None,
              help="HR images for calibration and fine-tuning (a folder, or 'builtin').")
@lr_dir_option
@click.option("--eval", "evals", multiple=True, metavar="builtin|DIR",
              help="Evaluation set (repeatable; the first decides the verdicts). Default: "
                   "the built-in photos.")
@click.option("--scope", type=click.Choice(["auto", "internal", "all"]), default="auto",
              show_default=True, help="internal: block-inner channels only; all: trunks too; "
                                      "auto: internal, or all (with a warning) when internal "
                                      "alone cannot reach --ratio.")
@click.option("--preset", type=click.Choice(["fast", "default", "thorough"]), default="default",
              show_default=True, help="Calibration budget and selection/search effort.")
@click.option("--calib-batches", type=int, default=None, help="Calibration batches (preset).")
@click.option("--calib-batch", type=int, default=None, help="Patches per batch (preset).")
@click.option("--calib-patch", type=int, default=None, help="LR patch size (preset).")
@click.option("--finetune-steps", type=int, default=0, show_default=True,
              help="Fine-tuning steps of every cell (the same budget for all).")
@click.option("--finetune-lr", type=LEARNING_RATE, default=FineTune.lr, show_default=True,
              help="A rate, or auto (compress --help).")
@click.option("--finetune-batch", type=int, default=FineTune.batch, show_default=True)
@click.option("--finetune-patch", type=int, default=FineTune.patch, show_default=True,
              help="LR patch size.")
@click.option("--dual-weight", type=float, default=0.1, show_default=True,
              help="lambda of the dual-regression loss.")
@distill_options
@click.option("--eval-pruned", is_flag=True,
              help="Also score every cell right after pruning, before fine-tuning (first "
                   "evaluation set; one more evaluation per cell).")
@input_size_option()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Grid folder: results, reports, artifacts; rerun to resume it.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Local worker processes (each cell in its own process when > 1).")
@click.option("--threads", type=int, default=None,
              help="Torch threads per cell (default: CPUs // --jobs; 1 per Ray task).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="local processes, or Ray tasks (pip install "
                                      "'srprune[compare]').")
@click.option("--address", default=None, help="Ray cluster address (default: a local Ray).")
@click.option("--bench-threads", type=int, default=1, show_default=True,
              help="ONNX Runtime threads of the latency run.")
@click.option("--bench-runs", type=int, default=20, show_default=True,
              help="Timed runs per model.")
@click.option("--bench-warmup", type=int, default=3, show_default=True)
@click.option("--no-bench", is_flag=True,
              help="Skip the latency run (quality, params and MACs only).")
@json_option
def command(model: str, scale: int | None, weights: str | None, criteria: str,
            strategies: str, ratios: str, seeds: str, evals: tuple[str, ...],
            input_size: tuple[int, int], out: str, jobs: int, threads: int | None,
            backend: str, address: str | None, bench_threads: int, bench_runs: int,
            bench_warmup: int, no_bench: bool, as_json: bool, **settings: Any) -> None:
    """Compress MODEL with every criterion x strategy x ratio x seed, fine-tune each at the
    same budget, evaluate, time all artifacts together and report (table, plots, verdict).

    Finished cells in --out are kept: rerun the same command to resume a stopped grid, to
    retry failed cells, or with more seeds or criteria to extend it.
    """
    from srprune.compare.grid import GridSpec, parse_names, parse_ratios, parse_seeds
    from srprune.compare.run import Execution, prepare, run_grid

    spec = GridSpec(
        model=model, scale=scale, weights=weights, arch_options=arch_options(),
        trust_import=command_trust() is True,
        criteria=parse_names(criteria, "--criteria"),
        strategies=parse_names(strategies, "--strategies"), ratios=parse_ratios(ratios),
        seeds=parse_seeds(seeds), evals=tuple(evals) or ("builtin",),
        input_size=tuple(input_size), **settings)
    execution = Execution(jobs=jobs, threads=threads, backend=backend, address=address,
                          bench_threads=bench_threads, bench_runs=bench_runs,
                          bench_warmup=bench_warmup, bench=not no_bench)
    prep = prepare(spec, out, execution)
    line = grid_command(prep.spec, out, execution)
    with ProgressReporter(quiet=as_json) as progress:
        outcome = run_grid(prep, line, progress=progress,
                           log=lambda text: _log(text, progress))
    if as_json:
        print_json({"out": out, "verdicts": [v.as_dict() for v in outcome.verdicts],
                    "failed": [f["key"] for f in outcome.failures],
                    "files": [str(p) for p in outcome.files]})
    else:
        _print_table(outcome)
    failures = outcome.failures
    if failures or outcome.bench.get("error"):
        what = (f"{len(failures)} of {len(outcome.rows)} cells failed (first: "
                f"{failures[0]['key']}: {failures[0]['error']})" if failures
                else f"the latency run failed: {outcome.bench['error']}")
        click.echo(f"error: {what}; reports written to {out}; rerun the same command to "
                   "retry", err=True)
        sys.exit(1)


def _log(text: str, progress: Any) -> None:
    """A line per cell on stderr: above the bars on a terminal, unwrapped in a log."""
    if progress.mode == "bars":
        err_console.print(text, markup=False, highlight=False)
    else:
        click.echo(text, err=True)


def grid_command(spec: Any, out: str, execution: Any) -> str:
    """The command line of this grid, every setting spelled out."""
    args = ["srprune", "compare", spec.model, "--scale", str(spec.scale)]
    if spec.weights:
        args += ["--weights", spec.weights]
    if spec.trust_import:
        args.append("--trust-import")
    for key, value in spec.arch_options.items():
        args += ["--arch-opt", f"{key}={value}"]
    args += ["--criteria", ",".join(spec.criteria), "--strategies", ",".join(spec.strategies),
             "--ratios", ",".join(f"{r:g}" for r in spec.ratios),
             "--seeds", ",".join(map(str, spec.seeds))]
    if spec.data:
        args += ["--data", spec.data]
    if spec.lr_dir:
        args += ["--lr-dir", spec.lr_dir]
    for path in spec.evals:
        args += ["--eval", path]
    args += ["--scope", spec.scope, "--preset", spec.preset]
    for flag, value in (("--calib-batches", spec.calib_batches),
                        ("--calib-batch", spec.calib_batch), ("--calib-patch", spec.calib_patch)):
        if value is not None:
            args += [flag, str(value)]
    args += ["--finetune-steps", str(spec.finetune_steps)]
    if spec.finetune_steps:
        args += ["--finetune-lr", rate_text(spec.finetune_lr), "--finetune-batch",
                 str(spec.finetune_batch), "--finetune-patch", str(spec.finetune_patch)]
    if spec.eval_pruned:
        args.append("--eval-pruned")
    args += ["--distill-weight", f"{spec.distill_weight:g}",
             "--distill-features", f"{spec.distill_features:g}",
             "--dual-weight", f"{spec.dual_weight:g}",
             "--input-size", str(spec.input_size[0]), str(spec.input_size[1]),
             "--device", spec.device, "--out", out, "--jobs", str(execution.jobs)]
    if execution.threads is not None:
        args += ["--threads", str(execution.threads)]
    if execution.backend != "local":
        args += ["--backend", execution.backend]
    if execution.address:
        args += ["--address", execution.address]
    if execution.bench:
        args += ["--bench-threads", str(execution.bench_threads), "--bench-runs",
                 str(execution.bench_runs), "--bench-warmup", str(execution.bench_warmup)]
    else:
        args.append("--no-bench")
    return " ".join(shlex.quote(a) for a in args)


def _print_table(outcome: Any) -> None:
    from srprune.compare.report import header_lines, table_rows

    spec = outcome.spec
    head, body = table_rows(outcome.groups, outcome.reference, spec.eval_names(),
                            markdown=False, pruned=spec.eval_pruned)
    table = Table(title=f"srprune compare: {spec.model} x{outcome.reference['scale']}",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    for i, name in enumerate(head):
        table.add_column(name, justify="left" if i < 2 else "right", no_wrap=True)
    last_ratio = None
    for row in body:
        if last_ratio is not None and row[0] != last_ratio:
            table.add_section()
        last_ratio = row[0]
        table.add_row(*row)
    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    out = console if needed <= console.width else Console(width=needed)
    out.print(table)
    for line in header_lines(spec, outcome.reference, outcome.bench, outcome.groups):
        out.print(line.replace("`", ""), markup=False, highlight=False)
    out.print("Verdict per ratio:", style="bold")
    for verdict in outcome.verdicts:
        style = None if verdict.decisive is None else ("green" if verdict.decisive
                                                       else "yellow")
        out.print(f"  {verdict.text}", style=style, markup=False, highlight=False)
    out.print(f"{outcome.ran} cells run, {outcome.kept} kept from earlier runs; reports in "
              f"{outcome.folder.root}: table.md, report.html, results.json, results.csv, "
              "psnr_vs_latency.png, psnr_vs_macs.png, widths.png", markup=False,
              highlight=False)
