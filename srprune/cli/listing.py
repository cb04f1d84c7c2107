"""``srprune list models|criteria|strategies``."""

from __future__ import annotations

import click
from rich.table import Table

from srprune.cli.common import console, json_option, print_json


def _rows(kind: str) -> list[dict]:
    from srprune.registry import CRITERIA, MODELS, STRATEGIES

    registry = {"models": MODELS, "criteria": CRITERIA, "strategies": STRATEGIES}[kind]
    rows = []
    for name, obj in registry.items().items():
        row = {"name": name, "source": registry.source(name)}
        if kind == "models":
            row["scales"] = obj.scales
            row["description"] = obj.description
            row["pretrained"] = [s for s in obj.scales if obj.default_weights(s) is not None]
        else:
            row["kind"] = getattr(obj, "kind", "")
            doc = (obj.__doc__ or "").strip().splitlines()
            row["description"] = doc[0] if doc else ""
        rows.append(row)
    return rows


@click.command("list")
@click.argument("kind", type=click.Choice(["models", "criteria", "strategies"]))
@json_option
def list_cmd(kind: str, as_json: bool) -> None:
    """List registered models, criteria or search strategies (built-ins and plugins)."""
    rows = _rows(kind)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"srprune {kind}")
    columns = [c for c in rows[0] if c != "source"] if rows else ["name"]
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[", ".join(map(str, v)) if isinstance(v, list) else str(v)
                        for k, v in row.items() if k != "source"])
    console.print(table)
