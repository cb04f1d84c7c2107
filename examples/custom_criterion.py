"""Write your own channel criterion, register it, and compress a model with it.

    python examples/custom_criterion.py            # drn-t x4, 50 % of the parameters removed
    python examples/custom_criterion.py --tiny     # same, smaller cost-counting input

A score criterion returns one number per selectable channel of a unit (higher = keep); the
engine keeps the best ones and removes the rest from every coupled layer. To ship it to other
users as a package, expose the class under the ``srprune.criteria`` entry point instead of
the decorator (see plugins/srprune-hrank).
"""

from __future__ import annotations

import argparse
import json

import torch

import srprune
from srprune import Context, ScoreCriterion, Unit, register_criterion


@register_criterion("l2-example")
class L2Norm(ScoreCriterion):
    """L2 norm of each channel's producer filters (higher = keep)."""

    def score(self, unit: Unit, ctx: Context) -> torch.Tensor:
        scores = torch.zeros(unit.width, dtype=torch.float64)
        for _, module, index in unit.producer_modules():  # index[j]: the rows of channel j
            rows = module.weight.detach().flatten(1).norm(dim=1).double().cpu()
            scores += rows[index].sum(1)
        return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drn-t")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--tiny", action="store_true", help="small input for cost counting")
    args = parser.parse_args()
    size = (16, 16) if args.tiny else (96, 96)
    result = srprune.compress(args.model, ratio=args.ratio, criterion="l2-example",
                              input_size=size)
    print(json.dumps(result.summary(), indent=2))


if __name__ == "__main__":
    main()
