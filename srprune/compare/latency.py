"""The grid's one latency run: every artifact and the unpruned model, interleaved on ORT.

Latencies are only comparable when taken together, so all models are timed in one
:func:`srprune.measure.bench.benchmark` run (A B C ... A B C ...) with an SGEMM timed
alongside for roofline efficiency. The run is kept in ``bench.json`` with a fingerprint of
what was timed (each artifact's size and modification time, the settings); a later run of
the grid reuses it when nothing changed and times everything again when anything did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srprune.compare.cell import error_line
from srprune.compare.store import GridFolder, read_json
from srprune.measure.bench import benchmark
from srprune.models.artifacts import load_artifact

UNPRUNED = "unpruned"


def fingerprint(models: Sequence[tuple[str, Path]], input_size: Sequence[int], threads: int,
                runs: int, warmup: int) -> dict[str, Any]:
    files = []
    for label, path in models:
        stat = path.stat()
        files.append([label, stat.st_size, stat.st_mtime_ns])
    return {"files": files, "input_size": list(input_size), "threads": threads, "runs": runs,
            "warmup": warmup}


def bench_grid(folder: GridFolder, rows: Sequence[dict[str, Any]], input_size: Sequence[int],
               threads: int, runs: int, warmup: int,
               on_step: Callable[[str], None] | None = None,
               trusted_imports: Sequence[str] = ()) -> dict[str, Any]:
    """``{"records": {label: BenchRecord dict}, "error": None | str, "reused": bool}``.

    ``label`` is a cell's key, or ``unpruned``. A failing benchmark (an export the model
    does not survive) is recorded as ``error`` instead of ending the grid. Artifacts may
    rebuild only from ``trusted_imports`` (the user's own model's import path).
    """
    models = [(UNPRUNED, folder.model_file)] + [
        (row["key"], Path(row["artifact"])) for row in rows
        if row.get("status") == "ok" and row.get("artifact")]
    stamp = fingerprint(models, input_size, threads, runs, warmup)
    stored = read_json(folder.bench_file)
    if isinstance(stored, dict) and stored.get("fingerprint") == stamp and not stored["error"]:
        return {**stored, "reused": True}
    try:
        loaded = [(label, load_artifact(path, trust_import=tuple(trusted_imports)))
                  for label, path in models]
        records = benchmark(loaded, (int(input_size[0]), int(input_size[1])), threads=threads,
                            runs=runs, warmup=warmup, roofline=True, on_step=on_step)
        result = {"records": {rec.model: rec.as_dict() for rec in records}, "error": None}
    except Exception as exc:  # reported beside the results; the grid itself is kept
        result = {"records": {}, "error": error_line(exc)}
    result["fingerprint"] = stamp
    folder.write_json(folder.bench_file, result)
    return {**result, "reused": False}
