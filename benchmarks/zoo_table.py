"""The zoo table of the Models page (docs/models.md), computed: every registered
architecture at its published configuration (x4 where it has one), its parameter count, how
much of it the graph can prune with ``--scope all``, whether it exports to ONNX with dynamic
axes, and its blocked units.

    python benchmarks/zoo_table.py                       # print the markdown table
    python benchmarks/zoo_table.py --write               # replace the table in docs/models.md
    python benchmarks/zoo_table.py --from-json benchmarks/results/zoo-table.json --write
                                                         # re-render measured rows
    python benchmarks/zoo_table.py --json out.json       # the rows as JSON too
    python benchmarks/zoo_table.py --compress 0.5        # and compress each one for real

``--compress R`` prunes each architecture by ``R`` with ``l1`` (``--scope internal``, or
``all`` when the internal units cannot reach ``R``), runs the pruned net at two input
sizes, exports it with parity against PyTorch and round-trips it as an artifact: the
"l1 at R" column gives the achieved reduction and the scope.

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
from srprune.models.artifacts import load_artifact, save_artifact
from srprune.prune.engine import compress
from srprune.prune.graph import SRGraph
from srprune.prune.plan import PlanCost
from srprune.registry import MODELS

BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "models.md"  # the table's home
SOURCES = {"spandrel": "spandrel", "drn": "srprune (DRN authors' layout)",
           "srnet": "srprune (test net)"}


def compressed(model: object, ratio: float, size: int) -> dict:
    """Prune ``model`` by ``ratio`` with l1 and check what the contract tests check."""
    t0 = time.perf_counter()
    scope = "internal"
    try:
        result = compress(model, ratio, criterion="l1", scope=scope, input_size=(size, size))
    except SrpruneError as exc:
        if "no prunable unit" not in str(exc) and "out of reach" not in str(exc):
            return {"error": str(exc)[:160]}
        scope = "all"
        try:
            result = compress(model, ratio, criterion="l1", scope=scope,
                              input_size=(size, size))
        except SrpruneError as exc2:
            return {"error": str(exc2)[:160]}
    scale = model.scale
    shapes_ok = True
    with torch.no_grad():
        for h, w in ((size, size), (size - 5, size + 3)):
            out = model.net.eval()(torch.rand(1, 3, h, w) * 255)
            out = out[-1] if isinstance(out, (list, tuple)) else out  # DRN: every scale
            shapes_ok = shapes_ok and tuple(out.shape) == (1, 3, h * scale, w * scale)
    with tempfile.TemporaryDirectory() as folder:
        exported = export_onnx(model, Path(folder) / "m.onnx", (size, size))
        parity = check_parity(model, exported.path, (size, size)).max_abs_diff
        with torch.no_grad():  # check_parity's input: how far the output reaches
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255
            reach = max(1.0, float(model(x).abs().max()) / 255)
        loaded = load_artifact(save_artifact(model, Path(folder) / "m.srp"))
        x = torch.rand(1, 3, size, size) * 255
        with torch.no_grad():
            round_trip = float((loaded(x) - model(x)).abs().max())
    return {"ratio": ratio, "scope": scope, "achieved": round(result.ratio_achieved, 4),
            "shapes_ok": shapes_ok, "parity": parity, "parity_limit": 1e-3 * reach,
            "round_trip": round_trip,
            "seconds": round(time.perf_counter() - t0, 1)}


def row(name: str, size: int, ratio: float | None = None) -> dict:
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
            "seconds": round(time.perf_counter() - t0, 1),
            "compressed": compressed(model, ratio, size) if ratio else None}


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


def pruned_cell(result: dict | None) -> str:
    """The "l1 at R" column: achieved reduction and scope, or what failed."""
    if not result:
        return ""
    if "error" in result:
        return f"fails: {result['error'][:60]}"
    # parity passed check_parity's limit, or the row would not exist (it raises)
    ok = result["shapes_ok"] and result["round_trip"] <= 1e-4
    return (f"{result['achieved']:.1%} ({result['scope']})"
            + ("" if ok else " (checks fail)"))


def markdown(rows: list[dict]) -> str:
    ratio = next((r["compressed"]["ratio"] for r in rows
                  if r.get("compressed") and "ratio" in r["compressed"]), None)
    extra = f" `l1` at {ratio} |" if ratio else ""
    lines = ["| architecture | source | params (x4) | units (blocked) | prunable share, "
             f"`--scope all` |{extra} ONNX | notes |",
             "|---|---|---:|---|---:|" + ("---:|" if ratio else "") + "---|---|"]
    for r in rows:
        onnx = r["onnx"] if r["onnx"].startswith("fails") else (
            f"{r['onnx']}, {'dynamic' if r['dynamic'] else 'fixed size'}")
        notes = reasons(r["blocked_reasons"])
        pruned = f" {pruned_cell(r.get('compressed'))} |" if ratio else ""
        lines.append(f"| `{r['name']}` | {r['source']} | {r['params']:,} | {r['units']} "
                     f"({r['blocked']}) | {r['prunable_share']:.0%} |{pruned} {onnx} | "
                     f"{notes} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="LR size for export and MACs")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--write", nargs="?", const=str(PAGE), default=None, metavar="FILE",
                    help="a file with the table markers to update (default: docs/models.md)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-json", default=None, help="render rows measured earlier")
    ap.add_argument("--compress", type=float, default=None, metavar="RATIO",
                    help="also prune each model by RATIO with l1 and check the result")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows = json.loads(Path(args.from_json).read_text())["rows"] if args.from_json else []
    for name in [] if args.from_json else (args.only or MODELS.names()):
        if (name.startswith("drn-s") and name != "drn-s") or name == "testnet":
            continue  # the compressed DRN-S configs and test plugins: same structures
        rows.append(row(name, args.size, args.compress))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    table = markdown(rows)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows},
                                              indent=1))
    if args.write:
        path = Path(args.write)
        path.write_text(replace_table(path.read_text(), table, path))
    return 0


def replace_table(text: str, table: str, path: Path = PAGE) -> str:
    """``text`` with the table between the markers replaced by ``table``."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


if __name__ == "__main__":
    sys.exit(main())
