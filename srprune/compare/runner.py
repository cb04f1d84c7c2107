"""Running a grid's pending cells: in this process, on local worker processes, or on Ray.

* ``jobs == 1``: cells run one after another in this process.
* ``jobs > 1``: each cell runs in a fresh worker process (forked from a fork server that
  imported srprune once), at most ``jobs`` at a time, each with ``threads`` torch threads
  (``jobs x threads`` never exceeds the CPUs). A worker writes its own row; a worker that
  dies (killed, out of memory, a crash in native code) leaves none, and the cell is
  recorded as failed with its exit status.
* Ray: each cell is a Ray task asking for ``threads`` CPUs (and one GPU on ``cuda``); Ray
  places them, srprune only gathers each task's row and artifact into the grid folder.

Every finished cell is written as soon as it ends (atomically), so a run stopped anywhere
keeps what was done; cells without a row (or with a failed one) run again next time.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from srprune.compare.cell import error_line, failed_row, run_cell
from srprune.compare.grid import Cell, GridSpec, cell_command
from srprune.compare.store import GridFolder
from srprune.errors import SrpruneError
from srprune.measure.roofline import available_cpus

OnDone = Callable[[Cell, dict[str, Any]], None]
OnStart = Callable[[Cell], None]


def pending(folder: GridFolder, cells: Sequence[Cell]) -> list[Cell]:
    """The cells still to run: no row, a failed row, or a missing artifact."""
    return [cell for cell in cells if not folder.finished(cell)]


def plan_threads(jobs: int, threads: int | None, backend: str) -> int:
    """Torch threads per cell: ``cpus // jobs`` locally unless given; 1 per Ray task."""
    if jobs < 1:
        raise SrpruneError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise SrpruneError(f"--threads must be at least 1, got {threads}")
    if backend == "ray":
        return threads or 1
    cpus = available_cpus()
    if threads is None:
        if jobs > cpus:
            raise SrpruneError(f"--jobs {jobs} is more than the {cpus} CPUs here; use at most "
                               f"--jobs {cpus}")
        return max(1, cpus // jobs)
    if jobs * threads > cpus:
        raise SrpruneError(f"--jobs {jobs} x --threads {threads} = {jobs * threads} threads, "
                           f"more than the {cpus} CPUs here")
    return threads


def store_cell(folder: GridFolder, spec: GridSpec, cell: Cell, row: dict[str, Any]) -> None:
    """Add the artifact path and the reproducing command, then write the row."""
    artifact = folder.artifact(cell)
    row["artifact"] = str(artifact) if row.get("status") == "ok" else None
    row["command"] = cell_command(spec, cell, folder.model_file, artifact)
    folder.write_row(cell, row)


def run_local(spec: GridSpec, folder: GridFolder, cells: Sequence[Cell], jobs: int,
              threads: int, on_start: OnStart, on_done: OnDone) -> None:
    """Run ``cells`` here (``jobs`` 1) or on ``jobs`` spawned worker processes."""
    if jobs == 1:
        for cell in cells:
            on_start(cell)
            row = run_cell(spec, cell, folder.model_file, folder.artifact(cell), threads,
                           source=str(folder.model_file))
            store_cell(folder, spec, cell, row)
            on_done(cell, row)
        return
    context = _worker_context()
    queue = list(cells)
    running: dict[Any, tuple[Any, Cell]] = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                cell = queue.pop(0)
                folder.cell_file(cell).unlink(missing_ok=True)  # a stale failed row
                process = context.Process(
                    target=_worker, args=(spec.to_json(), cell.as_dict(), str(folder.root),
                                          threads), name=f"srprune-compare-{cell.key}")
                process.start()
                running[process.sentinel] = (process, cell)
                on_start(cell)
            for sentinel in wait(list(running)):
                process, cell = running.pop(sentinel)
                process.join()
                row = folder.read_row(cell)
                if row is None:  # the worker died before it could write its row
                    row = failed_row(cell, _death(process.exitcode))
                    store_cell(folder, spec, cell, row)
                on_done(cell, row)
    finally:
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.join()


def _worker_context() -> Any:
    """Workers forked from a fork server that has imported srprune and torch once (fast,
    and never forked from a process whose thread pools have run); spawn where there is no
    fork server (Windows)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["srprune.compare.preload"])
    return context


def _worker(spec_json: dict[str, Any], cell_dict: dict[str, Any], root: str,
            threads: int) -> None:
    """A local worker process: one cell, its row written by the worker itself."""
    spec, cell, folder = GridSpec.from_json(spec_json), Cell(**cell_dict), GridFolder(root)
    row = run_cell(spec, cell, folder.model_file, folder.artifact(cell), threads,
                   source=str(folder.model_file))
    store_cell(folder, spec, cell, row)


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        return f"the worker process was killed by signal {-code}"
    return f"the worker process died (exit code {code}) before writing its result"


# ------------------------------------------------------------------ Ray


def check_ray() -> None:
    """Ray must be importable for ``--backend ray`` (it is an optional extra)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SrpruneError("--backend ray needs Ray: pip install 'srprune[compare]' "
                           "(or pip install 'ray>=2.9')") from None


def run_ray(spec: GridSpec, folder: GridFolder, cells: Sequence[Cell], threads: int,
            address: str | None, on_start: OnStart, on_done: OnDone) -> None:
    """Each cell as a Ray task asking for ``threads`` CPUs (and a GPU on cuda); rows and
    artifacts come back to this process and are written into the grid folder.

    An already initialised Ray (``ray.init`` in the caller) is used as it is; otherwise
    this connects to ``address`` (None: a local Ray started here and stopped afterwards).
    The workers need srprune installed and ``--data``/``--eval`` at the same paths.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a new local instance"
            raise SrpruneError(f"cannot start or reach Ray at {where}: "
                               f"{error_line(exc)}") from None
    try:
        task = ray.remote(num_cpus=threads, num_gpus=1 if spec.device == "cuda" else 0,
                          max_retries=0)(_ray_cell)
        model = ray.put(folder.model_file.read_bytes())
        refs = {}
        for cell in cells:
            folder.cell_file(cell).unlink(missing_ok=True)
            refs[task.remote(spec.to_json(), cell.as_dict(), model, threads,
                             str(folder.model_file))] = cell
            on_start(cell)
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                cell = refs.pop(ref)
                try:
                    row, artifact = ray.get(ref)
                except Exception as exc:  # the task's process died, or Ray lost it
                    row, artifact = failed_row(cell, f"ray task failed: {error_line(exc)}"), None
                if artifact is not None:
                    folder.write_bytes(folder.artifact(cell), artifact)
                store_cell(folder, spec, cell, row)
                on_done(cell, row)
    finally:
        if started:
            ray.shutdown()


def _ray_cell(spec_json: dict[str, Any], cell_dict: dict[str, Any], model: bytes,
              threads: int, source: str) -> tuple[dict[str, Any], bytes | None]:
    """A Ray task: one cell in a scratch folder; its row and artifact bytes go back."""
    spec, cell = GridSpec.from_json(spec_json), Cell(**cell_dict)
    with tempfile.TemporaryDirectory(prefix="srprune-compare-") as tmp:
        model_file, artifact = Path(tmp) / "model.srp", Path(tmp) / f"{cell.key}.srp"
        model_file.write_bytes(model)
        row = run_cell(spec, cell, model_file, artifact, threads, source=source)
        data = artifact.read_bytes() if row["status"] == "ok" else None
    return row, data
