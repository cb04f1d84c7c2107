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

4. Quantization-aware fine-tuning (``--qat-steps N``, :mod:`srprune.deploy.qat`), only when
   steps 1-3 miss ``max_drop``: the torch model is fine-tuned N steps through fake
   quantization mimicking this PTQ (the layers step 3 kept in FP32 left in float), exported
   to FP32 again, and steps 1-3 run on that file with the same calibration patches and cap.
   Both drops are against the ORIGINAL FP32 model's PSNR; the smaller one is written. The
   report's top-level PTQ, sensitivity and trials describe the search behind the written
   file; its ``qat`` section gives the drops before and after QAT and whether it was kept.
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
    qat: dict | None = None  # steps, ran, drop_before/after, kept, train (None: not asked)

    def as_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["plain_ptq"] = self.plain_ptq.as_dict()
        data["trials"] = [t.as_dict() for t in self.trials]
        return data

    def verdict(self) -> str:
        """One line: the drop against its target, and how many nodes stayed in FP32."""
        kept = (f"{len(self.float_layers)} layer(s) kept in FP32 ({len(self.float_nodes)} "
                "nodes)")
        ran = self.qat is not None and self.qat["ran"]
        if self.target_met:
            tail = f"; {self._qat_phrase()}" if ran else ""
            return f"drop {self.drop:.3f} dB <= {self.max_drop:g} dB target ({kept}){tail}"
        if not ran:
            return (f"target not reached: PTQ + mixed precision drop {self.drop:.3f} dB > "
                    f"{self.max_drop:g} dB (plain PTQ {self.plain_ptq.drop:.3f} dB, {kept}, "
                    f"cap {self.max_float}); quantization-aware fine-tuning would be the next "
                    "step (--qat-steps)")
        return (f"target not reached: drop {self.drop:.3f} dB > {self.max_drop:g} dB ({kept}, "
                f"cap {self.max_float}); {self._qat_phrase()}")

    def _qat_phrase(self) -> str:
        q = self.qat or {}
        return (f"QAT {q['steps']} steps: drop {q['drop_before']:.3f} dB before, "
                f"{q['drop_after']:.3f} dB after, "
                + ("QAT weights kept" if q["kept"] else "QAT result discarded"))


@dataclass
class QatJob:
    """What ``quantize_int8`` needs for quantization-aware fine-tuning when PTQ falls short:
    the torch model the FP32 file was exported from, the training images, the run."""

    model: Any  # SRModel
    images: Any  # ImageSet
    settings: Any  # deploy.qat.QatSettings


@dataclass
class Search:
    """PTQ, sensitivity and greedy mixed precision of one FP32 file (steps 1 to 3)."""

    quantizer: Int8Quantizer
    plain: Trial
    trials: list[Trial]
    best: Trial
    best_path: Path
    sensitivity: list[dict]


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Sequence[np.ndarray],
                  eval_pairs: Sequence[ImagePair], scale: int, max_drop: float = 0.1,
                  max_float: int = 8, settings: Int8Settings | None = None, threads: int = 1,
                  input_size: tuple[int, int] = (96, 96), runs: int = 20, warmup: int = 3,
                  force: bool = False, progress: Progress | None = None,
                  qat: QatJob | None = None) -> Int8Report:
    """PTQ, sensitivity and greedy mixed precision of ``fp32_path``; the result to ``out_path``.

    ``eval_pairs`` (LR + HR) judge quality; the latency of FP32 and INT8 is measured in one
    interleaved ONNX Runtime run at ``input_size`` with ``threads`` threads. With ``qat``
    and the drop still above ``max_drop``: quantization-aware fine-tuning of ``qat.model``,
    its FP32 export searched the same way, and the smaller drop (both against the FP32
    model of ``fp32_path``) written.
    """
    if max_drop < 0 or not math.isfinite(max_drop):
        raise SrpruneError(f"--max-drop must be a finite number >= 0, got {max_drop}")
    if max_float < 0:
        raise SrpruneError(f"the cap of FP32 layers must be >= 0, got {max_float}")
    if not eval_pairs:
        raise SrpruneError("INT8 needs evaluation images to judge the quantized model")
    settings = settings or Int8Settings()
    report = progress or (lambda _stage, _done, _total: None)
    with tempfile.TemporaryDirectory(prefix="srprune-int8-") as tmp:
        work = Path(tmp)
        judge = Judge.of(fp32_path, eval_pairs, scale, threads)
        fp32_psnr = judge.psnr_hr(judge.reference)
        search = _search(fp32_path, calibration, settings, judge, fp32_psnr, max_drop,
                         max_float, work / "ptq", report)
        qat_info = None
        if qat is not None:
            search, qat_info = _qat_arm(qat, search, calibration, settings, judge, fp32_psnr,
                                        max_drop, max_float, input_size, work, report)
        best_path = search.best_path
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
        best = search.best
        return Int8Report(
            str(out_path), search.quantizer.settings.as_dict(), len(calibration),
            int(calibration[0].shape[-1]), len(eval_pairs), max_drop, max_float, fp32_quality,
            int8_quality, fp32_quality["psnr"] - int8_quality["psnr"],
            judge.psnr_fp32(int8_outs), parity, search.plain, list(best.float_layers),
            list(best.float_nodes),
            fp32_quality["psnr"] - int8_quality["psnr"] <= max_drop, search.sensitivity,
            search.trials, qdq_summary(out_path).as_dict(),
            {"fp32_ms": timed[0].stats.median, "int8_ms": timed[1].stats.median,
             "ratio": timed[1].stats.median / timed[0].stats.median,
             "speedup": timed[1].speedup, "threads": threads, "input_size": list(input_size),
             "runs": runs, "cpu_per_wall": min(t.stats.cpu_per_wall or 0.0 for t in timed),
             "cpu_ratio": _cpu_ratio(timed)},
            {"fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes,
             "ratio": int8_bytes / fp32_bytes},
            qat_info,
        )


