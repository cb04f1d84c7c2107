"""The README's compatibility table, computed: every registered architecture at its published
configuration (x4 where it has one), its parameter count, how much of it the graph can prune
with ``--scope all``, whether it exports to ONNX with dynamic axes, and its blocked units.

    python benchmarks/zoo_table.py                       # print the markdown table
    python benchmarks/zoo_table.py --write README.md     # replace the table between markers
    python benchmarks/zoo_table.py --json out.json       # the rows as JSON too

"prunable share" is the fraction of the primal parameters removed when every unit in
``--scope all`` keeps one channel (``PlanCost``, exact, no pruning): the most pruning can take.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from srprune.errors import SrpruneError
from srprune.measure.export import check_parity, export_onnx
from srprune.models import model_spec
from srprune.prune.graph import SRGraph
from srprune.prune.plan import PlanCost
from srprune.registry import MODELS

BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"
SOURCES = {"spandrel": "spandrel", "drn": "srprune (DRN authors' layout)",
           "srnet": "srprune (test net)"}


def row(name: str, size: int) -> dict:
    spec = model_spec(name)
    scale = 4 if 4 in spec.scales else spec.scales[0]
    torch.manual_seed(0)
    model = spec.build(spec.config_for(scale)).eval()
    t0 = time.perf_counter()
    graph = SRGraph(model.net, scale)
    units = graph.units("all")
    cost = PlanCost(graph, (size, size))
    share = cost.reduction({u.name: 1 for u in units}) if units else 0.0
    blocked = graph.blocked_units()
    onnx, dynamic, parity = "no", False, None
    with tempfile.TemporaryDirectory() as folder:
        try:
            result = export_onnx(model, Path(folder) / "m.onnx", (size, size))
            parity = check_parity(model, result.path, (size, size)).max_abs_diff
            onnx, dynamic = result.exporter, result.dynamic
        except SrpruneError as exc:
            onnx = f"fails: {str(exc)[:60]}"
    source = SOURCES.get(spec.family, f"srprune ({spec.family} layout)")
    return {"name": name, "scale": scale, "source": source,
            "params": model.n_params, "units": len(units), "blocked": len(blocked),
            "prunable_share": round(share, 3), "onnx": onnx, "dynamic": dynamic,
            "parity": parity, "blocked_reasons": [b.blocked for b in blocked],
            "seconds": round(time.perf_counter() - t0, 1)}


REASONS = (("grouped convolution", "grouped convs"),
           ("unsupported channel coupling", "split/chunk couplings"),
           ("pruning breaks the model", "trial pruning breaks it (hard-coded reshapes)"),
           ("the dependency graph cannot map", "Torch-Pruning cannot map the channels"))


def reasons(blocked: list[str]) -> str:
    """Blocked units counted by kind of reason, e.g. "6 split/chunk couplings"."""
    counts: dict[str, int] = {}
    for text in blocked:
        kind = next((label for prefix, label in REASONS if text.startswith(prefix)), text)
        counts[kind] = counts.get(kind, 0) + 1
    return "; ".join(f"{n} blocked: {kind}" for kind, n in counts.items())


def markdown(rows: list[dict]) -> str:
    lines = ["| architecture | source | params (x4) | units (blocked) | prunable share, "
             "`--scope all` | ONNX | notes |", "|---|---|---:|---|---:|---|---|"]
    for r in rows:
        onnx = r["onnx"] if r["onnx"].startswith("fails") else (
            f"{r['onnx']}, {'dynamic' if r['dynamic'] else 'fixed size'}")
        notes = reasons(r["blocked_reasons"])
        lines.append(f"| `{r['name']}` | {r['source']} | {r['params']:,} | {r['units']} "
                     f"({r['blocked']}) | {r['prunable_share']:.0%} | {onnx} | {notes} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="LR size for export and MACs")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--write", default=None, help="a file with the table markers to update")
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-json", default=None, help="render rows measured earlier")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows = json.loads(Path(args.from_json).read_text())["rows"] if args.from_json else []
    for name in [] if args.from_json else (args.only or MODELS.names()):
        if (name.startswith("drn-s") and name != "drn-s") or name == "testnet":
            continue  # the compressed DRN-S configs and test plugins: same structures
        rows.append(row(name, args.size))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    table = markdown(rows)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows},
                                              indent=1))
    if args.write:
        path = Path(args.write)
        text = path.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path} has no {BEGIN} ... {END} markers")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        path.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
