"""``srprune compress``: prune a model and write a loadable artifact with its report."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from srprune.cli.common import (
    LEARNING_RATE,
    check_device,
    console,
    distill_options,
    fmt_count,
    input_size_option,
    json_option,
    load_model_arg,
    lr_dir_option,
    parse_options,
    print_json,
    scale_option,
)
from srprune.cli.progress import ProgressReporter
from srprune.config import FineTune, RunConfig
from srprune.errors import SrpruneError
from srprune.io.checkpoint import check_writable
from srprune.quality.advice import quality_drop_advice


@click.command("compress")
@click.argument("model")
@scale_option
@click.option("--weights", type=click.Path(), default=None, help="Checkpoint to load first.")
@click.option("--ratio", type=float, default=None,
              help="Fraction of the primal net's parameters to remove, in [0, 1).")
@click.option("--criterion", default="auto", show_default=True,
              help="Channel criterion name; auto: cp (least-squares refit of the kept "
                   "channels) with --data, l1 without.")
@click.option("--compensate/--no-compensate", default=True, show_default=True,
              help="With --data: the consumers' biases absorb the mean of the removed "
                   "channels (criteria that refit biases skip it).")
@click.option("--strategy", default="uniform", show_default=True, help="Search strategy name.")
@click.option("--scope", type=click.Choice(["auto", "internal", "all"]), default="auto",
              show_default=True, help="internal: block-inner channels only; all: trunks too; "
                                      "auto: internal, or all (with a warning) when internal "
                                      "alone cannot reach --ratio.")
@click.option("--round-to", type=int, default=None, metavar="N",
              help="Kept widths are multiples of N (1: exact widths). Default: auto, the "
                   "channel block ONNX Runtime's blocked convolutions use on this CPU (16 on "
                   "AVX-512, 8 on AVX2; probed once and cached), finer where the block cannot "
                   "land near --ratio.")
@click.option("--min-width", type=int, default=1, show_default=True,
              help="Never keep fewer channels in a unit (uniform strategy).")
@click.option("--plan", "plan_file", type=click.Path(), default=None,
              help="Plan file for --strategy from-file (JSON or the authors' text format).")
@click.option("--target-latency", type=float, default=None, metavar="MS",
              help="Strategy latency: ONNX Runtime latency to reach at --input-size.")
@click.option("--speedup", type=float, default=None, metavar="X",
              help="Strategy latency: be X times faster than the unpruned model.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Strategy latency: ONNX Runtime threads the target is measured with.")
@click.option("--allow-miss", is_flag=True,
              help="Strategy latency: exit 0, not 3, when the pruned model misses the target "
                   "as measured (a warning line says so; the artifact is written either way).")
@input_size_option(sizes_the_work=False)
@click.option("--data", type=click.Path(), default=None,
              help="HR image folder (or EDSR benchmark layout, or DIV2K *_HR) for calibration and "
                   "fine-tuning; 'builtin': scikit-image photos outside the evaluation set.")
@lr_dir_option
@click.option("--preset", type=click.Choice(["fast", "default", "thorough"]), default="default",
              show_default=True, help="Budget of calibration data and selection/search effort.")
@click.option("--calib-batches", type=int, default=None, help="Calibration batches (preset).")
@click.option("--calib-batch", type=int, default=None, help="Patches per batch (preset).")
@click.option("--calib-patch", type=int, default=None, help="LR patch size (preset).")
@click.option("--criterion-opt", multiple=True, metavar="KEY=VALUE",
              help="Criterion option (repeatable).")
@click.option("--strategy-opt", multiple=True, metavar="KEY=VALUE",
              help="Strategy option (repeatable).")
@click.option("--finetune-steps", type=int, default=0, show_default=True,
              help="Dual-regression fine-tuning steps after pruning (needs --data).")
@click.option("--finetune-lr", type=LEARNING_RATE, default=FineTune.lr, show_default=True,
              help="A rate, or auto: 5e-4, backing off to 1e-4, 2e-5, 4e-6 while the first "
                   "validation scores below the pruned model.")
@click.option("--finetune-batch", type=int, default=FineTune.batch, show_default=True)
@click.option("--finetune-patch", type=int, default=FineTune.patch, show_default=True,
              help="LR patch size.")
@click.option("--finetune-keep", type=click.Choice(["best", "last"]), default=FineTune.keep,
              show_default=True, help="best: the weights that scored best on fixed validation "
                                      "patches (the pruned ones if no step beat them).")
@click.option("--finetune-eval-every", type=int, default=FineTune.eval_every,
              show_default=True, help="Validation every N steps (0: ten times a run).")
@click.option("--dual-weight", type=float, default=0.1, show_default=True,
              help="lambda of the dual-regression loss (fine-tuning, dr criterion/search).")
@distill_options
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--bf16", is_flag=True, help="Fine-tuning: bf16 autocast (CUDA only).")
@click.option("--channels-last", is_flag=True,
              help="Fine-tuning: channels-last memory format (CUDA only).")
@click.option("--eval", "eval_data", default=None, metavar="builtin|DIR",
              help="Report PSNR/SSIM before and after on these images.")
@click.option("--report", type=click.Path(), default=None, metavar="FILE.html",
              help="Also write a self-contained HTML page: the numbers and side-by-side crops "
                   "of --eval images (HR, bicubic, unpruned, compressed) where they differ most.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Artifact to write (.srp).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@json_option
def command(model: str, scale: int | None, weights: str | None, round_to: int | None,
            min_width: int, plan_file: str | None, target_latency: float | None,
            speedup: float | None, threads: int, allow_miss: bool,
            criterion_opt: tuple[str, ...], strategy_opt: tuple[str, ...],
            eval_data: str | None, report: str | None, as_json: bool,
            **settings: Any) -> None:
    """Compress MODEL (registered name or artifact) and write the pruned model to --out.

    \b
    Exit status: 0 done; 1 internal error (a bug: please report it);
    2 bad input (one "error:" line, nothing written);
    3 --strategy latency missed its target as measured (the artifact is
      written and the report printed all the same; --allow-miss: exit 0);
    130 interrupted (what was kept is said on the error line).
    """
    from srprune.api import (  # deferred: fast `--help`
        check_plugins,
        compress_model,
        round_to_option,
    )
    from srprune.training import distributed

    check_device(settings["device"])
    latency = settings["strategy"] == "latency"
    if settings["ratio"] is None and settings["strategy"] not in ("from-file", "latency"):
        raise SrpruneError("--ratio is required (except with --strategy from-file or latency)")
    if (target_latency is not None or speedup is not None) and not latency:
        raise SrpruneError("--target-latency and --speedup go with --strategy latency")
    if allow_miss and not latency:
        raise SrpruneError("--allow-miss goes with --strategy latency (a measured target)")
    strategy_options: dict[str, Any] = parse_options(strategy_opt, "--strategy-opt")
    if latency:
        for key, value in (("target_ms", target_latency), ("speedup", speedup)):
            if value is not None:
                strategy_options.setdefault(key, value)
        strategy_options.setdefault("threads", threads)
    round_to_option(settings["strategy"], round_to, strategy_options)
    if settings["strategy"] == "uniform":
        strategy_options.setdefault("min_width", min_width)
    if plan_file is not None:
        strategy_options.setdefault("plan", plan_file)
    if settings["force"] and "save" in strategy_options:  # --force covers the plan files too
        strategy_options.setdefault("force", True)
    # built now so that a bad name or value fails before the model loads
    config = RunConfig.build(**settings, evaluate=eval_data,
                             criterion_options=parse_options(criterion_opt, "--criterion-opt"),
                             strategy_options=strategy_options)
    check_plugins(config)
    _refuse_ignored_ratio(settings["strategy"], settings["ratio"])
    check_writable(settings["out"], settings["force"])
    if report is not None:
        from srprune.cli.crops_report import check_report, compress_report

        check_report(report, eval_data, settings["force"])
    sr = load_model_arg(model, scale, weights)
    unpruned = __import__("copy").deepcopy(sr) if report is not None else None
    with distributed.session(config.device) as world, \
            ProgressReporter(quiet=as_json or not world.main) as progress:
        result = compress_model(sr, config=config, progress=progress if world.main else None,
                                source=model)
    if not world.main:  # under torchrun, rank 0 reports
        return
    summary = {"model": model, "out": settings["out"], **result.summary()}
    if as_json:
        print_json(summary)
    else:
        _print_report(summary)
    advice = quality_drop_advice(summary)
    if advice:
        click.echo(f"warning: {advice}", err=True)
    if report is not None:
        compress_report(report, summary, unpruned, sr, eval_data, settings["device"],
                        settings["force"])
    _judge_target(summary, speedup, allow_miss)


class TargetMissed(SrpruneError):
    """The latency target was missed as measured: the artifact is written, exit status 3."""

    exit_code = 3


def _refuse_ignored_ratio(strategy: str, ratio: float | None) -> None:
    """A strategy that picks its own widths (latency, from-file) would ignore --ratio
    silently; refuse it, saying what the strategy takes instead."""
    from srprune.registry import STRATEGIES

    if ratio is None or getattr(STRATEGIES.get(strategy), "uses_ratio", True):
        return
    takes = {"latency": "a measured target: --speedup X or --target-latency MS",
             "from-file": "the widths in --plan FILE"}.get(strategy, "its own widths")
    raise SrpruneError(f"--ratio does not apply to --strategy {strategy}: it takes {takes} "
                       "(drop --ratio)")


def _judge_target(s: dict[str, Any], speedup: float | None, allow_miss: bool) -> None:
    """After the report: a missed latency target is exit status 3 (a warning line with
    ``--allow-miss``); the artifact has been written either way."""
    r = s.get("strategy_report") or {}
    if r.get("met", True):
        return
    if speedup is not None:
        missed = f"measured speed-up {r['measured_speedup']:.2f}x, target {speedup:g}x"
    else:
        missed = f"measured {r['measured_ms']:.2f} ms, target {r['target_ms']:.2f} ms"
    line = (f"latency target NOT met ({missed}; {r['threads']} thread(s), "
            f"{r['input_size'][0]}x{r['input_size'][1]} LR); the report is printed and the "
            f"pruned model written to {s['out']} all the same")
    if allow_miss:
        click.echo(f"warning: {line}", err=True)
        return
    raise TargetMissed(f"{line}; exit status 3 (pass --allow-miss to exit 0)")


def _print_report(s: dict[str, Any]) -> None:
    table = Table(title=f"{s['model']} -> {s['out']}  ({s['criterion']}, {s['strategy']}, "
                        f"scope {s['scope']})")
    for col in ("", "before", "after", "after/before"):
        table.add_column(col, justify="right")
    for label, key in (("params", "params"), ("MACs", "macs"), ("paper MACs", "paper_macs")):
        b, a = s[f"{key}_before"], s[f"{key}_after"]
        table.add_row(label, fmt_count(b), fmt_count(a), f"{a / b:.3f}")
    qb, qp, qa = s.get("quality_before"), s.get("quality_pruned"), s.get("quality_after")
    for label in ("psnr", "ssim"):
        if qb and qa:
            after = f"{qa[label]:.4f}" + (f" (pruned {qp[label]:.4f})" if qp else "")
            table.add_row(f"{label.upper()} (Y)", f"{qb[label]:.4f}", after,
                          f"{qa[label] - qb[label]:+.4f}")
    if qb:
        table.add_row("bicubic PSNR", f"{qb['bicubic_psnr']:.4f}", "", "")
    console.print(table)
    latency = s.get("strategy_report") or {}
    asked = (f"ratio asked {s['ratio_requested']:.3f}" if s["ratio_requested"] is not None
             else "widths for the latency target" if "target_ms" in latency
             else "widths from the plan file")
    if "measured_ms" in latency:
        console.print(_latency_line(latency))
    validation = (s.get("finetune") or {}).get("validation")
    if validation:
        console.print(_validation_line(validation))
    if s.get("reparameterized"):
        console.print(f"{s['reparameterized']} re-parameterised blocks were fused to their "
                      "deploy form (one conv each) before pruning")
    if latency.get("blocks_offered") == 0:
        console.print("depth: the model has no residual block to remove (a block must turn "
                      "into the identity with zero weights); widths only")
    if s.get("removed_blocks"):
        blocks = s["removed_blocks"]
        console.print(f"depth: {len(blocks)} residual block(s) removed whole "
                      f"({', '.join(blocks[:4])}{', ...' if len(blocks) > 4 else ''})")
    rounding = latency.get("round_to")
    if rounding and rounding > 1:
        asked += f", widths in multiples of {rounding}"
    console.print(f"{asked}, achieved {s['ratio_achieved']:.3f} "
                  f"(fraction of primal parameters removed); {s['units']} units; "
                  f"MACs at {s['input_size'][0]}x{s['input_size'][1]} LR; "
                  f"time {sum(s['seconds'].values()):.1f} s")


def _latency_line(r: dict[str, Any]) -> str:
    """Target, prediction and the end-to-end measurement of the latency strategy."""
    verdict = "met" if r["met"] else "NOT met"
    return (f"latency ({r['threads']} thread(s), {r['input_size'][0]}x{r['input_size'][1]} "
            f"LR, ONNX Runtime): target {r['target_ms']:.2f} ms, predicted "
            f"{r['predicted_ms']:.2f} ms; measured {r['measured_ms']:.2f} ms vs unpruned "
            f"{r['measured_unpruned_ms']:.2f} ms in one interleaved run"
            f"{' of process CPU time' if str(r.get('clock', '')).startswith('process') else ''}"
            f" (speed-up "
            f"{r['measured_speedup']:.2f}x): target {verdict}{_refinement_note(r)}")


def _refinement_note(r: dict[str, Any]) -> str:
    """Widths alignment, how often the plan was timed before pruning, the quality proxy."""
    rounds = r.get("refinements") or []
    proxy = r.get("quality_proxy")
    parts = ([f"widths in multiples of {r['align']}"] if r.get("align", 1) > 1 else []) + (
        [f"plan timed {len(rounds)} time(s) before pruning"] if rounds else []) + (
        ["quality: measured output change per unit"
         + (f" ({r['sensitivity_order']}'s choice)" if r.get("sensitivity_order") else "")
         if proxy == "measured" else "quality: L1 filter mass"] if proxy else []) + (
        [f"non-conv {r['nonconv_ms']['fixed']:.1f} ms fixed + "
         f"{r['nonconv_ms']['width_scaled']:.1f} ms scaling with widths (ORT profile)"]
        if r.get("nonconv") == "profile" and r.get("nonconv_ms") else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _validation_line(v: dict[str, Any]) -> str:
    """One line on what fine-tuning did on the fixed validation patches."""
    head = (f"fine-tuning, validation Y-PSNR on {v['patches']} fixed patches: start "
            f"{v['start_psnr']:.3f}, best {v['best_psnr']:.3f}")
    if v["kept"] == "start":
        return (f"{head}: no step beat the pruned model, so its weights were kept "
                f"(last step {v['last_psnr']:.3f})")
    if v["kept"] == "best":
        return f"{head} at step {v['best_step']} (kept; last step {v['last_psnr']:.3f})"
    return f"{head} at step {v['best_step']}; kept the last step ({v['last_psnr']:.3f})"
