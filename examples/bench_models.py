"""Compare an SR model with compressed versions of itself: size, MACs and real CPU latency.

    python examples/bench_models.py                       # drn-t x4 at 30/50/70 %, l1
    python examples/bench_models.py --criterion thinet --ratios 0.5 --data /path/to/images
    python examples/bench_models.py --tiny                # seconds: one ratio, small input

Latency is ONNX Runtime on the CPU with srprune's protocol (one thread by default, warm-up,
interleaved rounds, median; see ``srprune bench``); every exported model is checked against
PyTorch first.
"""

from __future__ import annotations

import argparse

import srprune
from srprune.measure.bench import benchmark
from srprune.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drn-t")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--criterion", default="l1")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--data", default=None, help="calibration images (data criteria)")
    parser.add_argument("--input-size", type=int, nargs=2, default=[96, 96], metavar=("H", "W"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="one ratio, 24x24 input, 3 runs")
    args = parser.parse_args()
    if args.tiny:
        args.ratios, args.input_size, args.runs = [0.5], [24, 24], 3
    size = tuple(args.input_size)

    models = [(args.model, build_model(args.model, args.scale))]
    for ratio in args.ratios:
        result = srprune.compress(args.model, ratio=ratio, scale=args.scale,
                                  criterion=args.criterion, data=args.data, input_size=size)
        models.append((f"{args.model}-{args.criterion}-{round(ratio * 100)}", result.model))
    records = benchmark(models, size, threads=args.threads, runs=args.runs,
                        warmup=1 if args.tiny else 3)
    print(f"{'model':<24}{'params':>10}{'MMACs':>10}{'median ms':>11}{'speed-up':>10}")
    for r in records:
        print(f"{r.model:<24}{r.params:>10}{r.macs / 1e6:>10.1f}{r.latency.median:>11.2f}"
              f"{r.speedup:>9.2f}x")


if __name__ == "__main__":
    main()
