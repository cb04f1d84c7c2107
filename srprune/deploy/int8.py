"""INT8 post-training quantization with per-layer sensitivity and mixed precision.

Protocol (``srprune export --int8``):

1. Quantize everything (QDQ, per-channel int8 weights, MinMax calibration on the user's LR
   patches). Judge it on the ``--eval`` images: drop = mean Y-PSNR against HR of the FP32
   model minus that of the INT8 model. At or below ``max_drop``: done, nothing in FP32.
2. Sensitivity, "one layer kept in FP32": in QDQ a tensor is quantized when any node next
   to it is, so a conv excluded alone still reads a quantized input. A layer is therefore
   kept in FP32 with its input tensor: the conv/linear node, the node producing its input
   and the other consumers of that input (``Int8Quantizer.float_group``). For every layer,
   quantize everything but its group and measure the Y-PSNR of the output against the FP32
   model's output on centre crops of the eval images (at most ``SENSITIVITY_CROP`` LR
   pixels a side); the gain over the all-INT8 model is how much keeping that layer in FP32
   helps, in the context of the rest of the net quantized (exactly the change step 3
   makes). One quantization with the cached calibration and one run on the crops per layer.
3. Mixed precision, greedy: keep the layers with the largest positive gains in FP32 (the
   union of their groups), one more at a time (re-quantized, judged on the full eval images),
   until the drop is at most ``max_drop`` or ``max_float`` layers are in FP32. When the target
   is not reached the configuration with the smallest drop is kept and the report says so.

Quantization-aware fine-tuning is not done here.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srprune.data.images import ImagePair
from srprune.errors import SrpruneError
from srprune.io.checkpoint import write_atomic
from srprune.measure.latency import ort_latency
from srprune.measure.onnx_file import open_onnx
from srprune.measure.quantize import Int8Quantizer, Int8Settings, qdq_summary
from srprune.quality.metrics import evaluate, psnr_y

SENSITIVITY_CROP = 64  # LR side of the eval-image centre crops used for sensitivity
Progress = Callable[[str, int, int], None]


@dataclass
class Judge:
    """Scores ONNX models against the FP32 model's outputs and HR on one eval set."""

    pairs: list[ImagePair]
    scale: int
    threads: int
    reference: list[np.ndarray] = field(default_factory=list)  # FP32 SR, full images
    crops: list[np.ndarray] = field(default_factory=list)  # LR centre crops
    crop_reference: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def of(cls, fp32_path: Path, pairs: Sequence[ImagePair], scale: int,
           threads: int) -> Judge:
        judge = cls(list(pairs), scale, threads)
        run = open_onnx(fp32_path, threads).upscaler(threads)
        judge.reference = [run(p.lr[0]) for p in judge.pairs]
        judge.crops = [_centre_crop(p.lr[0], SENSITIVITY_CROP) for p in judge.pairs]
        judge.crop_reference = [run(c) for c in judge.crops]
        return judge

    def outputs(self, path: Path) -> list[np.ndarray]:
        run = open_onnx(path, self.threads).upscaler(self.threads)
        return [run(p.lr[0]) for p in self.pairs]

    def psnr_hr(self, outputs: Sequence[np.ndarray]) -> float:
        """Mean Y-PSNR against HR (``scale``-px border crop)."""
        return _mean([psnr_y(o, p.hr, self.scale) for o, p in zip(outputs, self.pairs,
                                                                    strict=True)])

    def psnr_fp32(self, outputs: Sequence[np.ndarray],
                  reference: Sequence[np.ndarray] | None = None) -> float:
        """Mean Y-PSNR against the FP32 model's output (rounded to uint8 levels like SR)."""
        ref = self.reference if reference is None else reference
        return _mean([psnr_y(o, np.round(r), self.scale)
                      for o, r in zip(outputs, ref, strict=True)])

    def crop_psnr_fp32(self, path: Path) -> float:
        run = open_onnx(path, self.threads).upscaler(self.threads)
        return self.psnr_fp32([run(c) for c in self.crops], self.crop_reference)


def _centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = min(h, side), min(w, side)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[top:top + ch, left:left + cw])


def _mean(values: Sequence[float]) -> float:
    """Mean of PSNRs; identical images (inf) are capped at 100 dB so a mean stays finite."""
    return float(np.mean([min(v, 100.0) for v in values]))


