"""``srprune bench``'s pipeline: cost, ONNX export + parity, then interleaved ORT latency."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from srprune.errors import SrpruneError
from srprune.measure.cost import Cost
from srprune.measure.export import check_input_size, check_parity, export_onnx, onnx_opset
from srprune.measure.latency import LatencyStats, ort_latency, torch_latency
from srprune.measure.onnx_file import OnnxModel
from srprune.measure.roofline import (
    INTERLEAVED_N,
    Roofline,
    achieved_gflops,
    sgemm_model,
    sgemm_rate,
    sgemm_runner,
)
from srprune.models.srmodel import SRModel


@dataclass
class BenchRecord:
    """Everything ``srprune bench`` reports for one model."""

    model: str
    scale: int
    params: int
    macs: int | None  # None: an ONNX file whose graph shapes could not be inferred
    paper_macs: int | None  # None for ONNX files (no bias convention in the graph count)
    input_size: tuple[int, int]
    threads: int
    runs: int
    warmup: int
    opset: int
    exporter: str  # "onnx file" for a model given as an .onnx file (not exported here)
    parity_max_abs_diff: float | None  # None for an .onnx file (no torch model to compare)
    latency: LatencyStats
    speedup: float
    gflops: float | None
    cpu_time: LatencyStats | None = None
    torch_latency: LatencyStats | None = None
    torch_speedup: float | None = None
    roofline: dict | None = None
    onnx_file: str | None = None

    def as_dict(self) -> dict:
        data = {
            "model": self.model, "scale": self.scale, "params": self.params, "macs": self.macs,
            "paper_macs": self.paper_macs, "input_size": list(self.input_size),
            "threads": self.threads, "runs": self.runs, "warmup": self.warmup,
            "opset": self.opset, "exporter": self.exporter,
            "parity_max_abs_diff": self.parity_max_abs_diff,
            "latency_ms": self.latency.as_dict(), "speedup": self.speedup, "gflops": self.gflops,
            "cpu_per_wall": self.latency.cpu_per_wall,
            "cpu_time_ms": self.cpu_time.as_dict() if self.cpu_time is not None else None,
            "onnxruntime": ort.__version__,
        }
        if self.torch_latency is not None:
            data["torch_latency_ms"] = self.torch_latency.as_dict()
            data["torch_speedup"] = self.torch_speedup
        if self.roofline is not None:
            data["roofline"] = self.roofline
        if self.onnx_file is not None:
            data["onnx_file"] = self.onnx_file
        return data


def bench_steps(n_models: int, runs: int, warmup: int, with_torch: bool = False,
                roofline: bool = False) -> int:
    """How many times :func:`benchmark` calls ``on_step`` (for progress bars)."""
    timed = (n_models + roofline) + (n_models if with_torch else 0)
    return 2 * n_models + timed * (runs + warmup)


def onnx_file_names(labels: Sequence[str], scales: Sequence[int]) -> list[str]:
    """Distinct, filesystem-safe ONNX file names: ``<stem>-x<scale>.onnx``."""
    names: list[str] = []
    for i, (label, scale) in enumerate(zip(labels, scales, strict=True)):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(label).stem) or "model"
        name = f"{stem}-x{scale}.onnx"
        names.append(f"{stem}-x{scale}-{i}.onnx" if name in names else name)
    return names


def benchmark(models: Sequence[tuple[str, SRModel | OnnxModel]], input_size: tuple[int, int],
              threads: int = 1, runs: int = 20, warmup: int = 3,
              onnx_dir: str | Path | None = None, force: bool = False,
              with_torch: bool = False, roofline: bool = False,
              on_step: Callable[[str], None] | None = None) -> list[BenchRecord]:
    """Cost, export + parity, then interleaved latency of ``(label, model)`` pairs.

    ONNX files go to ``onnx_dir`` (kept; existing files are refused unless ``force``) or to a
    temporary folder that is removed afterwards. Speed-ups are relative to the first model.
    ``roofline`` times an n=1024 SGEMM graph in the same rounds and rates each model against it.
    An :class:`OnnxModel` (a ``.onnx`` file given as is) is timed as it is: no export, no
    parity, params and MACs counted on its graph.
    """
    if not models:
        raise SrpruneError("no models to benchmark")
    step = on_step or (lambda _desc: None)
    labels = [label for label, _ in models]
    costs = [_onnx_cost(m, input_size, label) if isinstance(m, OnnxModel)
             else check_input_size(m, input_size, label) for label, m in models]
    with contextlib.ExitStack() as stack:
        if onnx_dir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="srprune-")))
        else:
            folder = Path(onnx_dir)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SrpruneError(f"cannot create ONNX folder {folder}: {exc}") from None
        paths = [m.path if isinstance(m, OnnxModel) else folder / name for (_, m), name
                 in zip(models, onnx_file_names(labels, [m.scale for _, m in models]),
                        strict=True)]
        taken = [p for p, (_, m) in zip(paths, models, strict=True)
                 if p.exists() and not isinstance(m, OnnxModel)] if not force else []
        if taken:
            raise SrpruneError(f"{taken[0]} already exists; pass --force to overwrite it")
        exports, parities = [], []
        for (label, model), path in zip(models, paths, strict=True):
            if isinstance(model, OnnxModel):
                exports.append(None)
                parities.append(None)
                step(f"export {label} (given)")
                step(f"parity {label} (n/a)")
                continue
            exports.append(export_onnx(model, path, input_size, force=force, name=label))
            step(f"export {label}")
            parities.append(check_parity(model, path, input_size, threads=threads, name=label))
            step(f"parity {label}")
        extra = []
        if roofline:
            n = INTERLEAVED_N
            sgemm_path = sgemm_model(Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="srprune-sgemm-"))) / "sgemm.onnx", n)
            extra = [("sgemm", sgemm_runner(sgemm_path, n, threads))]
        timed = ort_latency(paths, input_size, labels, threads, runs, warmup,
                            on_step=lambda: step("onnxruntime"), extra=extra)
    eager = None
    if with_torch:
        eager = torch_latency([m.final_output_module() for _, m in models], input_size, labels,
                              threads, runs, warmup, on_step=lambda: step("torch"))
    records = []
    for i, (label, model) in enumerate(models):
        cost, res, export, parity = costs[i], timed[i], exports[i], parities[i]
        given = isinstance(model, OnnxModel)
        rec = BenchRecord(
            label, model.scale, cost.params, cost.macs, cost.paper_macs, tuple(input_size),
            threads, runs, warmup, onnx_opset(paths[i]) if given else export.opset,
            "onnx file" if given else export.exporter,
            None if parity is None else parity.max_abs_diff, res.stats, res.speedup,
            None if cost.macs is None else achieved_gflops(cost.macs, res.stats.median),
            res.cpu_stats,
            onnx_file=str(paths[i]) if onnx_dir is not None or given else None,
        )
        if eager is not None:
            rec.torch_latency, rec.torch_speedup = eager[i].stats, eager[i].speedup
        if roofline:
            peak = sgemm_rate(INTERLEAVED_N, timed[-1].stats.median)
            efficiency = None if rec.gflops is None else rec.gflops / peak
            rec.roofline = {"peak_gflops": peak, "efficiency": efficiency,
                            "peak_source": f"interleaved onnxruntime MatMul n={INTERLEAVED_N}"}
        records.append(rec)
    return records


def add_roofline(records: Sequence[BenchRecord], roofline: Roofline) -> None:
    """Add standalone SGEMM peaks to each record's ``roofline``.

    Records timed with ``benchmark(roofline=True)`` keep their interleaved peak and efficiency;
    the others are rated against the standalone peak at their thread count.
    """
    for rec in records:
        data = dict(rec.roofline or {})
        if "peak_gflops" not in data:
            peak = roofline.peak(rec.threads)
            efficiency = None if rec.gflops is None else rec.gflops / peak
            data.update(peak_gflops=peak, efficiency=efficiency,
                        peak_source="standalone onnxruntime MatMul")
        rec.roofline = {**data, **roofline.as_dict()}


def _onnx_cost(model: OnnxModel, input_size: tuple[int, int], label: str) -> Cost:
    """Params and MACs of an ONNX file's graph (``paper_macs`` has no graph count)."""
    if model.fixed_size is not None and tuple(input_size) != model.fixed_size:
        h, w = model.fixed_size
        raise SrpruneError(f"{label} only takes {h}x{w} inputs (its graph has a fixed size); "
                           f"pass --input-size {h} {w}")
    return Cost(model.params, model.macs(input_size), None, tuple(input_size))  # type: ignore[arg-type]
