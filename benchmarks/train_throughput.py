"""Where a training step's time goes: throughput, achieved GFLOP/s, data share, top ops.

For each model and thread count, a real :class:`srprune.training.trainer.Trainer` (DR loss,
Adam per net) runs ``--warmup`` untimed steps, then ``--steps`` timed ones on LR patches from
``--data`` (decoded once and cached by the sampler). Reported per configuration:

* ``patches/s``: batch x timed steps / wall time of those steps;
* ``GFLOP/s``: achieved arithmetic rate of forward + backward. Convention: the MACs of one
  forward pass of the primal net *and* its dual nets at the patch size (srprune's counter,
  ``srprune.measure.cost``: Conv2d and Linear MACs only), x 2 FLOP per MAC, x 3 for forward
  plus backward (backward ~ 2 x forward: gradients of inputs and of weights), x patches/s;
* ``data share``: the share of the step spent in ``sampler.next_batch()`` (cropping,
  flipping, stacking the cached images), which must stay below 5 %.

``--profile`` adds a torch.profiler table (top ops by self CPU time) for the first
configuration. ``--variants`` measures changes against each other in the same invocation,
one after the other for every model and thread count: ``eager`` (as ``srprune train`` runs),
``compile`` (the primal net wrapped in ``torch.compile``; its compilation happens in the
warm-up steps), ``channels-last`` (the net's weights in channels-last memory, so the convs run so).

``--sampler-baseline COMMIT`` times ``next_batch`` of this checkout's sampler against the
one in ``srprune/data/images.py`` at a git commit, alternating calls in one process.

The machine may be shared: CPU time / wall time per step is recorded with each row
(``cpu/wall`` well below the thread count means other processes took cores), and ``CPU s``
(process CPU seconds per step) is the figure to compare across rows taken under different
load at one thread.

Example (the figures in RESULTS.md):
    python benchmarks/train_throughput.py --data ../shared/data/train --models drn-t \
        --threads 1 2 --batch 16 --patch 32 --steps 5 --profile --out results/t.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from srprune.data.images import PatchSampler, open_image_set
from srprune.measure.cost import model_cost
from srprune.models import build_model
from srprune.models.srmodel import SRModel
from srprune.training.loss import ensure_duals
from srprune.training.trainer import TrainConfig, Trainer


class TimedSampler:
    """A sampler that adds up the seconds spent drawing batches."""

    def __init__(self, sampler: PatchSampler) -> None:
        self.sampler, self.seconds = sampler, 0.0

    def next_batch(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        t0 = time.perf_counter()
        batch = self.sampler.next_batch()
        self.seconds += time.perf_counter() - t0
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def forward_macs(model: SRModel, patch: int) -> tuple[int, int]:
    """(primal, dual) MACs of one forward pass at an LR patch (batch 1), as the DR loss runs
    them: dual ``k`` on output ``k + 1`` of a multi-output net, else chained from the SR."""
    cost = model_cost(model, (patch, patch))
    outputs = [tuple(o[-2:]) for o in cost.outputs]
    duals = list(model.duals or [])
    dual = 0
    if len(outputs) == len(duals) + 1:
        for k, net in enumerate(duals):
            dual += model_cost(net, outputs[k + 1]).macs
    else:
        size = outputs[-1]
        for net in reversed(duals):
            c = model_cost(net, size)
            dual += c.macs
            size = tuple(c.outputs[-1][-2:])
    return cost.macs, dual


VARIANTS = ("eager", "compile", "channels-last")


def measure(name: str, threads: int, variant: str, args: argparse.Namespace,
            sampler: PatchSampler) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ensure_duals(build_model(name, 4, pretrained=name == "drn-t"))
    primal_macs, dual_macs = forward_macs(model, args.patch)
    timed = TimedSampler(sampler)
    if variant == "channels-last":
        # the weights alone: oneDNN then runs every conv (and its output) channels-last
        model.net.to(memory_format=torch.channels_last)
    if variant == "compile":
        model.net = torch.compile(model.net)
    trainer = Trainer(model, timed, TrainConfig(steps=args.warmup + args.steps + 2,
                                                batch=args.batch, patch=args.patch))
    for _ in range(args.warmup):
        trainer.train_step()
    timed.seconds = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        trainer.train_step()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    flop_per_patch = (primal_macs + dual_macs) * 2 * 3
    patches = args.batch * args.steps
    return {"model": name, "threads": threads, "batch": args.batch, "patch": args.patch,
            "steps": args.steps, "variant": variant,
            "step_s": round(wall / args.steps, 4), "patches_per_s": round(patches / wall, 2),
            "gflop_per_s": round(flop_per_patch * patches / wall / 1e9, 2),
            "data_share": round(timed.seconds / wall, 4),
            "data_ms_per_step": round(1e3 * timed.seconds / args.steps, 2),
            "cpu_per_wall": round(cpu / wall, 2),
            "primal_gmacs_per_patch": round(primal_macs / 1e9, 4),
            "dual_gmacs_per_patch": round(dual_macs / 1e9, 4)}


def profile_table(name: str, threads: int, args: argparse.Namespace,
                  sampler: PatchSampler, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    model = ensure_duals(build_model(name, 4, pretrained=name == "drn-t"))
    trainer = Trainer(model, sampler, TrainConfig(steps=4, batch=args.batch, patch=args.patch))
    trainer.train_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            trainer.train_step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def sampler_against(commit: str, args: argparse.Namespace, calls: int = 60) -> dict[str, Any]:
    """Median ``next_batch`` ms of the sampler at ``commit`` and of this checkout's."""
    import importlib.util
    import statistics
    import subprocess
    import tempfile

    from srprune.data import images as current

    source = subprocess.run(["git", "show", f"{commit}:srprune/data/images.py"], check=True,
                            capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("images_baseline", f.name)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)  # type: ignore[union-attr]
    Path(f.name).unlink()
    samplers = {}
    for label, module in ((commit, old), ("this checkout", current)):
        t0 = time.perf_counter()
        samplers[label] = module.PatchSampler(module.open_image_set(args.data, 4), 4,
                                              args.patch, args.batch, seed=1)
        samplers[label].setup_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {label: [] for label in samplers}
    for _ in range(calls):
        for label, sampler in samplers.items():
            t0 = time.perf_counter()
            sampler.next_batch()
            times[label].append(time.perf_counter() - t0)
    return {label: {"next_batch_ms": round(1e3 * statistics.median(t), 2),
                    "setup_s": round(samplers[label].setup_s, 2)} for label, t in times.items()}


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| model | threads | batch x patch | variant | step s | patches/s "
            "| GFLOP/s | data share | cpu/wall | CPU s |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(
        f"| {r['model']} | {r['threads']} | {r['batch']} x {r['patch']} | {r['variant']} | "
        f"{r['step_s']:.3f} | {r['patches_per_s']:.1f} | "
        f"{r['gflop_per_s']:.1f} | {100 * r['data_share']:.2f} % | {r['cpu_per_wall']:.2f} | "
        f"{r['step_s'] * r['cpu_per_wall']:.2f} |"
        for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="builtin")
    parser.add_argument("--models", nargs="+", default=["drn-t", "drn-s"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["eager"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sampler-baseline", metavar="COMMIT", default=None)
    parser.add_argument("--report", type=Path, nargs="+", default=None,
                        help="Print the table of these --out files and stop.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.report:
        saved = [json.loads(path.read_text()) for path in args.report]
        print(markdown([row for data in saved for row in data["rows"]]))
        return
    if args.sampler_baseline:
        torch.set_num_threads(args.threads[0])
        result = sampler_against(args.sampler_baseline, args)
        for label, figures in result.items():
            print(f"{label}: next_batch median {figures['next_batch_ms']:.2f} ms (batch "
                  f"{args.batch}, LR patch {args.patch}), set-up with decoding "
                  f"{figures['setup_s']:.2f} s")
        return
    t0 = time.perf_counter()
    sampler = PatchSampler(open_image_set(args.data, 4), 4, args.patch, args.batch, seed=1)
    decode_s = time.perf_counter() - t0
    rows = []
    for name in args.models:
        for threads in args.threads:
            for variant in args.variants:
                rows.append(measure(name, threads, variant, args, sampler))
                print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows))
    print(f"\nimages decoded and cached once: {decode_s:.2f} s ({len(sampler)} images)")
    table = None
    if args.profile:
        table = profile_table(args.models[0], args.threads[0], args, sampler)
        print(f"\ntop ops, {args.models[0]}, {args.threads[0]} thread(s), 2 steps:\n{table}")
    if args.out is not None:
        args.out.write_text(json.dumps({
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(), "torch": torch.__version__,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "decode_seconds": round(decode_s, 2), "rows": rows, "profile": table}, indent=1))


if __name__ == "__main__":
    main()
