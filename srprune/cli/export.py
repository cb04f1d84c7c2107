"""``srprune export``: a model to an ONNX file, FP32 or INT8 (ONNX Runtime's quantization),
and/or to an ncnn ``.param``/``.bin`` pair (through pnnx), each checked against torch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from srprune.cli.common import (
    check_input_size,
    console,
    input_size_option,
    json_option,
    load_model_arg,
    lr_dir_option,
    print_json,
    scale_option,
)
from srprune.cli.progress import ProgressReporter
from srprune.errors import SrpruneError


@click.command("export")
@click.argument("model", metavar="MODEL_OR_SRP")
@click.option("--onnx", "onnx_path", type=click.Path(), default=None,
              help="ONNX file to write (refused if it exists, unless --force).")
@click.option("--ncnn", "ncnn_path", type=click.Path(), default=None, metavar="OUT.param",
              help="ncnn model to write (OUT.param and OUT.bin, through pnnx; parity checked "
                   "on ncnn's CPU runtime; refused if either exists, unless --force).")
@scale_option
@click.option("--weights", type=click.Path(), default=None, help="Checkpoint to load.")
@input_size_option()
@click.option("--force", is_flag=True, help="Overwrite existing --onnx/--ncnn files.")
@click.option("--int8", is_flag=True,
              help="Quantize to INT8 (QDQ, ONNX Runtime's tools), calibrated on --data.")
@click.option("--data", type=click.Path(), default=None,
              help="Images whose LR patches calibrate INT8 (a folder, or 'builtin').")
@lr_dir_option
@click.option("--eval", "eval_data", default="builtin", show_default=True, metavar="builtin|DIR",
              help="Images (with HR) judging INT8 quality: the built-in photos or a folder.")
@click.option("--max-drop", type=float, default=0.1, show_default=True,
              help="Largest Y-PSNR drop (dB, vs FP32 on --eval) before layers go back to FP32.")
@click.option("--max-float", type=click.IntRange(min=0), default=8, show_default=True,
              help="Cap on the layers kept in FP32.")
@click.option("--calib-patches", type=click.IntRange(min=1), default=32, show_default=True,
              help="LR calibration patches drawn from --data.")
@click.option("--activations", type=click.Choice(["uint8", "int8"]), default="uint8",
              show_default=True,
              help="INT8 activation type (uint8: the fast one on x86 CPUs without VNNI).")
@click.option("--reduce-range", is_flag=True,
              help="7-bit INT8 weights: avoids the saturation of 8-bit dot products on x86 "
                   "CPUs without VNNI (check the drop with and without it there).")
@click.option("--qat-steps", type=int, default=0, show_default=True,
              help="When PTQ + mixed precision miss --max-drop: quantization-aware "
                   "fine-tuning steps on --data, then PTQ again; the better file is kept.")
@click.option("--qat-lr", type=float, default=None,
              help="QAT learning rate, cosine-decayed to a tenth of it (default 2e-5).")
@click.option("--threads", "-t", type=click.IntRange(min=1), default=1, show_default=True,
              help="ONNX Runtime threads for evaluation and latency.")
@click.option("--runs", "-n", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed runs per model for the latency ratio.")
@json_option
def command(model: str, onnx_path: str | None, ncnn_path: str | None, scale: int | None,
            weights: str | None,
            input_size: tuple[int, int], force: bool, int8: bool, data: str | None,
            lr_dir: str | None, eval_data: str, max_drop: float, max_float: int,
            calib_patches: int, activations: str, reduce_range: bool, qat_steps: int,
            qat_lr: float | None,
            threads: int, runs: int, as_json: bool) -> None:
    """Export MODEL_OR_SRP to --onnx (FP32, parity checked), or INT8 with --int8 --data;
    and/or to --ncnn OUT.param (+ OUT.bin, FP32, parity checked on ncnn).

    INT8: calibration on LR patches of --data, per-layer sensitivity and the most harmful
    layers kept in FP32 until the PSNR drop on --eval is at most --max-drop; the report gives
    parity, PSNR/SSIM of FP32 and INT8, the latency and size ratios. --qat-steps N: when
    that misses --max-drop, N steps of quantization-aware fine-tuning on --data, then the
    same search on the tuned weights; the smaller drop is written.
    """
    from srprune.io.checkpoint import check_writable

    qat = _qat_settings(int8, data, qat_steps, qat_lr)
    if reduce_range and not int8:
        raise SrpruneError("--reduce-range applies to INT8 weights; it needs --int8")
    _check_targets(onnx_path, ncnn_path, int8)
    _check_options(int8, data, lr_dir, max_drop)
    out = check_writable(onnx_path, force) if onnx_path is not None else None
    if ncnn_path is not None:
        from srprune.measure.ncnn_export import check_ncnn_writable, pnnx_executable
        from srprune.measure.ncnn_runtime import require_ncnn

        check_ncnn_writable(ncnn_path, force)
        require_ncnn()
        pnnx_executable()
    sr = load_model_arg(model, scale, weights)
    check_input_size(input_size, sr.scale)
    if not int8:
        result: dict[str, Any] = {"model": model, "scale": sr.scale}
        lines = []
        if out is not None:
            result.update(_fp32_onnx(sr, model, out, input_size, force, threads))
            lines.append(_onnx_line(result))
        if ncnn_path is not None:
            from srprune.measure.ncnn_export import export_ncnn

            ncnn = export_ncnn(sr, ncnn_path, input_size, force=force, name=model,
                               threads=threads)
            result["ncnn"] = ncnn.as_dict()
            lines.append(_ncnn_line(ncnn))
        if as_json:
            print_json(result)
        else:
            for line in lines:
                console.print(line, markup=False, highlight=False)
        return
    assert out is not None  # _check_targets: --int8 needs --onnx
    from srprune.measure.quantize import Int8Settings

    settings = Int8Settings(activations, reduce_range=reduce_range)
    report = _int8(sr, model, out, input_size, force, data, lr_dir, eval_data, max_drop,
                   max_float, calib_patches, settings, threads, runs, as_json, qat)
    if as_json:
        print_json({"model": model, "scale": sr.scale, **report.as_dict()})
    else:
        _print_report(report, model)


def _check_targets(onnx_path: str | None, ncnn_path: str | None, int8: bool) -> None:
    """At least one output; INT8 is ONNX only."""
    if onnx_path is None and ncnn_path is None:
        raise SrpruneError("nothing to write: give --onnx OUT.onnx and/or --ncnn OUT.param")
    if int8 and onnx_path is None:
        raise SrpruneError("--int8 quantizes the ONNX file; it needs --onnx OUT.onnx")
    if int8 and ncnn_path is not None:
        raise SrpruneError("--ncnn writes an FP32 ncnn model; run it without --int8")


def _fp32_onnx(sr: Any, model: str, out: Path, input_size: tuple[int, int], force: bool,
               threads: int) -> dict[str, Any]:
    """The FP32 ONNX export and its parity, as the JSON report's keys."""
    from srprune.measure.export import check_parity, export_onnx

    exported = export_onnx(sr, out, input_size, force=force, name=model)
    try:
        parity = check_parity(sr, out, input_size, threads=threads, name=model)
    except SrpruneError:
        out.unlink(missing_ok=True)  # a file that fails parity is not left behind
        raise
    return {**exported.as_dict(), "parity_max_abs_diff": parity.max_abs_diff,
            "parity": parity.as_dict()}


