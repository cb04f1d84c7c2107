"""The tail every benchmark script shares: run and save, or re-print a saved run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_or_report(saved: Path | None, out: Path | None, run: Callable[[], dict],
                  report: Callable[[dict], Any]) -> dict:
    """``report`` of the run saved in ``saved``, or of a new ``run()`` written to ``out``."""
    if saved:
        data = json.loads(saved.read_text())
    else:
        data = run()
        if out:
            out.write_text(json.dumps(data, indent=1))
    report(data)
    return data
