"""Does ``srprune upscale`` cost what ``srprune bench`` says its tiles cost? (issue 27)

An image of --size (default 1920x1080) is upscaled on ONNX Runtime at --threads (default 1)
in tiles (--tile, --tile-pad) by the code the command runs (``srprune.upscale``: srprune's
export, parity checked, in bench's session). The prediction is what ``bench`` measures:
its timing protocol (``measure.latency.ort_latency``, median of --runs after a warm-up) on
the same ONNX file at every distinct tile window size, times the number of tiles of that
size. Prediction and upscale alternate for --repeats rounds (medians reported). Wall and
process CPU time are both compared: on a machine where the process waits for a CPU (CPU/wall
below 0.9 per thread), wall times measure the other processes, and the verdict is taken on
CPU time (the JSON says which).

Also timed: the whole command in-process (``srprune upscale IMG --runtime ort ...``: model
load, export and parity check, decoding, tiles, PNG encoding, atomic write), and its
throughput line.

    python benchmarks/upscale_speed.py --json benchmarks/results/upscale-speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

TOLERANCE = 0.10


def test_image(size: tuple[int, int]) -> np.ndarray:
    """A photo of the requested (W, H): scikit-image's astronaut and coffee, side by side,
    resized (no download)."""
    import skimage.data

    w, h = size
    left = Image.fromarray(skimage.data.astronaut()).resize((w // 2, h), Image.Resampling.LANCZOS)
    right = Image.fromarray(skimage.data.coffee()).resize((w - w // 2, h),
                                                          Image.Resampling.LANCZOS)
    return np.hstack([np.asarray(left), np.asarray(right)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None,
                        help="a model (repeatable; default: espcn, then drn-t)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--size", default="1920x1080", help="W x H of the input image")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--tile-pad", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="bench runs per tile size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    records = []
    for name in args.model or ["espcn", "drn-t"]:
        record = measure(name, args)
        if record is None:
            return 1
        records.append(record)
        if args.json is not None:  # after every model: a long run keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps({"format": "srprune-upscale-speed", "issue": 27,
                                       "runs": records}, indent=2) + "\n")
            tmp.replace(args.json)
    return 0 if all(r["within_tolerance"] for r in records) else 2


def measure(name: str, args: argparse.Namespace) -> dict | None:
    """One model's prediction and upscale rounds, and the whole command; its record."""
    args.model = name

    from click.testing import CliRunner

    from srprune.cli import main as cli
    from srprune.measure.latency import ort_latency
    from srprune.models import resolve_model
    from srprune.upscale.image_io import read_picture
    from srprune.upscale.runner import open_upscaler, upscale_picture

    w, h = (int(v) for v in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="upscale-speed-"))
    image = work / "photo.png"
    Image.fromarray(test_image((w, h))).save(image)
    model = resolve_model(args.model, args.scale)
    up = open_upscaler(model, args.model, "ort", args.threads)
    picture = read_picture(image)
    from srprune.upscale.runner import tiles_for

    tiles = tiles_for(up, picture, args.tile, args.tile_pad)
    sizes = Counter(t.input_size for t in tiles)
    print(f"{len(tiles)} tiles, window sizes {dict(sizes)}", flush=True)

    predicted, actual, cpu_ratio, per_size_ms, model_calls = [], [], [], [], []
    predicted_cpu, actual_cpu, per_size_cpu_ms = [], [], []
    for round_ in range(args.repeats):
        ms, cpu_ms = {}, {}
        for size in sizes:  # bench's timing protocol, on the file the upscale runs
            rec = ort_latency([up.onnx_path], size, threads=args.threads, runs=args.runs,
                              warmup=1)[0]
            ms[size], cpu_ms[size] = rec.stats.median, rec.cpu_stats.median
        per_size_ms.append(ms)
        per_size_cpu_ms.append(cpu_ms)
        predicted.append(sum(ms[s] * n for s, n in sizes.items()) / 1e3)
        predicted_cpu.append(sum(cpu_ms[s] * n for s, n in sizes.items()) / 1e3)
        in_runs = [0.0]
        run = up.run

        def timed(lr: np.ndarray, run=run, in_runs=in_runs) -> np.ndarray:
            start = time.perf_counter()
            out = run(lr)
            in_runs[0] += time.perf_counter() - start
            return out

        up.run = timed
        cpu0, t0 = time.process_time(), time.perf_counter()
        upscale_picture(up, picture, args.tile, args.tile_pad)
        actual.append(time.perf_counter() - t0)
        actual_cpu.append(time.process_time() - cpu0)
        up.run = run
        model_calls.append(in_runs[0])
        cpu_ratio.append(actual_cpu[-1] / actual[-1])
        print(f"round {round_ + 1}: predicted {predicted[-1]:.2f} s, upscale {actual[-1]:.2f} s "
              f"({actual[-1] / predicted[-1] - 1:+.1%}; in the model calls "
              f"{model_calls[-1]:.2f} s), CPU/wall {cpu_ratio[-1]:.2f}; CPU time: predicted "
              f"{predicted_cpu[-1]:.2f} s, upscale {actual_cpu[-1]:.2f} s "
              f"({actual_cpu[-1] / predicted_cpu[-1] - 1:+.1%})", flush=True)
    up.close()

    out = work / "out"
    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, ["upscale", args.model, str(image), "--out", str(out),
                                      "--runtime", "ort", "--tile", str(args.tile),
                                      "--tile-pad", str(args.tile_pad), "--threads",
                                      str(args.threads), "--scale", str(args.scale)])
    command_s = time.perf_counter() - t0
    if result.exit_code != 0:
        print(result.output, file=sys.stderr)
        return None
    line = result.stdout.strip().splitlines()[-1]

    pred, act = statistics.median(predicted), statistics.median(actual)
    ratio = act / pred
    cpu_ratio_pred = statistics.median(actual_cpu) / statistics.median(predicted_cpu)
    busy = min(cpu_ratio) < 0.9 * args.threads
    judged = cpu_ratio_pred if busy else ratio
    verdict = abs(judged - 1) <= TOLERANCE
    record = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "load_average": list(_loadavg())},
        "model": args.model, "scale": args.scale, "runtime": "onnxruntime",
        "threads": args.threads, "image": [w, h], "tile": args.tile,
        "tile_pad": args.tile_pad, "tiles": len(tiles),
        "tile_windows": [{"size": list(s), "count": n,
                          "bench_ms": [round(m[s], 2) for m in per_size_ms],
                          "bench_cpu_ms": [round(m[s], 2) for m in per_size_cpu_ms]}
                         for s, n in sizes.items()],
        "predicted_s": predicted, "upscale_s": actual, "cpu_per_wall": cpu_ratio,
        "model_calls_s": model_calls,
        "predicted_cpu_s": predicted_cpu, "upscale_cpu_s": actual_cpu,
        "upscale_over_predicted_cpu": statistics.median(actual_cpu) / statistics.median(
            predicted_cpu),
        "outside_model_calls_share": statistics.median(
            (a - m) / a for a, m in zip(actual, model_calls, strict=True)),
        "predicted_median_s": pred, "upscale_median_s": act,
        "upscale_over_predicted": ratio, "tolerance": TOLERANCE,
        "judged_on": "cpu time (machine busy)" if busy else "wall time",
        "within_tolerance": verdict,
        "output_megapixels": w * h * args.scale ** 2 / 1e6,
        "tiles_megapixels_per_s": w * h * args.scale ** 2 / 1e6 / act,
        "command_s": command_s, "command_line": line,
        "command_overhead_s": command_s - act,
    }
    print(f"median: predicted {pred:.2f} s, upscale {act:.2f} s: {ratio - 1:+.1%} wall, "
          f"{cpu_ratio_pred - 1:+.1%} CPU time ({'within' if verdict else 'OUTSIDE'} "
          f"{TOLERANCE:.0%} on {'CPU' if busy else 'wall'} time); whole command "
          f"{command_s:.1f} s; {line}")
    return record


def _loadavg() -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ()


if __name__ == "__main__":
    sys.exit(main())