@dataclass
class Trial:
    """One quantized configuration judged on the full eval images."""

    float_nodes: list[str]  # the nodes excluded from quantization (groups of float_layers)
    psnr: float  # against HR
    psnr_vs_fp32: float
    drop: float

    float_layers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"float_layers": list(self.float_layers),
                "float_nodes": list(self.float_nodes), "psnr": self.psnr,
                "psnr_vs_fp32": self.psnr_vs_fp32, "drop_db": self.drop}


@dataclass
class Int8Report:
    """Everything ``srprune export --int8`` reports."""

    path: str
    settings: dict
    calibration_patches: int
    calibration_patch_side: int
    eval_images: int
    max_drop: float
    max_float: int
    fp32_quality: dict  # psnr, ssim, bicubic_psnr, bicubic_ssim (against HR)
    int8_quality: dict
    drop: float
    psnr_vs_fp32: float
    parity_max_abs_diff: float  # INT8 vs FP32 outputs on the eval images, 0..255
    plain_ptq: Trial
    float_layers: list[str]  # the conv/linear layers kept in FP32, most harmful first
    float_nodes: list[str]  # every node excluded from quantization (their groups)
    target_met: bool
    sensitivity: list[dict]  # layer, group, gain_db (crop PSNR vs FP32 when kept in FP32)
    trials: list[Trial]
    qdq: dict
    latency: dict  # fp32_ms, int8_ms, ratio (INT8 / FP32), cpu_ratio, speedup, threads, ...
    size: dict  # fp32_bytes, int8_bytes, ratio

    def as_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["plain_ptq"] = self.plain_ptq.as_dict()
        data["trials"] = [t.as_dict() for t in self.trials]
        return data

    def verdict(self) -> str:
        """One line: the drop against its target, and how many nodes stayed in FP32."""
        kept = (f"{len(self.float_layers)} layer(s) kept in FP32 ({len(self.float_nodes)} "
                "nodes)")
        if self.target_met:
            return f"drop {self.drop:.3f} dB <= {self.max_drop:g} dB target ({kept})"
        return (f"target not reached: PTQ + mixed precision drop {self.drop:.3f} dB > "
                f"{self.max_drop:g} dB (plain PTQ {self.plain_ptq.drop:.3f} dB, {kept}, cap "
                f"{self.max_float}); quantization-aware fine-tuning would be the next step")


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Sequence[np.ndarray],
                  eval_pairs: Sequence[ImagePair], scale: int, max_drop: float = 0.1,
                  max_float: int = 8, settings: Int8Settings | None = None, threads: int = 1,
                  input_size: tuple[int, int] = (96, 96), runs: int = 20, warmup: int = 3,
                  force: bool = False,
                  progress: Progress | None = None) -> Int8Report:
    """PTQ, sensitivity and greedy mixed precision of ``fp32_path``; the result to ``out_path``.

    ``eval_pairs`` (LR + HR) judge quality; the latency of FP32 and INT8 is measured in one
    interleaved ONNX Runtime run at ``input_size`` with ``threads`` threads.
    """
    if max_drop < 0 or not math.isfinite(max_drop):
        raise SrpruneError(f"--max-drop must be a finite number >= 0, got {max_drop}")
    if max_float < 0:
        raise SrpruneError(f"the cap of FP32 layers must be >= 0, got {max_float}")
    if not eval_pairs:
        raise SrpruneError("INT8 needs evaluation images to judge the quantized model")
    report = progress or (lambda _stage, _done, _total: None)
    with tempfile.TemporaryDirectory(prefix="srprune-int8-") as tmp:
        work = Path(tmp)
        report("calibration", 0, 1)
        quantizer = Int8Quantizer(fp32_path, calibration, work, settings)
        plain_path = quantizer.quantize(work / "int8.onnx")
        report("calibration", 1, 1)
        judge = Judge.of(fp32_path, eval_pairs, scale, threads)
        fp32_psnr = judge.psnr_hr(judge.reference)

        def trial(path: Path, nodes: list[str], layers: list[str]) -> Trial:
            outs = judge.outputs(path)
            psnr = judge.psnr_hr(outs)
            return Trial(nodes, psnr, judge.psnr_fp32(outs), fp32_psnr - psnr, layers)

        plain = trial(plain_path, [], [])
        trials, best, best_path = [plain], plain, plain_path
        sensitivity: list[dict] = []
        if plain.drop > max_drop and max_float > 0:
            sensitivity = _sensitivity(quantizer, judge, plain_path, work, report)
            helpful = [row for row in sensitivity if row["gain_db"] > 0][:max_float]
            report("mixed precision", 0, len(helpful))
            nodes: list[str] = []
            for k, row in enumerate(helpful, 1):
                nodes += [n for n in row["group"] if n not in nodes]
                path = quantizer.quantize(work / f"mixed-{k}.onnx", nodes)
                trials.append(trial(path, list(nodes), [r["layer"] for r in helpful[:k]]))
                report("mixed precision", k, len(helpful))
                if trials[-1].drop < best.drop:
                    best, best_path = trials[-1], path
                if trials[-1].drop <= max_drop:
                    break
        write_atomic(out_path, lambda t: t.write_bytes(best_path.read_bytes()), force)
        report("quality", 0, 1)
        int8_outs = judge.outputs(out_path)
        fp32_quality = _quality(judge.reference, judge)
        int8_quality = _quality(int8_outs, judge)
        report("quality", 1, 1)
        parity = max(float(np.abs(o.astype(np.float64) - r).max())
                     for o, r in zip(int8_outs, judge.reference, strict=True))
        report("latency", 0, 1)
        timed = ort_latency([fp32_path, out_path], input_size, ["fp32", "int8"], threads,
                            runs, warmup)
        report("latency", 1, 1)
        fp32_bytes, int8_bytes = fp32_path.stat().st_size, out_path.stat().st_size
        return Int8Report(
            str(out_path), quantizer.settings.as_dict(), len(calibration),
            int(calibration[0].shape[-1]), len(eval_pairs), max_drop, max_float, fp32_quality,
            int8_quality, fp32_quality["psnr"] - int8_quality["psnr"],
            judge.psnr_fp32(int8_outs), parity, plain, list(best.float_layers),
            list(best.float_nodes),
            fp32_quality["psnr"] - int8_quality["psnr"] <= max_drop, sensitivity, trials,
            qdq_summary(out_path).as_dict(),
            {"fp32_ms": timed[0].stats.median, "int8_ms": timed[1].stats.median,
             "ratio": timed[1].stats.median / timed[0].stats.median,
             "speedup": timed[1].speedup, "threads": threads, "input_size": list(input_size),
             "runs": runs, "cpu_per_wall": min(t.stats.cpu_per_wall or 0.0 for t in timed),
             "cpu_ratio": _cpu_ratio(timed)},
            {"fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes,
             "ratio": int8_bytes / fp32_bytes},
        )


