"""``srprune bench``: ONNX Runtime CPU latency of several models, side by side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from srprune.cli.common import (
    check_input_size,
    console,
    err_console,
    fmt_count,
    input_size_option,
    json_option,
    load_model_arg,
    print_json,
    scale_option,
)
from srprune.cli.progress import ProgressReporter
from srprune.errors import SrpruneError

BUSY_CPU_PER_WALL = 0.9  # per thread; below it the process waited for a CPU


@click.command("bench")
@click.argument("models", nargs=-1, required=True, metavar="MODEL_OR_FILE...")
@scale_option
@input_size_option()
@click.option("--threads", "-t", type=click.IntRange(min=1), default=1, show_default=True,
              help="ONNX Runtime intra-op threads (and torch threads with --torch).")
@click.option("--runs", "-n", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed runs per model.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed warm-up runs per model.")
@click.option("--torch", "with_torch", is_flag=True, help="Also time torch eager.")
@click.option("--roofline", is_flag=True,
              help="Time an SGEMM alongside the models and report efficiency; also measure "
                   "SGEMM GFLOP/s at 1 thread and all CPUs.")
@click.option("--onnx-out", type=click.Path(file_okay=False), default=None,
              help="Keep the ONNX files in this folder (default: a temporary folder).")
@click.option("--force", is_flag=True, help="Overwrite existing files in --onnx-out.")
@json_option
def command(models: tuple[str, ...], scale: int | None, input_size: tuple[int, int],
            threads: int, runs: int, warmup: int, with_torch: bool, roofline: bool,
            onnx_out: str | None, force: bool, as_json: bool) -> None:
    """Export MODEL_OR_FILE... to ONNX, check parity and time them on ONNX Runtime CPU.

    Models run interleaved (A B A B ...) on one random input; speed-ups are relative to the
    first model. Each argument is anything the model front door takes (a registered name, an
    artifact, a checkpoint) or an ONNX file (``*.onnx``: timed as it is, no export or parity;
    params and MACs counted on its graph).
    """
    from srprune.measure.bench import add_roofline, benchmark
    from srprune.measure.roofline import available_cpus, measure_roofline

    loaded = [(spec, _load(spec, scale, threads)) for spec in models]
    for _, model in loaded:
        check_input_size(input_size, model.scale)
    with ProgressReporter(quiet=as_json) as progress:
        phases = _Phases(progress, len(loaded), runs + warmup, with_torch, roofline)
        records = benchmark(
            loaded, input_size, threads=threads, runs=runs, warmup=warmup, onnx_dir=onnx_out,
            force=force, with_torch=with_torch, roofline=roofline, on_step=phases.step,
        )
        if roofline:
            progress("roofline", 0, 1)
            add_roofline(records, measure_roofline(sorted({1, threads, available_cpus()})))
            progress("roofline", 1, 1)
    if as_json:
        print_json([rec.as_dict() for rec in records])
    else:
        _print_table(records, with_torch, roofline)
    _warn_if_busy(records)


def _load(spec: str, scale: int | None, threads: int) -> Any:
    """An ``OnnxModel`` for ``*.onnx`` (its scale checked against ``--scale``), else an SRModel."""
    from srprune.measure.onnx_file import is_onnx_path, open_onnx

    if not is_onnx_path(spec):
        return load_model_arg(spec, scale, note_random=False)
    model = open_onnx(spec, threads)
    if scale is not None and scale != model.scale:
        raise SrpruneError(f"{spec} is a x{model.scale} model, but --scale {scale} was given")
    return model


class _Phases:
    """``benchmark``'s ``on_step(description)`` calls as progress stages.

    "export+parity" (2 steps a model), "latency: onnxruntime" (one step a call, the SGEMM of
    ``--roofline`` included), "latency: torch"; each starts (``done=0``) when the one before
    it ends, so its elapsed time is its own. Together they are ``bench_steps`` steps.
    """

    def __init__(self, progress: ProgressReporter, n_models: int, calls: int,
                 with_torch: bool, roofline: bool) -> None:
        self.progress = progress
        self.totals = {"export+parity": 2 * n_models,
                       "latency: onnxruntime": (n_models + roofline) * calls}
        if with_torch:
            self.totals["latency: torch"] = n_models * calls
        self.done = dict.fromkeys(self.totals, 0)
        self.order = list(self.totals)
        progress(self.order[0], 0, self.totals[self.order[0]])

    def step(self, description: str) -> None:
        stage = ("export+parity" if description.startswith(("export", "parity"))
                 else f"latency: {description}")
        if stage not in self.done:  # a step benchmark() gained since: count it anyway
            self.totals[stage], self.done[stage] = 1, 0
            self.order.append(stage)
        self.done[stage] += 1
        total = max(self.totals[stage], self.done[stage])
        note = description if stage == "export+parity" else None
        self.progress(stage, self.done[stage], total, note=note)
        if self.done[stage] == total:
            following = self.order[self.order.index(stage) + 1:]
            if following and self.done[following[0]] == 0:
                self.progress(following[0], 0, self.totals[following[0]])


def _print_table(records: list, with_torch: bool, roofline: bool) -> None:
    first = records[0]
    h, w = first.input_size
    headers = ["model", "params", "MACs", "median ms", "p10-p90 ms", "speed-up", "GFLOP/s"]
    headers += ["eff."] if roofline else []
    headers += ["torch ms", "torch speed-up"] if with_torch else []
    rows = []
    for rec in records:
        lat = rec.latency
        row = [rec.model, fmt_count(rec.params), _fmt(rec.macs, fmt_count),
               f"{lat.median:.2f}", f"{lat.p10:.1f}-{lat.p90:.1f}", f"{rec.speedup:.2f}x",
               _fmt(rec.gflops, "{:.1f}".format)]
        if roofline:
            row.append(_fmt(rec.roofline["efficiency"], "{:.1%}".format))
        if with_torch:
            row += [f"{rec.torch_latency.median:.2f}", f"{rec.torch_speedup:.2f}x"]
        rows.append(row)
    table = Table(title=f"ONNX Runtime CPU, {first.threads} thread(s), {h}x{w} LR, "
                        f"{first.runs} runs", box=box.SIMPLE_HEAD, padding=(0, 1))
    for i, name in enumerate(headers):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # a narrow terminal (or a pipe, 80 columns) would cut the last columns: widen instead
    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    out = console if needed <= console.width else Console(width=needed)
    out.print(table)
    parities = [rec.parity_max_abs_diff for rec in records if rec.parity_max_abs_diff is not None]
    exported = next((rec for rec in records if rec.parity_max_abs_diff is not None), None)
    note = (f"opset {exported.opset} ({exported.exporter} exporter); max |torch - ORT| "
            f"{max(parities):.2g} on 0..255; " if exported is not None else "")
    note += "MACs = conv/linear multiply-accumulates"
    given = [rec.model for rec in records if rec.exporter == "onnx file"]
    if given:
        note += (f"; {', '.join(given)}: ONNX file(s) timed as given (no parity check; params "
                 "and MACs of the exported graph, n/a where its shapes cannot be inferred)")
    ratios = [rec.latency.cpu_per_wall for rec in records]
    note += f"; CPU/wall time {min(ratios):.2f}-{max(ratios):.2f}"
    if roofline:
        sgemm = ", ".join(f"{t} thr {g:.0f}" for t, g in first.roofline["sgemm_gflops"].items())
        note += (f"; efficiency vs SGEMM timed alongside: {first.roofline['peak_gflops']:.0f} "
                 f"GFLOP/s; standalone SGEMM GFLOP/s: {sgemm}")
    out.print(note)


def _fmt(value: float | None, fmt: Callable[[float], str]) -> str:
    return "n/a" if value is None else fmt(value)


def _warn_if_busy(records: list) -> None:
    """Say so on stderr when the timed process had to wait for a CPU."""
    ratio = min(rec.latency.cpu_per_wall for rec in records)
    threads = records[0].threads
    if ratio < BUSY_CPU_PER_WALL * threads:
        err_console.print(f"[yellow]warning:[/] CPU/wall time {ratio:.2f} is well below "
                          f"{threads} (the thread count): other processes competed for the "
                          "CPUs, so these latencies are inflated")
