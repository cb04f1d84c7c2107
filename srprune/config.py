"""One run configuration: typed settings built once from CLI flags, Python keywords or a preset.

Every setting has one flat name, used alike by ``srprune compress --calib-batches 8`` and
``srprune.compress(..., calib_batches=8)``. :meth:`RunConfig.build` fills the unset ones
(``None``) from a preset or the defaults, validates them all (one-line ``SrpruneError``
naming the setting and its flag), and groups them by job: calibration, selection,
fine-tuning, cost input and output. Explicit values always win over the preset.

Presets (``fast``, ``default``, ``thorough``) set the calibration budget, plus options for
any criterion or strategy class that declares a ``preset_group`` ("greedy": rounds, SGD
steps and batches of gradient-selection criteria such as ``dr`` and ``dcp``; "search":
steps of search strategies such as ``dr-search``). ``fast`` is for demos; ``default`` keeps
DR pruning of DRN-S x4 within minutes on 2 CPU cores; ``thorough`` spends more for quality.
Without a preset, calibration is :data:`API_CALIBRATION` and the classes keep their own
option defaults (the Python API's behaviour; the CLI always applies a preset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from srprune.errors import SrpruneError
from srprune.registry import CRITERIA, STRATEGIES

PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"calib_batches": 2, "calib_batch": 4, "calib_patch": 16,
             "greedy": {"rounds": 1, "sgd_steps": 1, "max_batches": 2},
             "search": {"steps": 10}},
    "default": {"calib_batches": 8, "calib_batch": 4, "calib_patch": 16,
                "greedy": {"rounds": 2, "sgd_steps": 2, "max_batches": 4},
                "search": {"steps": 60}},
    "thorough": {"calib_batches": 16, "calib_batch": 8, "calib_patch": 24,
                 "greedy": {"rounds": 4, "sgd_steps": 4, "max_batches": 8},
                 "search": {"steps": 200}},
}
API_CALIBRATION = {"calib_batches": 4, "calib_batch": 8, "calib_patch": 24}
# auto: block-inner channels, widened to trunks (all) when those alone cannot reach --ratio
SCOPES = ("auto", "internal", "all")
KEEP = ("best", "last")
#: default weight of the L1 to the unpruned model's output when fine-tuning a pruned model
DISTILL_WEIGHT = 1.0
#: ``criterion="auto"`` (the default): a criterion that sees the data when there is data (``cp``
#: refits the kept channels by least squares), else ``l1``. On the SPAN authors' x4 weights
#: ``l1`` at half the channels fell to 11.8 dB where ``cp`` kept 29.8 (unpruned 30.8;
#: benchmarks/RESULTS.md "Real trained weights"): a data-blind ranking is not safe on real nets.
AUTO_CRITERION = {"with_data": "cp", "without_data": "l1"}
#: ``finetune_lr="auto"`` (the default): these rates in turn; one is dropped for the next when
#: the first validation of the run scores below the pruned model (see ``srprune.api``).
#: 5e-4 suits a weakly trained net (drn-t); a converged one (SPAN x4) needs about 1e-5.
AUTO_LEARNING_RATES = (5e-4, 1e-4, 2e-5, 4e-6)


@dataclass(frozen=True)
class Calibration:
    """Calibration data for data-driven criteria and strategies: ``batches`` x ``batch``
    aligned LR/HR patches of ``patch`` x ``patch`` LR pixels from ``data`` (None: no data).
    ``lr_dir``: LR files ``X{f}/<name>x{f}.png`` for the HR images in ``data`` (None: the
    layout of ``data`` decides; see :func:`srprune.data.images.open_image_set`)."""

    data: str | None = None
    lr_dir: str | None = None
    batches: int = API_CALIBRATION["calib_batches"]
    batch: int = API_CALIBRATION["calib_batch"]
    patch: int = API_CALIBRATION["calib_patch"]


@dataclass(frozen=True)
class Selection:
    """What to remove: the ratio, who decides how many channels per unit and which ones."""

    ratio: float = 0.0
    criterion: str = "l1"  # RunConfig.build resolves "auto" (its default): AUTO_CRITERION
    strategy: str = "uniform"
    scope: str = "auto"
    criterion_options: dict[str, Any] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    protect: tuple[str, ...] = ()
    compensate: bool = True  # with data: biases absorb removed means (prune.compensation)


def rate_text(rate: float | str) -> str:
    """A learning rate as flags and reports write it: ``5e-04`` -> ``0.0005``, ``auto``."""
    return rate if isinstance(rate, str) else f"{rate:g}"


@dataclass(frozen=True)
class FineTune:
    """Dual-regression fine-tuning after pruning (``steps`` 0: none).

    The learning rate warms up linearly over the first 5 % of the steps, then decays by a
    cosine. ``lr`` "auto" starts at the first of :data:`AUTO_LEARNING_RATES` and, when the
    run's first validation scores below the pruned model, restores the pruned weights and
    starts again at the next (a converged model is wrecked by a rate a weak one needs).
    Every ``eval_every`` steps (0: a tenth of the run) the model is scored on fixed
    validation patches; ``keep`` "best" returns the best-scoring weights, the pruned ones
    when no step beat them ("last": the weights of the last step). ``distill_weight`` and
    ``distill_features`` weigh the L1 to the unpruned model's SR output and to its features
    at unit consumers (0: off; see ``srprune.training.distill``). Output distillation is on
    by default (weight :data:`DISTILL_WEIGHT`): on drn-t x4 it raised the fine-tuned PSNR in
    every seed of the A/B in ``benchmarks/distill_ab.py``. ``bf16`` (autocast) and
    ``channels_last`` are for CUDA devices. ``batch`` is the global batch under torchrun.
    """

    steps: int = 0
    lr: float | str = "auto"  # a rate, or "auto": AUTO_LEARNING_RATES, backing off on validation
    batch: int = 16
    patch: int = 32
    keep: str = "best"
    eval_every: int = 0
    distill_weight: float = DISTILL_WEIGHT
    distill_features: float = 0.0
    bf16: bool = False
    channels_last: bool = False


@dataclass(frozen=True)
class CostInput:
    """The LR input size (H, W) at which MACs are counted."""

    input_size: tuple[int, int] = (96, 96)


@dataclass(frozen=True)
class Output:
    """Where the artifact goes (None: not written) and whether it may replace a file."""

    path: str | None = None
    force: bool = False


# flat setting name -> (group, field); the group "" is RunConfig itself
SETTINGS: dict[str, tuple[str, str]] = {
    "ratio": ("selection", "ratio"), "criterion": ("selection", "criterion"),
    "strategy": ("selection", "strategy"), "scope": ("selection", "scope"),
    "criterion_options": ("selection", "criterion_options"),
    "strategy_options": ("selection", "strategy_options"), "protect": ("selection", "protect"),
    "compensate": ("selection", "compensate"),
    "data": ("calibration", "data"), "lr_dir": ("calibration", "lr_dir"),
    "calib_batches": ("calibration", "batches"),
    "calib_batch": ("calibration", "batch"), "calib_patch": ("calibration", "patch"),
    "finetune_steps": ("finetune", "steps"), "finetune_lr": ("finetune", "lr"),
    "finetune_batch": ("finetune", "batch"), "finetune_patch": ("finetune", "patch"),
    "finetune_keep": ("finetune", "keep"), "finetune_eval_every": ("finetune", "eval_every"),
    "distill_weight": ("finetune", "distill_weight"),
    "distill_features": ("finetune", "distill_features"),
    "bf16": ("finetune", "bf16"), "channels_last": ("finetune", "channels_last"),
    "input_size": ("cost", "input_size"), "out": ("output", "path"),
    "force": ("output", "force"), "seed": ("", "seed"), "device": ("", "device"),
    "dual_weight": ("", "dual_weight"), "evaluate": ("", "evaluate"), "preset": ("", "preset"),
}


@dataclass(frozen=True)
class RunConfig:
    """All settings of one compression run, grouped by job (see the module docstring)."""

    selection: Selection = field(default_factory=Selection)
    calibration: Calibration = field(default_factory=Calibration)
    finetune: FineTune = field(default_factory=FineTune)
    cost: CostInput = field(default_factory=CostInput)
    output: Output = field(default_factory=Output)
    seed: int = 0
    device: str = "cpu"
    dual_weight: float = 0.1
    evaluate: str | None = None
    preset: str | None = None

    @classmethod
    def build(cls, **settings: Any) -> RunConfig:
        """A validated config from flat settings; ``None`` values mean "unset".

        Unset calibration sizes and criterion/strategy options come from ``preset`` (when
        given), then from the defaults. Unknown names raise ``TypeError`` like a function.
        """
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise TypeError(f"unknown setting {unknown[0]!r}; known: {', '.join(SETTINGS)}")
        given = {k: v for k, v in settings.items() if v is not None}
        preset_name = given.get("preset")
        budget = preset(preset_name) if preset_name is not None else API_CALIBRATION
        for key in API_CALIBRATION:
            given.setdefault(key, budget[key])
        if given.get("criterion", "auto") == "auto":
            given["criterion"] = AUTO_CRITERION[
                "with_data" if given.get("data") is not None else "without_data"]
        criterion = given["criterion"]
        strategy = given.get("strategy", Selection.strategy)
        given["criterion_options"] = {
            **preset_options(preset_name, CRITERIA.get(criterion)),
            **dict(given.get("criterion_options") or {})}
        given["strategy_options"] = {
            **preset_options(preset_name, STRATEGIES.get(strategy)),
            **dict(given.get("strategy_options") or {})}
        _validate(given)
        groups: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for key, value in given.items():
            group, name = SETTINGS[key]
            (groups.setdefault(group, {}) if group else top)[name] = value
        return cls(**{group: _GROUPS[group](**values) for group, values in groups.items()},
                   **top)

    def settings(self) -> dict[str, Any]:
        """The flat settings (the inverse of :meth:`build`, preset already applied)."""
        flat = {}
        for key, (group, name) in SETTINGS.items():
            flat[key] = getattr(getattr(self, group) if group else self, name)
        return flat


_GROUPS = {"selection": Selection, "calibration": Calibration, "finetune": FineTune,
           "cost": CostInput, "output": Output}


def preset(name: str) -> dict[str, Any]:
    """A preset's budget by name (one-line error for unknown names)."""
    if name not in PRESETS:
        raise SrpruneError(f"unknown preset '{name}'; use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_options(name: str | None, cls: type) -> dict[str, Any]:
    """The options a preset sets for a criterion or strategy class (by its ``preset_group``)."""
    group = getattr(cls, "preset_group", None)
    if name is None or group is None:
        return {}
    return dict(preset(name).get(group, {}))


def _flag(key: str) -> str:
    return f"{key} (--{key.replace('_', '-')})"


def _check_int(given: dict[str, Any], key: str, minimum: int) -> None:
    value = given.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SrpruneError(f"{_flag(key)} must be an integer >= {minimum}, got {value!r}")


def _check_number(given: dict[str, Any], key: str, low: float, high: float = math.inf,
                  open_low: bool = False, open_high: bool = False) -> None:
    value = given.get(key)
    if value is None:
        return
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value)
          and (value > low if open_low else value >= low)
          and (value < high if open_high else value <= high))
    if not ok:
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise SrpruneError(f"{_flag(key)} must be a finite number in {lo}{low}, {high}{hi}, "
                           f"got {value!r}")


