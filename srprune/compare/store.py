"""The files of a grid folder: the stored spec, the frozen model, one JSON per cell.

Layout of ``--out``::

    grid.json            settings, model identity, every cell asked for so far, each run's
                         command line
    model.srp            the model under test, frozen once (every cell starts from it)
    reference.json       the unpruned model's quality on each evaluation set
    cells/<key>.json     one finished (or failed) cell
    artifacts/<key>.srp  its pruned model
    bench.json           the interleaved ORT benchmark of all artifacts
    results.json, results.csv, table.md, *.png, report.html   the reports

Every file is written atomically (temporary file + rename), so a killed run leaves finished
cells whole and nothing half-written: a cell without its JSON is simply redone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from srprune.compare.grid import Cell, GridSpec
from srprune.errors import SrpruneError
from srprune.io.checkpoint import write_atomic

GRID_FORMAT = "srprune-compare-grid"
GRID_VERSION = 1


class GridFolder:
    """One ``--out`` folder (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.grid_file = self.root / "grid.json"
        self.model_file = self.root / "model.srp"
        self.reference_file = self.root / "reference.json"
        self.bench_file = self.root / "bench.json"
        self.cells_dir = self.root / "cells"
        self.artifacts_dir = self.root / "artifacts"

    # -- checks before any work ------------------------------------------------------------

    def stored(self) -> dict[str, Any] | None:
        """The stored grid, None for a new or empty folder; a foreign folder is refused."""
        if self.root.exists() and not self.root.is_dir():
            raise SrpruneError(f"--out {self.root} is a file, not a folder")
        if not self.root.exists():
            return None
        if not self.grid_file.is_file():
            if any(self.root.iterdir()):
                raise SrpruneError(f"--out {self.root} is not empty and holds no compare grid "
                                   "(no grid.json); give a new or empty folder")
            return None
        try:
            data = json.loads(self.grid_file.read_text())
        except (OSError, ValueError) as exc:
            raise SrpruneError(f"cannot read {self.grid_file} ({exc}); it is not a compare "
                               "grid this version can resume") from None
        if not isinstance(data, dict) or data.get("format") != GRID_FORMAT:
            raise SrpruneError(f"{self.grid_file} is not an srprune compare grid")
        return data

    def check_same_grid(self, spec: GridSpec, identity: dict[str, Any]) -> dict[str, Any] | None:
        """Refuse a folder that holds another grid: other model, weights or settings."""
        stored = self.stored()
        if stored is None:
            return None
        mine = {"model": identity, "settings": spec.settings()}
        for part in ("model", "settings"):
            theirs = stored.get(part, {})
            for key in sorted(set(theirs) | set(mine[part])):
                if _json(theirs.get(key)) != _json(mine[part].get(key)):
                    raise SrpruneError(
                        f"--out {self.root} holds another grid: {part} {key} is "
                        f"{_show(theirs.get(key))} there, {_show(mine[part].get(key))} here; "
                        "give another --out (or the same settings to resume it)")
        return stored

    # -- writing ---------------------------------------------------------------------------

    def open(self, spec: GridSpec, identity: dict[str, Any], stored: dict[str, Any] | None,
             cells: Iterable[Cell], command: str, started: str) -> list[Cell]:
        """Create the folder and record the grid and this run's command; returns every cell
        asked for so far (earlier runs' cells first, then the new ones)."""
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            self.artifacts_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise SrpruneError(f"cannot create --out {self.root}: "
                               f"{exc.strerror or exc}") from None
        known = [Cell(**c) for c in (stored or {}).get("cells", [])]
        all_cells = known + [c for c in cells if c not in known]
        runs = [*(stored or {}).get("runs", []), {"command": command, "started": started}]
        self.write_json(self.grid_file, {
            "format": GRID_FORMAT, "version": GRID_VERSION, "model": identity,
            "settings": spec.settings(), "spec": spec.to_json(),
            "cells": [c.as_dict() for c in all_cells], "runs": runs})
        return all_cells

    def write_json(self, path: Path, data: Any) -> None:
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"),
                     force=True)

    def write_text(self, name: str, text: str) -> Path:
        return write_atomic(self.root / name, lambda tmp: tmp.write_text(text), force=True)

    def write_bytes(self, path: Path, data: bytes) -> Path:
        return write_atomic(path, lambda tmp: tmp.write_bytes(data), force=True)

    # -- cells -----------------------------------------------------------------------------

    def cell_file(self, cell: Cell) -> Path:
        return self.cells_dir / f"{cell.key}.json"

    def artifact(self, cell: Cell) -> Path:
        return self.artifacts_dir / f"{cell.key}.srp"

    def read_row(self, cell: Cell) -> dict[str, Any] | None:
        """The stored row of ``cell`` (None when it never finished or its file is damaged)."""
        return read_json(self.cell_file(cell))

    def finished(self, cell: Cell) -> bool:
        """A cell is kept when its row says ok and its artifact is there."""
        row = self.read_row(cell)
        return bool(row and row.get("status") == "ok" and self.artifact(cell).is_file())

    def write_row(self, cell: Cell, row: dict[str, Any]) -> None:
        self.write_json(self.cell_file(cell), row)


def read_json(path: Path) -> Any:
    """A JSON file's content, None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
