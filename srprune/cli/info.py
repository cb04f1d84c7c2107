"""``srprune info``: parameters, MACs and output shapes of a model."""

from __future__ import annotations

import click
from rich.table import Table

from srprune.cli.common import (
    check_input_size,
    console,
    fmt_count,
    input_size_option,
    json_option,
    load_model_arg,
    print_json,
    scale_option,
)


@click.command("info")
@click.argument("model")
@scale_option
@input_size_option()
@click.option("--weights", type=click.Path(), default=None, help="Checkpoint to load.")
@click.option("--channels", "channel_config", type=click.Path(), default=None,
              help="Channel-config file (the authors' text format) for DRN models.")
@click.option("--units", "show_units", is_flag=True,
              help="List every pruning unit: width, kind, layers, and why a blocked one is.")
@json_option
def info_cmd(model: str, scale: int | None, input_size: tuple[int, int], weights: str | None,
             channel_config: str | None, show_units: bool, as_json: bool) -> None:
    """Parameters, MACs (two conventions) and output shapes of MODEL (name, file or
    package.module:Class)."""
    from srprune.measure.cost import model_cost

    sr = load_model_arg(model, scale, weights, channel_config)
    size = check_input_size(input_size, sr.scale)
    cost = model_cost(sr, size)
    data = {"model": model, "scale": sr.scale, **cost.as_dict(),
            "dual_params": (sum(p.numel() for p in sr.duals.parameters())
                            if sr.duals is not None else 0),
            "weights": sr.meta.get("weights", "artifact")}
    if sr.meta.get("detected"):
        data["detected"] = sr.meta["detected"]
    data["architecture"] = {"family": sr.arch, "config": sr.config}
    if sr.removed_blocks:
        data["removed_blocks"] = list(sr.removed_blocks)
    if "ncnn" in sr.meta:  # checked against ncnn's own CPU inference when ncnn is here
        from srprune.models.ncnn_source import ncnn_parity

        parity = ncnn_parity(sr, model)
        data["ncnn_parity"] = None if parity is None else {
            k: parity[k] for k in ("mean_abs", "max_abs", "psnr") if k in parity}
    if show_units:
        from srprune.prune.graph import SRGraph

        graph = SRGraph(sr.net, sr.scale)
        data["units"] = [u.as_dict() for u in graph.every_unit()]
        data["coverage"] = graph.coverage()
    if as_json:
        print_json(data)
        return
    table = Table(title=f"{model} x{sr.scale} on a {size[0]}x{size[1]} LR input")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("params (primal)", f"{cost.params:,} ({fmt_count(cost.params)})")
    table.add_row("params (dual nets)", f"{data['dual_params']:,}")
    weights = data["weights"]
    table.add_row("weights", "random (none trained here)" if weights == "random" else weights)
    table.add_row("MACs (conv+linear)", f"{cost.macs:,} ({fmt_count(cost.macs)})")
    table.add_row("paper MACs (+bias adds)", f"{cost.paper_macs:,} ({fmt_count(cost.paper_macs)})")
    if "detected" in data:
        table.add_row("detected", data["detected"])
    config = sr.config.get("hyperparameters", sr.config)
    table.add_row("architecture", f"{sr.arch}: " + ", ".join(
        f"{k}={v}" for k, v in config.items() if k not in ("widths", "package", "class_name")))
    if sr.removed_blocks:
        table.add_row("removed blocks", f"{len(sr.removed_blocks)} (depth pruning)")
    for i, shape in enumerate(cost.outputs):
        table.add_row(f"output {i}", "x".join(map(str, shape)))
    console.print(table)
    if "ncnn_parity" in data:
        p = data["ncnn_parity"]
        console.print("ncnn parity: " + ("the ncnn package is not installed (pip install ncnn)"
                                         if p is None else
                                         f"mean |torch - ncnn| {p['mean_abs']:.2e}, max "
                                         f"{p['max_abs']:.2e} on [0, 1] ({p['psnr']:.1f} dB)"),
                      markup=False, highlight=False)
    if show_units:
        _print_units(data["units"])
        cover = data["coverage"]
        console.print(f"{cover['covered']} of {cover['layers']} weight layers covered"
                      + (f"; not traced: {', '.join(cover['missing'])}"
                         if cover["missing"] else ""), markup=False, highlight=False)


def _print_units(units: list[dict]) -> None:
    table = Table(title="pruning units (network order)")
    for col in ("#", "unit", "kind", "width", "layers", "status"):
        table.add_column(col, overflow="fold")
    for u in units:
        layers = ", ".join(u["producers"]) + (" -> " + ", ".join(u["consumers"])
                                              if u["consumers"] else "")
        width = str(u["width"]) + (f" (x{u['group_size']})" if u["group_size"] > 1 else "")
        table.add_row(str(u["uid"]), u["name"], u["kind"], width, layers,
                      f"blocked: {u['blocked']}" if u["blocked"] else "prunable")
    console.print(table)
    blocked = sum(1 for u in units if u["blocked"])
    console.print(f"{len(units)} units, {blocked} blocked")