def _cpu_ratio(timed: Sequence[Any]) -> float | None:
    """INT8/FP32 ratio of the process-CPU-time medians: far less sensitive than wall time
    to other processes on a shared machine (see :mod:`srprune.measure.latency`)."""
    fp32, int8 = (t.cpu_stats.median if t.cpu_stats else None for t in timed)
    return int8 / fp32 if fp32 and int8 is not None else None


def _sensitivity(quantizer: Int8Quantizer, judge: Judge, plain_path: Path, work: Path,
                 report: Progress) -> list[dict]:
    """Gain in crop Y-PSNR vs FP32 when each layer alone (with its input tensor) stays in
    FP32, largest first."""
    base = judge.crop_psnr_fp32(plain_path)
    layers = quantizer.weight_nodes()
    rows = []
    report("sensitivity", 0, len(layers))
    for i, layer in enumerate(layers, 1):
        group = quantizer.float_group(layer)
        path = quantizer.quantize(work / "sensitivity.onnx", group)
        rows.append({"layer": layer, "group": group,
                     "gain_db": judge.crop_psnr_fp32(path) - base})
        report("sensitivity", i, len(layers))
    return sorted(rows, key=lambda row: row["gain_db"], reverse=True)


def _quality(outputs: Sequence[np.ndarray], judge: Judge) -> dict[str, Any]:
    """Mean PSNR/SSIM against HR and the bicubic baseline (``quality.metrics.evaluate``) of
    SR outputs already computed for ``judge.pairs``, in order."""
    given = iter(outputs)
    result = evaluate(lambda _lr: next(given), judge.pairs, judge.scale)
    return {k: result[k] for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}