def _onnx_line(result: dict[str, Any]) -> str:
    p = result["parity"]
    return (f"wrote {result['path']} ({result['size_bytes'] / 1e6:.2f} MB, opset "
            f"{result['opset']}, {result['exporter']} exporter); max |torch - ORT| "
            f"{result['parity_max_abs_diff']:.2g} on 0..255{_parity_note(p)}")


def _ncnn_line(res: Any) -> str:
    sizes = ", ".join(f"{p.input_shape[2]}x{p.input_shape[3]}" for p in res.parity)
    worst = max(res.parity, key=lambda p: (p.runtime_error or 0) / (p.limit or 1),
                default=None)
    note = "" if worst is None else (f"; max |torch - ncnn| {res.parity_max_abs_diff:.2g} on "
                                     f"0..255 at {sizes}{_parity_note(worst.as_dict())}")
    return (f"wrote {res.param_path} + {res.bin_path.name} ({res.size_bytes / 1e6:.2f} MB, "
            f"{res.layers} layers, pnnx from {res.route}){note}")


def _parity_note(p: dict[str, Any]) -> str:
    """The float64 comparison behind a parity verdict, for the one-line report."""
    if p.get("runtime_error_vs_float64") is None:
        return f" (limit {p['limit']:.2g}; no float64 reference)"
    return (f" (vs float64 {p['runtime_error_vs_float64']:.2g}, torch float32's own "
            f"{p['fp32_error_vs_float64']:.2g}, limit {p['limit']:.2g}; photo "
            f"{p['photo_psnr']:.0f} dB)")


