"""Which channels do two criteria keep? Per-unit overlap of their selections on one model.

Example (repository root):

    python benchmarks/channel_overlap.py --model drn-t --data ../shared/data/train \
        --ratio 0.7 --criteria l1 dr --criterion-options '{"dr": {"refit": "lstsq"}}'

Each criterion prunes its own copy of the model with the same uniform plan, calibration batches
(default preset) and seed; the kept channel indices of every unit are recorded in original
coordinates. Prints one line per unit (kept count, shared channels, Jaccard index) and writes
the kept sets as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from srprune.api import calibration_batches
from srprune.config import RunConfig
from srprune.criteria.base import register_criterion
from srprune.models import resolve_model
from srprune.prune.engine import compress
from srprune.registry import CRITERIA

_RECORDS: dict[str, dict[str, list[int]]] = {}  # criterion name -> unit -> kept channels


def kept_channels(model_name: str, scale: int, ratio: float, criterion: str,
                  options: dict[str, Any], batches: list, seed: int) -> dict[str, list[int]]:
    """Kept channel indices per unit (original coordinates) when ``criterion`` prunes."""
    name = f"{criterion}-recorded"
    if name not in CRITERIA.names():
        class Recording(CRITERIA.get(criterion)):  # type: ignore[misc, valid-type]
            def select(self, unit: Any, n_keep: int, ctx: Any) -> list[int]:
                chosen = super().select(unit, n_keep, ctx)
                _RECORDS[criterion][unit.name] = sorted(int(j) for j in chosen)
                return chosen

        register_criterion(name)(Recording)
    _RECORDS[criterion] = {}
    compress(resolve_model(model_name, scale=scale), ratio, criterion=name, batches=batches,
             criterion_options=options, seed=seed)
    return _RECORDS.pop(criterion)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="drn-t")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ratio", type=float, default=0.7)
    ap.add_argument("--criteria", nargs=2, default=["l1", "dr"])
    ap.add_argument("--criterion-options", default="{}",
                    help='JSON: options per criterion, e.g. \'{"dr": {"refit": "lstsq"}}\'')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.criteria[0] == args.criteria[1]:
        ap.error("--criteria needs two different criteria")
    per_criterion = json.loads(args.criterion_options)
    sets = {}
    for name in args.criteria:
        config = RunConfig.build(preset="default", criterion=name,
                                 criterion_options=per_criterion.get(name))
        calib = config.calibration
        batches = calibration_batches(args.data, args.scale, calib.batches, calib.batch,
                                      calib.patch, args.seed)
        sets[name] = kept_channels(args.model, args.scale, args.ratio, name,
                                   config.selection.criterion_options, batches, args.seed)
    a, b = args.criteria
    shared_total = kept_total = 0
    for unit, kept_a in sets[a].items():
        kept_b = sets[b][unit]
        shared = len(set(kept_a) & set(kept_b))
        jaccard = shared / len(set(kept_a) | set(kept_b))
        shared_total, kept_total = shared_total + shared, kept_total + len(kept_a)
        print(f"{unit:28s} keep {len(kept_a):3d}  shared {shared:3d}  jaccard {jaccard:.2f}")
    print(f"all units: {shared_total} of {kept_total} kept channels shared "
          f"({shared_total / kept_total:.0%})")
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "kept": sets},
                                             indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
