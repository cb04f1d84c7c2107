"""A comparison grid: its settings, its cells, and the command line that reproduces a cell.

A grid is one model compressed by every criterion x strategy x ratio x seed, each cell with the
same calibration and fine-tuning budget. Everything that changes a cell's result is in
:meth:`GridSpec.settings`; the four axes only say which cells exist. A grid folder may gain
cells later (more seeds, another criterion) under the same settings, never other settings.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srprune.config import FineTune, RunConfig, rate_text
from srprune.errors import SrpruneError
from srprune.registry import CRITERIA, STRATEGIES

BUILTIN = "builtin"
# run settings that belong to one cell (its coordinates, its output), not to the grid
PER_CELL = ("ratio", "criterion", "strategy", "criterion_options", "strategy_options", "seed",
            "out", "force")


@dataclass(frozen=True, order=True)
class Cell:
    """One point of the grid."""

    criterion: str
    strategy: str
    ratio: float
    seed: int

    @property
    def key(self) -> str:
        """A file-safe, unique name: ``l1__uniform__r0.5__s0``."""
        parts = (self.criterion, self.strategy, f"r{self.ratio:g}", f"s{self.seed}")
        return "__".join(re.sub(r"[^A-Za-z0-9.+-]+", "_", p) for p in parts)

    @property
    def method(self) -> str:
        """What the tables call it: the criterion, with a strategy other than uniform."""
        return method_label(self.criterion, self.strategy)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def method_label(criterion: str, strategy: str) -> str:
    return criterion if strategy == "uniform" else f"{criterion}+{strategy}"


@dataclass(frozen=True)
class GridSpec:
    """Everything ``srprune compare`` was asked: the model, the axes and the shared budget."""

    model: str
    criteria: tuple[str, ...]
    strategies: tuple[str, ...]
    ratios: tuple[float, ...]
    seeds: tuple[int, ...]
    scale: int | None = None
    weights: str | None = None
    arch_options: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    lr_dir: str | None = None
    evals: tuple[str, ...] = (BUILTIN,)
    scope: str = "auto"
    preset: str = "default"
    calib_batches: int | None = None
    calib_batch: int | None = None
    calib_patch: int | None = None
    finetune_steps: int = 0
    finetune_lr: float | str = FineTune.lr
    finetune_batch: int = 16
    finetune_patch: int = 32
    distill_weight: float = FineTune.distill_weight
    distill_features: float = FineTune.distill_features
    dual_weight: float = 0.1
    input_size: tuple[int, int] = (96, 96)
    device: str = "cpu"
    eval_pruned: bool = False  # also score each cell right after pruning (first set)
    # --trust-import, and the import paths the model's artifacts may rebuild from (set by
    # compare.run.prepare once the user's trust is known; never read from the grid folder)
    trust_import: bool = False
    trusted_imports: tuple[str, ...] = ()

    def cells(self) -> list[Cell]:
        """Every cell, in a stable order: ratio, strategy, criterion, seed."""
        return [Cell(c, s, r, seed) for r in self.ratios for s in self.strategies
                for c in self.criteria for seed in self.seeds]

    def settings(self) -> dict[str, Any]:
        """What a cell's result depends on besides its own coordinates (JSON-ready).

        Folders are compared by their absolute paths, so a grid resumes from any folder.
        ``run`` holds every resolved run setting (defaults included), so a grid made by a
        version of srprune with other defaults is not resumed as if it were the same.
        """
        probe = Cell(self.criteria[0], self.strategies[0], self.ratios[0], self.seeds[0])
        run = RunConfig.build(**self.run_settings(probe, None)).settings()
        run = {k: v for k, v in run.items() if k not in PER_CELL and k not in ("data", "lr_dir")}
        return {
            "model": self.model, "scale": self.scale, "weights": _abs(self.weights),
            "arch_options": dict(sorted(self.arch_options.items())), "data": _abs(self.data),
            "lr_dir": _abs(self.lr_dir), "evals": [_abs(e) for e in self.evals],
            "scope": self.scope, "preset": self.preset, "calib_batches": self.calib_batches,
            "calib_batch": self.calib_batch, "calib_patch": self.calib_patch,
            "finetune_steps": self.finetune_steps, "finetune_lr": self.finetune_lr,
            "finetune_batch": self.finetune_batch, "finetune_patch": self.finetune_patch,
            "dual_weight": self.dual_weight, "input_size": list(self.input_size),
            "device": self.device, "eval_pruned": self.eval_pruned,
            # cells keep the strategies' default widths: on ORT's NCHWc block ("auto"), not
            # exact as before, so a grid of exact-width cells is not resumed as this one
            "round_to": "auto",
            "run": json.loads(json.dumps(run)),
        }

    def run_settings(self, cell: Cell, out: str | Path | None) -> dict[str, Any]:
        """The flat settings of :meth:`srprune.config.RunConfig.build` for ``cell``."""
        return {
            "ratio": cell.ratio, "criterion": cell.criterion, "strategy": cell.strategy,
            "scope": self.scope, "data": self.data, "lr_dir": self.lr_dir,
            "preset": self.preset, "calib_batches": self.calib_batches,
            "calib_batch": self.calib_batch, "calib_patch": self.calib_patch,
            "finetune_steps": self.finetune_steps, "finetune_lr": self.finetune_lr,
            "finetune_batch": self.finetune_batch, "finetune_patch": self.finetune_patch,
            "distill_weight": self.distill_weight, "distill_features": self.distill_features,
            "dual_weight": self.dual_weight, "input_size": self.input_size,
            "seed": cell.seed, "device": self.device,
            "out": None if out is None else str(out), "force": out is not None,
        }

    def eval_names(self) -> list[str]:
        """Short, distinct names of the evaluation sets (folder names; ``builtin``)."""
        names: list[str] = []
        for path in self.evals:
            base = BUILTIN if path == BUILTIN else (Path(path).name or str(path))
            name, n = base, 2
            while name in names:
                name, n = f"{base}-{n}", n + 1
            names.append(name)
        return names

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        for key in ("criteria", "strategies", "ratios", "seeds", "evals", "trusted_imports"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GridSpec:
        data = dict(data)
        for key in ("criteria", "strategies", "ratios", "seeds", "evals", "input_size",
                    "trusted_imports"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


def _abs(path: str | None) -> str | None:
    if path is None or path == BUILTIN:
        return path
    return str(Path(path).resolve())


# ------------------------------------------------------------------ parsing the axes


def parse_names(text: str, flag: str) -> tuple[str, ...]:
    """``"l1, random"`` -> ``("l1", "random")``: non-empty, no name twice."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise SrpruneError(f"{flag} is empty; give a comma-separated list")
    _no_repeats(names, flag)
    return names


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"0.3,0.5"`` -> ``(0.3, 0.5)``; each a number in [0, 1), none twice."""
    ratios = []
    for part in parse_names(text, "--ratios"):
        try:
            value = float(part)
        except ValueError:
            raise SrpruneError(f"--ratios: {part!r} is not a number") from None
        if not math.isfinite(value) or not 0.0 <= value < 1.0:
            raise SrpruneError(f"--ratios: {part} is outside [0, 1): a ratio is the fraction "
                               "of parameters to remove")
        ratios.append(value)
    _no_repeats(tuple(ratios), "--ratios")
    return tuple(ratios)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; integers >= 0, none twice."""
    seeds = []
    for part in parse_names(text, "--seeds"):
        try:
            value = int(part)
        except ValueError:
            raise SrpruneError(f"--seeds: {part!r} is not an integer") from None
        if value < 0:
            raise SrpruneError(f"--seeds: {value} is negative")
        seeds.append(value)
    _no_repeats(tuple(seeds), "--seeds")
    return tuple(seeds)