def _check_options(int8: bool, data: str | None, lr_dir: str | None, max_drop: float) -> None:
    """The bad inputs found before any work (nothing written yet)."""
    if max_drop < 0:
        raise SrpruneError(f"--max-drop must be >= 0 dB, got {max_drop:g}")
    if int8 and data is None:
        raise SrpruneError("--int8 needs --data: images whose LR patches calibrate INT8")
    if data is not None and not int8:
        raise SrpruneError("--data calibrates INT8; it needs --int8")
    if data is not None and data != "builtin" and not Path(data).is_dir():
        raise SrpruneError(f"data folder not found: {data}")
    if lr_dir is not None and not Path(lr_dir).is_dir():
        raise SrpruneError(f"LR folder not found: {lr_dir}")


def _qat_settings(int8: bool, data: str | None, steps: int, lr: float | None) -> Any:
    """The QAT run asked for (None for ``--qat-steps 0``); bad combinations, one line."""
    if steps < 0:
        raise SrpruneError(f"--qat-steps must be an integer >= 0, got {steps}")
    if lr is not None and steps == 0:
        raise SrpruneError("--qat-lr sets the QAT learning rate; it needs --qat-steps N > 0")
    if steps == 0:
        return None
    if not int8:
        raise SrpruneError("--qat-steps fine-tunes for INT8; it needs --int8 (and --data)")
    if data is None:
        raise SrpruneError("--qat-steps fine-tunes on --data images; give --data DIR")
    from srprune.deploy.qat import QatSettings

    return QatSettings(steps) if lr is None else QatSettings(steps, lr=lr)


def _int8(sr: Any, model: str, out: Path, input_size: tuple[int, int], force: bool,
          data: str | None, lr_dir: str | None, eval_data: str, max_drop: float,
          max_float: int, calib_patches: int, settings: Any, threads: int, runs: int,
          as_json: bool, qat: Any = None) -> Any:
    from srprune.data.images import open_image_set
    from srprune.deploy.calibration import calibration_inputs
    from srprune.deploy.int8 import QatJob, quantize_int8
    from srprune.measure.export import check_parity, export_onnx

    assert data is not None  # _check_options
    calibration = calibration_inputs(data, sr.scale, calib_patches, lr_dir)
    if eval_data != "builtin" and not Path(eval_data).is_dir():
        raise SrpruneError(f"eval folder not found: {eval_data}")
    pairs = list(open_image_set(None if eval_data == "builtin" else eval_data, sr.scale))
    job = None if qat is None else QatJob(sr, open_image_set(data, sr.scale, lr_dir), qat)
    with tempfile.TemporaryDirectory(prefix="srprune-export-") as tmp, \
            ProgressReporter(quiet=as_json) as progress:
        fp32 = Path(tmp) / "fp32.onnx"
        progress("export", 0, 1)
        export_onnx(sr, fp32, input_size, name=model)
        check_parity(sr, fp32, input_size, threads=threads, name=model)
        progress("export", 1, 1)
        return quantize_int8(fp32, out, calibration, pairs, sr.scale, max_drop, max_float,
                             settings, threads, input_size, runs=runs,
                             force=force, progress=progress, qat=job)


