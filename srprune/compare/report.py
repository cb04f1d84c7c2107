"""The grid's reports: results.csv, table.md (the paper's Table 3 layout) and report.html.

Every number shown is read from the rows (mean±std over seeds); nothing is typed in.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srprune.compare.grid import GridSpec
from srprune.compare.stats import Group, Spread
from srprune.compare.verdict import Verdict
from srprune.config import rate_text

CSV_FIELDS = ["key", "criterion", "strategy", "method", "ratio", "seed", "status", "error",
              "params", "macs", "ratio_achieved"]
CSV_TAIL = ["psnr_pruned", "latency_ms", "speedup", "efficiency", "seconds", "threads",
            "artifact", "command"]


def count(n: float) -> str:
    """4.80 M, 6.29 G, 812."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f}"


def results_csv(rows: Sequence[dict[str, Any]], eval_names: Sequence[str]) -> str:
    """One line per cell, the command that reproduces it last."""
    quality = [f"{kind}_{name}" for name in eval_names for kind in ("psnr", "ssim")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS + quality + CSV_TAIL, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        line = {k: row.get(k) for k in CSV_FIELDS}
        for name in eval_names:
            q = (row.get("quality") or {}).get(name) or {}
            line[f"psnr_{name}"], line[f"ssim_{name}"] = q.get("psnr"), q.get("ssim")
        latency = row.get("latency") or {}
        line.update(psnr_pruned=row.get("psnr_pruned"), latency_ms=latency.get("median_ms"),
                    speedup=latency.get("speedup"), efficiency=latency.get("efficiency"),
                    seconds=(row.get("seconds") or {}).get("total"),
                    threads=row.get("threads"), artifact=row.get("artifact"),
                    command=row.get("command"))
        writer.writerow(line)
    return buffer.getvalue()


# ------------------------------------------------------------------ the table


def header_lines(spec: GridSpec, reference: dict[str, Any], bench: dict[str, Any],
                 groups: Sequence[Group]) -> list[str]:
    """What was compared, at which budget, measured how."""
    seeds = sorted({int(r["seed"]) for g in groups for r in g.rows})
    steps = f"{spec.finetune_steps} step" + ("s" if spec.finetune_steps != 1 else "")
    tune = (f"{steps} of dual-regression fine-tuning (batch "
            f"{spec.finetune_batch}, LR patch {spec.finetune_patch}, "
            f"lr {rate_text(spec.finetune_lr)}, "
            f"distillation weight {spec.distill_weight:g})"
            if spec.finetune_steps else "no fine-tuning")
    h, w = spec.input_size
    lines = [
        f"Model `{spec.model}` x{reference['scale']} ({reference['weights']} weights), scope "
        f"`{spec.scope}`, preset `{spec.preset}`, calibration and fine-tuning data "
        f"`{spec.data or 'none'}`; every cell: {tune}. Seeds: "
        f"{', '.join(map(str, seeds)) or 'none finished'} (the seeds column counts each "
        "method's finished cells).",
        "PSNR/SSIM on Y (border crop = scale), mean±std over seeds"
        + (f"; `pruned` is the PSNR on {spec.eval_names()[0]} right after pruning, before "
           "fine-tuning" if spec.eval_pruned else "")
        + f". Params and MACs of the primal net, MACs at {h}x{w} LR.",
    ]
    if bench.get("skipped"):
        lines.append("Latency: not measured (--no-bench).")
    elif bench.get("error"):
        lines.append(f"Latency: not measured ({bench['error']}).")
    else:
        lines.append(f"Latency: ONNX Runtime CPU, {bench['threads']} thread(s), {h}x{w} LR, "
                     f"median of {bench['runs']} interleaved runs; efficiency = achieved "
                     "GFLOP/s over an SGEMM timed alongside.")
    return lines


def table_rows(groups: Sequence[Group], reference: dict[str, Any],
               eval_names: Sequence[str], markdown: bool,
               pruned: bool = False) -> tuple[list[str], list[list[str]]]:
    """The table's header and cells (best mean PSNR per ratio in bold when ``markdown``);
    ``pruned``: a column of the PSNR right after pruning."""
    head = ["ratio", "method", "params", "MACs", "removed"]
    head += [f"{name} PSNR/SSIM" for name in eval_names]
    head += (["pruned"] if pruned else []) + ["latency ms", "eff.", "seeds"]
    ref_q = [f"{reference['quality'][n]['psnr']:.3f}/{reference['quality'][n]['ssim']:.4f}"
             for n in eval_names]
    ref_lat = reference.get("latency") or {}
    body = [["0", "unpruned", count(reference["params"]), count(reference["macs"]), "0",
             *ref_q, *([""] if pruned else []), _num(ref_lat.get("median_ms"), 2),
             _pct(ref_lat.get("efficiency")), ""]]
    best = {}
    for g in groups:
        if g.rows:
            mean = g.psnr(eval_names[0]).mean
            best[g.ratio] = max(best.get(g.ratio, mean), mean)
    for g in groups:
        cells = [f"{g.ratio:g}", g.method]
        if not g.rows:
            body.append(cells + ["-"] * (len(head) - 3) + [f"0 ({g.failed} failed)"])
            continue
        quality = []
        for i, name in enumerate(eval_names):
            text = f"{g.psnr(name).show(3)}/{g.ssim(name).show(4)}"
            if markdown and i == 0 and g.psnr(name).mean == best[g.ratio]:
                text = f"**{text}**"
            quality.append(text)
        removed = g.spread(lambda r: r["ratio_achieved"])
        seeds = str(len(g.rows)) + (f" ({g.failed} failed)" if g.failed else "")
        body.append([*cells, count(g.params.mean), count(g.macs.mean), f"{removed.mean:.3f}",
                     *quality, *([g.psnr_pruned.show(3)] if pruned else []), g.latency.show(2),
                     _pct(g.efficiency.mean if g.efficiency.n else None), seeds])
    return head, body


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table_markdown(spec: GridSpec, reference: dict[str, Any], groups: Sequence[Group],
                   verdicts: Sequence[Verdict], bench: dict[str, Any],
                   failures: Sequence[dict[str, Any]]) -> str:
    eval_names = spec.eval_names()
    head, body = table_rows(groups, reference, eval_names, markdown=True,
                            pruned=spec.eval_pruned)
    lines = [f"# srprune compare: {spec.model} x{reference['scale']}", ""]
    lines += [*header_lines(spec, reference, bench, groups), ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", "## Verdict per ratio", ""]
    lines += [f"* {v.text}" for v in verdicts]
    if failures:
        lines += ["", "## Failed cells", ""]
        lines += [f"* `{f['key']}`: {f['error']}" for f in failures]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the HTML report


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1150px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
tr.ref td { background: #f2f2f2; } td.best { font-weight: bold; background: #e8f4e8; }
p.note { font-size: 13px; color: #444; } li { margin: 4px 0; font-size: 14px; }
li.decisive { color: #14532d; } li.within { color: #7c2d12; }
img { max-width: 100%; border: 1px solid #ddd; margin: 6px 0; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def report_html(spec: GridSpec, reference: dict[str, Any], groups: Sequence[Group],
                verdicts: Sequence[Verdict], bench: dict[str, Any],
                failures: Sequence[dict[str, Any]], images: Sequence[tuple[str, Path]],
                command: str, crops: str = "") -> str:
    """One self-contained page: the table, the verdicts, the plots as data URIs and
    ``crops`` (the side-by-side crops section, :mod:`srprune.compare.crops`)."""
    esc = html.escape
    eval_names = spec.eval_names()
    head, body = table_rows(groups, reference, eval_names, markdown=False,
                            pruned=spec.eval_pruned)
    best = {}
    for g in groups:
        if g.rows:
            best[g.ratio] = max(best.get(g.ratio, -1e9), g.psnr(eval_names[0]).mean)
    table = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(body):
        cls = ' class="ref"' if i == 0 else ""
        cells = []
        for j, value in enumerate(row):
            mark = ""
            if i > 0 and j == 5:
                g = groups[i - 1]
                if g.rows and g.psnr(eval_names[0]).mean == best[g.ratio]:
                    mark = ' class="best"'
            cells.append(f"<td{mark}>{esc(value)}</td>")
        table.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    table.append("</table>")
    items = []
    for v in verdicts:
        cls = "" if v.decisive is None else (' class="decisive"' if v.decisive
                                             else ' class="within"')
        items.append(f"<li{cls}>{esc(v.text)}</li>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>srprune compare: {esc(spec.model)}</title>", f"<style>{STYLE}</style>",
        "</head><body>",
        f"<h1>srprune compare: {esc(spec.model)} x{reference['scale']}</h1>",
        *(f'<p class="note">{esc(line).replace("`", "")}</p>'
          for line in header_lines(spec, reference, bench, groups)),
        f'<p class="note">Command: <code>{esc(command)}</code></p>',
        "<h2>Verdict per ratio</h2>", "<ul>", *items, "</ul>",
        "<h2>Results (Table 3 layout)</h2>", *table,
    ]
    if crops:
        parts.append(crops)
    if failures:
        parts += ["<h2>Failed cells</h2>", "<ul>"]
        parts += [f"<li><code>{esc(f['key'])}</code>: {esc(f['error'])}</li>" for f in failures]
        parts.append("</ul>")
    for title, path in images:
        parts += [f"<h2>{esc(title)}</h2>",
                  f'<img alt="{esc(title)}" src="{png_data_uri(path)}">']
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def spread_dict(spread: Spread) -> dict[str, Any]:
    return {"mean": spread.mean if spread.n else None, "std": spread.std, "n": spread.n}


def groups_json(groups: Sequence[Group], eval_names: Sequence[str]) -> list[dict[str, Any]]:
    """The aggregates of results.json: one entry per method and ratio."""
    out = []
    for g in groups:
        out.append({
            "ratio": g.ratio, "method": g.method, "criterion": g.criterion,
            "strategy": g.strategy, "seeds": [r["seed"] for r in g.rows], "failed": g.failed,
            "params": spread_dict(g.params), "macs": spread_dict(g.macs),
            "psnr_pruned": spread_dict(g.psnr_pruned),
            "quality": {n: {"psnr": spread_dict(g.psnr(n)), "ssim": spread_dict(g.ssim(n))}
                        for n in eval_names},
            "latency_ms": spread_dict(g.latency), "efficiency": spread_dict(g.efficiency)})
    return out
