"""The efficiency table of a `srprune bench --roofline --json` run (issue 16, item 2).

Per model: params, GMACs, MACs ratio, median latency (p10-p90), latency ratio, speed-up,
roofline efficiency and that efficiency as a share of the first model's (the unpruned one),
which is the issue's criterion (the roofline peak cancels in it).

  python benchmarks/efficiency_report.py benchmarks/results/efficiency-drn-s-nonconv.json \
      [--label PATH=NAME ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(rows: list[dict], labels: dict[str, str]) -> str:
    base = rows[0]
    lines = ["| model | params | GMACs | MACs ratio | median ms (p10-p90) | latency ratio | "
             "speed-up | roofline eff. | vs unpruned |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat = r["latency_ms"]
        eff = r["roofline"]["efficiency"]
        name = labels.get(r["model"], r["model"])
        lines.append(
            f"| {name} | {r['params']:,} | {r['macs'] / 1e9:.2f} | "
            f"{r['macs'] / base['macs']:.3f} | {lat['median']:.1f} ({lat['p10']:.0f}-"
            f"{lat['p90']:.0f}) | {lat['median'] / base['latency_ms']['median']:.3f} | "
            f"{r['speedup']:.2f}x | {100 * eff:.1f} % | "
            f"{100 * eff / base['roofline']['efficiency']:.1f} % |")
    peak = base["roofline"]
    lines.append("")
    lines.append(f"Roofline peak: {peak['peak_source']}, {peak['peak_gflops']:.1f} GFLOP/s "
                 f"({base['threads']} thread(s), {base['runs']} timed runs, input "
                 f"{base['input_size'][0]}x{base['input_size'][1]}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--label", action="append", default=[], metavar="PATH=NAME")
    args = parser.parse_args()
    labels = dict(item.split("=", 1) for item in args.label)
    print(table(json.loads(args.bench.read_text()), labels))


if __name__ == "__main__":
    main()