def _print_report(report: Any, model: str) -> None:
    fp, q = report.fp32_quality, report.int8_quality
    lat, size = report.latency, report.size
    h, w = lat["input_size"]
    table = Table(title=f"{model}: FP32 vs INT8 ({report.eval_images} eval images, Y channel; "
                        f"ORT {lat['threads']} thread(s), {h}x{w} LR)")
    for col in ("", "PSNR", "SSIM", "median ms", "size MB"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("FP32", f"{fp['psnr']:.3f}", f"{fp['ssim']:.4f}", f"{lat['fp32_ms']:.2f}",
                  f"{size['fp32_bytes'] / 1e6:.3f}")
    qat = report.qat if report.qat and report.qat["ran"] else None
    label = "INT8" if qat is None else ("INT8 (QAT)" if qat["kept"] else "INT8 (no QAT)")
    table.add_row(label, f"{q['psnr']:.3f}", f"{q['ssim']:.4f}", f"{lat['int8_ms']:.2f}",
                  f"{size['int8_bytes'] / 1e6:.3f}")
    if qat is not None:
        other = ("INT8 before QAT", qat["psnr_before"]) if qat["kept"] else (
            "INT8 after QAT (discarded)", qat["psnr_after"])
        table.add_row(other[0], f"{other[1]:.3f}", "", "", "")
    console.print(table)
    cpu = "n/a" if lat["cpu_ratio"] is None else f"{lat['cpu_ratio']:.3f}"
    lines = [
        f"wrote {report.path}",
        f"INT8/FP32: latency ratio {lat['ratio']:.3f} ({lat['speedup']:.2f}x faster; CPU-time "
        f"ratio {cpu}), size "
        f"ratio {size['ratio']:.3f}; PSNR vs FP32 output {report.psnr_vs_fp32:.2f} dB; max "
        f"|INT8 - FP32| {report.parity_max_abs_diff:.1f} on 0..255",
        f"plain PTQ drop {report.plain_ptq.drop:.3f} dB"
        f"{' (QAT-tuned weights)' if qat and qat['kept'] else ''}; final drop "
        f"{report.drop:.3f} dB",
        report.verdict(),
    ]
    lines += _qat_lines(report.qat)
    lines += [f"  FP32 layer: {name}" for name in report.float_layers]
    if report.float_layers:
        lines.append(f"  nodes excluded from quantization: {', '.join(report.float_nodes)}")
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _qat_lines(qat: dict | None) -> list[str]:
    """What quantization-aware fine-tuning did (nothing when it was not asked for)."""
    if qat is None:
        return []
    if not qat["ran"]:
        return [f"QAT ({qat['steps']} steps) not run: {qat['reason']}"]
    t = qat["train"]
    return [
        f"QAT: {qat['steps']} steps at lr {t['settings']['lr']:g} in {t['seconds']:.1f} s; "
        f"drop {qat['drop_before']:.3f} dB before, {qat['drop_after']:.3f} dB after "
        f"(plain PTQ {qat['plain_ptq_drop_before']:.3f} -> {qat['plain_ptq_drop_after']:.3f} "
        f"dB); {'kept' if qat['kept'] else 'discarded, the PTQ result is written'}",
        f"  torch fake-quant PSNR vs float {t['torch_psnr_before']:.2f} -> "
        f"{t['torch_psnr_after']:.2f} dB; {t['fake_weights']} weights and {t['fake_inputs']} "
        f"inputs fake-quantized; weights changed {100 * t['weight_change']:.3f} %",
    ] + ([f"  FP32 nodes not mapped to a module (fake-quantized anyway): "
          f"{', '.join(t['skipped']['unmapped'])}"] if t["skipped"]["unmapped"] else [])