def _search(fp32_path: Path, calibration: Sequence[np.ndarray], settings: Int8Settings,
            judge: Judge, fp32_psnr: float, max_drop: float, max_float: int, work: Path,
            report: Progress) -> Search:
    """Plain PTQ, then (drop above ``max_drop``) sensitivity and greedy mixed precision;
    every drop against ``fp32_psnr``, the FP32 model's PSNR on the judge's images."""
    work.mkdir(parents=True, exist_ok=True)
    report("calibration", 0, 1)
    quantizer = Int8Quantizer(fp32_path, calibration, work, settings)
    plain_path = quantizer.quantize(work / "int8.onnx")
    report("calibration", 1, 1)

    def trial(path: Path, nodes: list[str], layers: list[str]) -> Trial:
        outs = judge.outputs(path)
        psnr = judge.psnr_hr(outs)
        return Trial(nodes, psnr, judge.psnr_fp32(outs), fp32_psnr - psnr, layers)

    plain = trial(plain_path, [], [])
    search = Search(quantizer, plain, [plain], plain, plain_path, [])
    if plain.drop > max_drop and max_float > 0:
        search.sensitivity = _sensitivity(quantizer, judge, plain_path, work, report)
        helpful = [row for row in search.sensitivity if row["gain_db"] > 0][:max_float]
        report("mixed precision", 0, len(helpful))
        nodes: list[str] = []
        for k, row in enumerate(helpful, 1):
            nodes += [n for n in row["group"] if n not in nodes]
            path = quantizer.quantize(work / f"mixed-{k}.onnx", nodes)
            search.trials.append(trial(path, list(nodes), [r["layer"] for r in helpful[:k]]))
            report("mixed precision", k, len(helpful))
            if search.trials[-1].drop < search.best.drop:
                search.best, search.best_path = search.trials[-1], path
            if search.trials[-1].drop <= max_drop:
                break
    return search


def _qat_arm(job: QatJob, first: Search, calibration: Sequence[np.ndarray],
             settings: Int8Settings, judge: Judge, fp32_psnr: float, max_drop: float,
             max_float: int, input_size: tuple[int, int], work: Path,
             report: Progress) -> tuple[Search, dict]:
    """QAT when ``first`` misses ``max_drop``: fine-tune, export, search again; the search
    with the smaller drop and the ``qat`` section of the report."""
    from srprune.deploy.qat import FakeQuantSpec, finetune_qat, float_layers
    from srprune.measure.export import check_parity, export_onnx

    info: dict[str, Any] = {"steps": job.settings.steps, "ran": False,
                            "drop_before": first.best.drop, "drop_after": None,
                            "psnr_before": first.best.psnr, "psnr_after": None,
                            "kept": False}
    if first.best.drop <= max_drop:
        info["reason"] = "PTQ + mixed precision met the target"
        return first, info
    skip = float_layers(first.quantizer.pre_path, job.model.net, first.best.float_nodes)
    tuned = finetune_qat(job.model, job.images, calibration, job.settings,
                         FakeQuantSpec(settings.activations, settings.reduce_range), skip,
                         report)
    report("qat export", 0, 1)
    tuned_fp32 = work / "qat-fp32.onnx"
    export_onnx(tuned.model, tuned_fp32, input_size, force=True)
    check_parity(tuned.model, tuned_fp32, input_size, threads=judge.threads)
    report("qat export", 1, 1)
    second = _search(tuned_fp32, calibration, settings, judge, fp32_psnr, max_drop,
                     max_float, work / "qat",
                     lambda stage, done, total: report(f"{stage} (QAT)", done, total))
    kept = second.best.drop < first.best.drop
    info.update({"ran": True, "drop_after": second.best.drop, "psnr_after": second.best.psnr,
                 "kept": kept, "plain_ptq_drop_before": first.plain.drop,
                 "plain_ptq_drop_after": second.plain.drop,
                 "float_layers_before": list(first.best.float_layers),
                 "float_layers_after": list(second.best.float_layers),
                 "train": tuned.as_dict()})
    return (second if kept else first), info


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
