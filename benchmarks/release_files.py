"""Release files at their published full configurations: loaded, exact, pruned by the README.

Each zoo architecture is built with its original class at its published configuration
(random weights) and saved the way its project publishes it (the rows and wrappers of
``tests/test_release_zoo.py``, which runs them at small sizes). For each file this records:

* loaded: what checkpoint detection says (architecture, scale, options);
* exact: the largest difference to the original class's output on a 24x24 [0, 255] input;
* the README command as a user runs it, in a fresh process:
  ``srprune compress FILE --ratio 0.5 --criterion l1 --out X.srp`` (plus ``--scale`` where the
  file serves several scales alike, and ``--json`` for the report): exit status, ratio
  reached, scope used, the ``warning:`` lines printed, seconds;
* whether the ``.srp`` re-opens with the reported parameter count.

The 21 files of issue 26 are marked ``issue_file`` (one per zoo architecture, the BasicSR
EDSR and bytedance's RLFN_Prune); the other rows are further wrappers of the same nets.

    .venv/bin/python benchmarks/release_files.py [--rows edsr,span] \\
        [--out benchmarks/results/release-files.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_release_zoo import max_error, releases, write_release  # noqa: E402

from srprune.models import resolve_model  # noqa: E402
from srprune.prune.engine import REACH_MARGIN  # noqa: E402

# the issue's 21 files: the first row of each zoo architecture, plus these two layouts
EXTRA_ISSUE_FILES = {"edsr-basicsr", "rlfn-prune"}
NOT_ISSUE_FILES = {"edsr-baseline-ddp", "esrgan-realesrgan", "span-safetensors",
                   "plksr-safetensors"}


def srprune_cli() -> list[str]:
    exe = Path(sys.executable).with_name("srprune")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "srprune.cli"]


def run_row(row, folder: Path, timeout: float) -> dict:
    torch.manual_seed(5)
    record: dict = {"row": row.name, "arch": row.arch, "scale": row.scale,
                    "wrapper": row.wrapper, "issue_file": row.name not in NOT_ISSUE_FILES,
                    "note": row.note}
    started = time.perf_counter()
    net, state, reference = row.build()
    record["params_original"] = sum(p.numel() for p in net.parameters())
    path = write_release(row.wrapper, state, folder, row.name)
    record["file"] = path.name
    try:
        model = resolve_model(str(path), scale=row.scale if "--scale" in row.flags else None)
        record["loaded"] = model.meta["detected"]
        record["exact_max_abs_error"] = max_error(model, reference, size=24)
    except Exception as exc:  # recorded, not raised: the table shows every row
        record["loaded"] = None
        record["load_error"] = f"{type(exc).__name__}: {exc}"
        return record
    record["load_seconds"] = round(time.perf_counter() - started, 1)
    out = folder / f"{row.name}.srp"
    command = ["compress", str(path), "--ratio", "0.5", "--criterion", "l1",
               "--out", str(out), *row.flags]
    record["command"] = "srprune " + " ".join(
        [path.name if c == str(path) else out.name if c == str(out) else c for c in command])
    started = time.perf_counter()
    try:
        done = subprocess.run([*srprune_cli(), *command, "--json"], capture_output=True,
                              text=True, timeout=timeout, cwd=folder)
    except subprocess.TimeoutExpired:
        record["compress_exit"] = "timeout"
        return record
    record["compress_seconds"] = round(time.perf_counter() - started, 1)
    record["compress_exit"] = done.returncode
    record["warnings"] = [line for line in done.stderr.splitlines()
                          if line.startswith("warning:")]
    if done.returncode != 0:
        record["error"] = [line for line in done.stderr.splitlines()
                           if line.startswith("error:")] or done.stderr.strip()[-400:]
        return record
    report = json.loads(done.stdout)
    record.update(ratio_achieved=report["ratio_achieved"], scope=report["scope"],
                  params_before=report["params_before"], params_after=report["params_after"],
                  units=report["units"])
    record["reached"] = abs(report["ratio_achieved"] - 0.5) <= REACH_MARGIN
    pruned = resolve_model(str(out))
    record["srp_reopens"] = pruned.n_params == report["params_after"]
    return record


def table(records: list[dict]) -> str:
    lines = ["| file | wrapper | loaded as | max abs err | ratio | scope | warning |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        err = r.get("exact_max_abs_error")
        ratio = r.get("ratio_achieved")
        reach = "" if ratio is None else f"{ratio:.3f}" + ("" if r.get("reached") else " (MISS)")
        if ratio is None and r.get("loaded"):
            reach = f"exit {r.get('compress_exit')}: {r.get('error')}"
        warned = "; ".join(w[len("warning: "):][:60] for w in r.get("warnings", []))
        mark = "" if r["issue_file"] else " (+)"
        lines.append(f"| {r['row']}{mark} | {r['wrapper']} | "
                     f"{r.get('loaded') or r.get('load_error')} | "
                     f"{'' if err is None else f'{err:.2g}'} | {reach} | "
                     f"{r.get('scope', '')} | {warned} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/release-files.json"))
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds per compress run")
    args = parser.parse_args()
    rows = releases(full=True)
    if args.rows:
        wanted = set(args.rows.split(","))
        rows = [r for r in rows if r.name in wanted]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            record = run_row(row, Path(tmp), args.timeout)
            records.append(record)
            print(json.dumps(record), flush=True)
    issue = [r for r in records if r["issue_file"]]
    summary = {
        "files": len(records), "issue_files": len(issue),
        "issue_files_loaded": sum(1 for r in issue if r.get("loaded")),
        "issue_files_exact": sum(1 for r in issue if r.get("exact_max_abs_error") is not None
                                 and r["exact_max_abs_error"] <= 1e-3),
        "issue_files_reached": sum(1 for r in issue if r.get("reached")),
        "reached": sum(1 for r in records if r.get("reached")),
        "scope_all": sum(1 for r in records if r.get("scope") == "all"),
    }
    result = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "torch": torch.__version__},
              "command": "srprune compress FILE --ratio 0.5 --criterion l1 --out X.srp",
              "reach_margin": REACH_MARGIN, "summary": summary, "rows": records}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(records))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
