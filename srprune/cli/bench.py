"""``srprune bench``: ONNX Runtime (and/or ncnn) CPU latency of several models, side by side."""

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
@click.option("--runtime", "runtime", default="ort", show_default=True, metavar="ort,ncnn",
              help="Runtimes to time, comma-separated: ort (ONNX Runtime), ncnn (exported "
                   "through pnnx, parity checked on ncnn); both run in the same rounds and "
                   "sit side by side.")
@click.option("--ncnn-fp16", is_flag=True,
              help="Time ncnn with its float16/bfloat16 defaults (as apps run it) instead of "
                   "float32; parity is always checked in float32.")
@click.option("--onnx-out", type=click.Path(file_okay=False), default=None,
              help="Keep the exported files (ONNX, ncnn .param/.bin) in this folder "
                   "(default: a temporary folder).")
@click.option("--force", is_flag=True, help="Overwrite existing files in --onnx-out.")
@json_option
def command(models: tuple[str, ...], scale: int | None, input_size: tuple[int, int],
            threads: int, runs: int, warmup: int, with_torch: bool, roofline: bool,
            runtime: str, ncnn_fp16: bool, onnx_out: str | None, force: bool,
            as_json: bool) -> None:
    """Export MODEL_OR_FILE... to ONNX (and/or ncnn), check parity and time them on the CPU.

    Models run interleaved (A B A B ...) on one random input; speed-ups are relative to the
    first model. Each argument is anything the model front door takes (a registered name, an
    artifact, a checkpoint) or an ONNX file (``*.onnx``: timed as it is on ONNX Runtime, no
    export or parity; params and MACs counted on its graph).
    """
    from srprune.measure.bench import add_roofline, benchmark, parse_runtimes
    from srprune.measure.roofline import available_cpus, measure_roofline

    runtimes = parse_runtimes(runtime)
    if ncnn_fp16 and "ncnn" not in runtimes:
        raise SrpruneError("--ncnn-fp16 sets how ncnn is timed; it needs --runtime ncnn "
                           "(or ort,ncnn)")
    if "ncnn" in runtimes:
        from srprune.measure.ncnn_export import pnnx_executable
        from srprune.measure.ncnn_runtime import require_ncnn

        require_ncnn()
        pnnx_executable()
    loaded = [(spec, _load(spec, scale, threads)) for spec in models]
    for _, model in loaded:
        check_input_size(input_size, model.scale)
    with ProgressReporter(quiet=as_json) as progress:
        phases = _Phases(progress, len(loaded), runs + warmup, with_torch, roofline, runtimes)
        records = benchmark(
            loaded, input_size, threads=threads, runs=runs, warmup=warmup, onnx_dir=onnx_out,
            force=force, with_torch=with_torch, roofline=roofline, on_step=phases.step,
            runtimes=runtimes, ncnn_fp16=ncnn_fp16,
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
    from srprune.models import names_a_file

    if not is_onnx_path(spec):
        return load_model_arg(spec, scale, note_random=False,
                              model_options=not names_a_file(spec) or _only_files())
    model = open_onnx(spec, threads)
    if scale is not None and scale != model.scale:
        raise SrpruneError(f"{spec} is a x{model.scale} model, but --scale {scale} was given")
    return model


def _only_files() -> bool:
    """Every MODEL argument is a file: then ``--arch-opt``/``--arch`` are theirs (an ncnn file
    with ``--arch``), and a file refuses what it cannot take."""
    import click

    from srprune.models import names_a_file

    ctx = click.get_current_context()
    return all(names_a_file(m) for m in ctx.params.get("models", ()))


class _Phases:
    """``benchmark``'s ``on_step(description)`` calls as progress stages.

    "export+parity" (2 steps a model and runtime), "latency: onnxruntime" (or "ncnn",
    "onnxruntime+ncnn": one step a call, the SGEMM of ``--roofline`` included), "latency:
    torch"; each starts (``done=0``) when the one before it ends, so its elapsed time is its
    own. Together they are ``bench_steps`` steps.
    """

    def __init__(self, progress: ProgressReporter, n_models: int, calls: int,
                 with_torch: bool, roofline: bool, runtimes: tuple[str, ...] = ("ort",)
                 ) -> None:
        from srprune.measure.bench import latency_stage

        self.progress = progress
        n_rt = len(runtimes)
        self.totals = {"export+parity": 2 * n_models * n_rt,
                       f"latency: {latency_stage(runtimes)}": (n_models * n_rt + roofline)
                       * calls}
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
    side = first.ncnn_latency is not None  # ncnn beside ORT
    headers = ["model", "params", "MACs", "median ms", "p10-p90 ms", "speed-up", "GFLOP/s"]
    headers += ["eff."] if roofline else []
    headers += ["ncnn ms", "ncnn p10-p90", "ncnn speed-up"] if side else []
    headers += ["torch ms", "torch speed-up"] if with_torch else []
    rows = []
    for rec in records:
        lat = rec.latency
        row = [rec.model, fmt_count(rec.params), _fmt(rec.macs, fmt_count),
               f"{lat.median:.2f}", f"{lat.p10:.1f}-{lat.p90:.1f}", f"{rec.speedup:.2f}x",
               _fmt(rec.gflops, "{:.1f}".format)]
        if roofline:
            row.append(_fmt(rec.roofline["efficiency"], "{:.1%}".format))
        if side:
            nl = rec.ncnn_latency
            row += [f"{nl.median:.2f}", f"{nl.p10:.1f}-{nl.p90:.1f}", f"{rec.ncnn_speedup:.2f}x"]
        if with_torch:
            row += [f"{rec.torch_latency.median:.2f}", f"{rec.torch_speedup:.2f}x"]
        rows.append(row)
    runtime = {"onnxruntime": "ONNX Runtime", "ncnn": "ncnn"}[first.runtime]
    if side:
        runtime += " (ncnn beside it)"
    table = Table(title=f"{runtime} CPU, {first.threads} thread(s), {h}x{w} LR, "
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
    note = ""
    if exported is not None and exported.runtime == "onnxruntime":
        note = (f"opset {exported.opset} ({exported.exporter} exporter); max |torch - ORT| "
                f"{max(parities):.2g} on 0..255; ")
    elif exported is not None:
        note = f"ncnn via {exported.exporter}; max |torch - ncnn| {max(parities):.2g} on 0..255; "
    if side:
        worst = max(rec.ncnn_parity["max_abs_diff"] for rec in records)
        note += f"ncnn via pnnx, max |torch - ncnn| {worst:.2g} on 0..255; "
    if first.ncnn_fp16 is not None:
        note += ("ncnn timed with its float16/bfloat16 defaults; " if first.ncnn_fp16
                 else "ncnn timed in float32; ")
    note += "MACs = conv/linear multiply-accumulates"
    given = [rec.model for rec in records if rec.exporter == "onnx file"]
    if given:
        note += (f"; {', '.join(given)}: ONNX file(s) timed as given (no parity check; params "
                 "and MACs of the exported graph, n/a where its shapes cannot be inferred)")
    ratios = _cpu_per_wall(records)
    note += f"; CPU/wall time {min(ratios):.2f}-{max(ratios):.2f}"
    if roofline:
        sgemm = ", ".join(f"{t} thr {g:.0f}" for t, g in first.roofline["sgemm_gflops"].items())
        note += (f"; efficiency vs SGEMM timed alongside: {first.roofline['peak_gflops']:.0f} "
                 f"GFLOP/s; standalone SGEMM GFLOP/s: {sgemm}")
    out.print(note)


def _fmt(value: float | None, fmt: Callable[[float], str]) -> str:
    return "n/a" if value is None else fmt(value)


def _cpu_per_wall(records: list) -> list[float]:
    """CPU/wall time of every timed runtime's calls (ncnn's too when beside ORT)."""
    ratios = [rec.latency.cpu_per_wall for rec in records]
    ratios += [rec.ncnn_latency.cpu_per_wall for rec in records if rec.ncnn_latency is not None]
    return [r for r in ratios if r is not None]


def _warn_if_busy(records: list) -> None:
    """Say so on stderr when the timed process had to wait for a CPU."""
    ratio = min(_cpu_per_wall(records))
    threads = records[0].threads
    if ratio < BUSY_CPU_PER_WALL * threads:
        err_console.print(f"[yellow]warning:[/] CPU/wall time {ratio:.2f} is well below "
                          f"{threads} (the thread count): other processes competed for the "
                          "CPUs, so these latencies are inflated")
