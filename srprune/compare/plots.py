"""The grid's PNG plots (matplotlib, Agg): quality against latency and MACs, kept widths.

Each point is one method at one ratio: the mean over its seeds, with the standard deviation
over seeds as error bars; the unpruned model is the black star. Grey rings on a dashed line
mark the Pareto front (no other point is both faster, or cheaper, and better).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from srprune.compare.stats import Group, Spread, pareto_front
from srprune.io.checkpoint import write_atomic

DPI = 110
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _colors(methods: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _methods(groups: Sequence[Group]) -> list[str]:
    return list(dict.fromkeys(g.method for g in groups))


def quality_plot(groups: Sequence[Group], reference: dict[str, Any], eval_name: str,
                 axis: str, path: Path, subtitle: str = "") -> Path:
    """PSNR (first eval set) against ``axis``: ``latency`` (ORT median ms) or ``macs``."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=DPI)
    colors = _colors(_methods(groups))
    points: list[tuple[float, float]] = []
    labels: list[str] = []
    for method in colors:
        mine = [g for g in groups if g.method == method and g.rows]
        xs, ys, xerr, yerr = [], [], [], []
        for g in mine:
            x = _x(g, axis)
            y = g.psnr(eval_name)
            if math.isnan(x.mean):
                continue
            xs.append(x.mean)
            ys.append(y.mean)
            xerr.append(x.std or 0.0)
            yerr.append(y.std or 0.0)
            points.append((x.mean, y.mean))
            labels.append(f"{method} {g.ratio:g}")
            ax.annotate(f"{g.ratio:g}", (x.mean, y.mean), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=colors[method])
        if xs:
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o", ms=5, capsize=2,
                        color=colors[method], label=method)
    ref_x = _reference_x(reference, axis)
    ref_y = reference["quality"][eval_name]["psnr"]
    if ref_x is not None:
        ax.plot([ref_x], [ref_y], marker="*", ms=13, color="black", linestyle="none",
                label="unpruned")
        points.append((ref_x, ref_y))
        labels.append("unpruned")
    front = pareto_front(points)
    if front:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--o",
                color="grey", lw=1, ms=13, mfc="none", zorder=0, label="Pareto front")
    if not points:
        ax.text(0.5, 0.5, f"no {axis} measured", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("ONNX Runtime CPU latency, median (ms)" if axis == "latency"
                  else "MACs (G, conv + linear)")
    ax.set_ylabel(f"PSNR on Y, {eval_name} (dB)")
    title = "PSNR vs latency" if axis == "latency" else "PSNR vs MACs"
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _x(group: Group, axis: str) -> Spread:
    if axis == "latency":
        return group.latency
    return Spread(tuple(v / 1e9 for v in group.macs.values))


def _reference_x(reference: dict[str, Any], axis: str) -> float | None:
    if axis == "latency":
        return (reference.get("latency") or {}).get("median_ms")
    return reference["macs"] / 1e9


def widths_plot(groups: Sequence[Group], path: Path) -> Path:
    """Kept fraction of each unit's channels, network order; one panel per ratio.

    Uniform plans keep the same fraction everywhere (up to rounding and group sizes); a
    searched plan shows where it spends its channels. Seeds are averaged; each method's
    points are shifted a little sideways so that equal plans stay visible.
    """
    ratios = list(dict.fromkeys(g.ratio for g in groups))
    colors = _colors(_methods(groups))
    fig, axes = plt.subplots(1, max(1, len(ratios)), figsize=(4.2 * max(1, len(ratios)), 3.8),
                             dpi=DPI, sharey=True, squeeze=False)
    methods = list(colors)
    shift = 0.5 / max(1, len(methods))  # side by side: equal plans would hide each other
    for ax, ratio in zip(axes[0], ratios):
        for g in (g for g in groups if g.ratio == ratio and g.rows):
            fractions = _mean_fractions(g.rows)
            i = methods.index(g.method)
            xs = [u + (i - (len(methods) - 1) / 2) * shift for u in range(len(fractions))]
            ax.plot(xs, fractions, marker=MARKERS[i % len(MARKERS)], ms=4, lw=1,
                    color=colors[g.method], label=g.method)
        ax.set_title(f"ratio {ratio:g}", fontsize=10)
        ax.set_xlabel("unit (network order)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("kept / original channels")
    handles, names = [], []
    for ax in axes[0]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        fig.legend(handles, names, fontsize=8, loc="lower center", ncol=min(6, len(names)),
                   bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Kept width per unit", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)


def _mean_fractions(rows: Sequence[dict[str, Any]]) -> list[float]:
    per_seed = [[k / o if o else 1.0 for k, o in zip(r["widths"]["kept"], r["widths"]["original"])]
                for r in rows]
    n = min(len(f) for f in per_seed)
    return [sum(f[i] for f in per_seed) / len(per_seed) for i in range(n)]


def _save(fig: Any, path: Path) -> Path:
    """Write the PNG atomically (temporary file, then rename)."""
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png",
                                                          bbox_inches="tight"), force=True)
    finally:
        plt.close(fig)