def _validate(given: dict[str, Any]) -> None:
    ratio = given.get("ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                              or not 0.0 <= ratio < 1.0):
        raise SrpruneError(f"ratio {ratio} is outside [0, 1): it is the fraction of parameters "
                           "to remove")
    for key in ("calib_batches", "calib_batch", "calib_patch", "finetune_batch",
                "finetune_patch"):
        _check_int(given, key, 1)
    _check_int(given, "finetune_steps", 0)
    _check_int(given, "finetune_eval_every", 0)
    if given.get("lr_dir") is not None and given.get("data") is None:
        raise SrpruneError("--lr-dir needs --data (the HR folder its LR files belong to)")
    if given.get("finetune_keep") not in (None, *KEEP):
        raise SrpruneError(f"finetune_keep (--finetune-keep) must be one of {', '.join(KEEP)}, "
                           f"got {given['finetune_keep']!r}")
    _check_int(given, "seed", 0)
    if given.get("finetune_lr") != "auto":
        _check_number(given, "finetune_lr", 0.0, open_low=True)
    _check_number(given, "dual_weight", 0.0)
    _check_number(given, "distill_weight", 0.0)
    _check_number(given, "distill_features", 0.0)
    if "compensate" in given and not isinstance(given["compensate"], bool):
        raise SrpruneError(f"{_flag('compensate')} must be true or false, "
                           f"got {given['compensate']!r}")
    for key in ("bf16", "channels_last"):
        if key in given and not isinstance(given[key], bool):
            raise SrpruneError(f"{_flag(key)} must be true or false, got {given[key]!r}")
        if given.get(key) and not str(given.get("device", "cpu")).startswith("cuda"):
            raise SrpruneError(f"{_flag(key)} is for CUDA devices; this run is on "
                               f"{given.get('device', 'cpu')} (add --device cuda on a machine "
                               "with a GPU, or drop the flag)")
    scope = given.get("scope")
    if scope is not None and scope not in SCOPES:
        raise SrpruneError(f"unknown scope '{scope}'; use one of {', '.join(SCOPES)}")
    size = given.get("input_size")
    if size is not None:
        if len(tuple(size)) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                        for v in size):
            raise SrpruneError(f"input_size (--input-size) must be two positive integers H W, "
                               f"got {size!r}")
        given["input_size"] = tuple(size)
    if "protect" in given:
        given["protect"] = tuple(given["protect"])
    for key in ("data", "lr_dir", "evaluate", "out"):
        if key in given:
            given[key] = str(given[key])