def _no_repeats(values: tuple, flag: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise SrpruneError(f"{flag} lists {value} twice")
        seen.add(value)


def check_axes(spec: GridSpec) -> None:
    """Known criteria and strategies, strategies that hit a ratio, data where it is needed."""
    for name in spec.criteria:
        criterion = CRITERIA.get(name)  # unknown: one line with the known names
        if getattr(criterion, "needs_data", False) and spec.data is None:
            raise SrpruneError(f"criterion '{name}' needs calibration images: pass --data DIR")
    for name in spec.strategies:
        strategy = STRATEGIES.get(name)
        if not getattr(strategy, "uses_ratio", True):
            raise SrpruneError(f"strategy '{name}' does not take a ratio (its widths come from "
                               "elsewhere), so it cannot be compared across --ratios")
        if getattr(strategy, "needs_data", False) and spec.data is None:
            raise SrpruneError(f"strategy '{name}' needs calibration images: pass --data DIR")
    if spec.finetune_steps and spec.data is None:
        raise SrpruneError("fine-tuning needs training images: pass --data DIR "
                           "(or --finetune-steps 0)")


# ------------------------------------------------------------------ reproducing a cell


def cell_command(spec: GridSpec, cell: Cell, base_model: str | Path,
                 artifact: str | Path) -> str:
    """The shell command that redoes ``cell`` alone from the grid's frozen model file.

    ``srprune compress`` writes the same artifact and reports PSNR/SSIM on the first
    evaluation set; ``srprune eval`` scores it on each further set.
    """
    q = shlex.quote
    args = ["srprune", "compress", str(base_model), "--ratio", f"{cell.ratio:g}",
            "--criterion", cell.criterion, "--strategy", cell.strategy, "--scope", spec.scope,
            "--preset", spec.preset, "--seed", str(cell.seed), "--device", spec.device]
    if spec.trusted_imports:  # the frozen model file rebuilds from the user's import path
        args += ["--trust-import"]
    if spec.data is not None:
        args += ["--data", spec.data]
    if spec.lr_dir is not None:
        args += ["--lr-dir", spec.lr_dir]
    for flag, value in (("--calib-batches", spec.calib_batches),
                        ("--calib-batch", spec.calib_batch),
                        ("--calib-patch", spec.calib_patch)):
        if value is not None:
            args += [flag, str(value)]
    args += ["--finetune-steps", str(spec.finetune_steps)]
    if spec.finetune_steps:
        args += ["--finetune-lr", rate_text(spec.finetune_lr),
                 "--finetune-batch", str(spec.finetune_batch),
                 "--finetune-patch", str(spec.finetune_patch)]
    args += ["--distill-weight", f"{spec.distill_weight:g}",
             "--distill-features", f"{spec.distill_features:g}",
             "--dual-weight", f"{spec.dual_weight:g}", "--eval", spec.evals[0],
             "--out", str(artifact), "--force"]
    commands = [" ".join(q(a) for a in args)]
    for extra in spec.evals[1:]:
        commands.append(" ".join(q(a) for a in ("srprune", "eval", str(artifact), "--data",
                                                 extra, "--device", spec.device)))
    return " && ".join(commands)
