"""Shared CLI pieces: error reporting, common options, JSON output, model loading."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from srprune.errors import InternalError, SrpruneError

console = Console()
err_console = Console(stderr=True)


BUG_REPORT = "please report it with the command you ran"


class SrpruneGroup(click.Group):
    """Every way a command can fail ends as one stderr line and a documented exit code.

    ``SrpruneError`` (bad input): ``error: ...``, exit 2; click's own usage errors too.
    ``Interrupted``/Ctrl-C: ``error: interrupted ...``, exit 130. ``InternalError``: ``internal
    error: ... (please report it)``, exit 1.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        warnings.formatwarning = _warning_line
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            _fail("interrupted", 130)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `srprune`: the help
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
            sys.exit(0)
        except click.ClickException as exc:  # usage errors: one line, exit 2
            _fail(_one_line(exc.format_message()), 2)

    def invoke(self, ctx: click.Context) -> Any:
        baseline = _peak_rss()
        try:
            return super().invoke(ctx)
        except SrpruneError as exc:
            _fail(_one_line(str(exc)), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except InternalError as exc:
            click.echo(f"internal error: {_one_line(str(exc))} ({BUG_REPORT})", err=True)
            sys.exit(InternalError.exit_code)
        except Exception as exc:  # only running out of memory is handled here
            oom = OutOfMemory.of(exc)
            if oom is None:
                raise
        # out of the handler the traceback is gone; collected, the frames holding the big
        # tensors are too, so the memory now available is what a smaller run could use
        gc.collect()
        _fail(oom.line(ctx.meta.get(WORK_SIZE_KEY), baseline, ctx.meta.get(MODELS_KEY, [])),
              2)


def _warning_line(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, line: str | None = None) -> str:
    """Python warnings as one ``warning: ...`` line (no file, line number or source)."""
    return f"warning: {_one_line(str(message))}\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


# ------------------------------------------------------------------ running out of memory

WORK_SIZE_KEY = "srprune.work_size"  # (what, (h, w)): the LR input size the work runs at
MODELS_KEY = "srprune.models"  # the models the command loaded (their activations per pixel)
LIVE_TENSORS = 3  # feature maps alive at once at the widest layer: its input, output, a skip

# torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N
# bytes"), CUDA ("CUDA out of memory. Tried to allocate 2.00 GiB"), numpy ("Unable to
# allocate 3.00 GiB for an array"), ONNX Runtime ("Failed to allocate memory for requested
# buffer of size N"), C++ (std::bad_alloc)
_OOM = re.compile(r"can't allocate memory|out of memory|Failed to allocate memory|Unable to "
                  r"allocate|bad_alloc|Cannot allocate memory", re.IGNORECASE)
_BYTES = re.compile(r"(?:allocate|buffer of size)\s+([\d.]+)\s*(bytes|[KMGT]i?B|B)?",
                    re.IGNORECASE)
_UNITS = {"b": 1, "bytes": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10,
          "mib": 2**20, "gib": 2**30, "tib": 2**40}
SAFETY = 0.7  # share of the estimated fit suggested: the estimate is rough


@dataclass(frozen=True)
class OutOfMemory:
    """A run that ran out of memory: what it asked for, and on which device."""

    attempted: int | None  # bytes of the allocation that failed, when the message says
    cuda: bool

    @classmethod
    def of(cls, exc: BaseException) -> OutOfMemory | None:
        """The allocation failure ``exc`` reports, or None when it is another error.

        ``MemoryError`` (Python, numpy) always is; a ``RuntimeError`` (torch, including
        ``torch.OutOfMemoryError``) or an ONNX Runtime error only with an allocator's message.
        """
        text = str(exc)
        from_ort = type(exc).__module__.startswith("onnxruntime")
        if not isinstance(exc, MemoryError) and not (
                (isinstance(exc, RuntimeError) or from_ort) and _OOM.search(text)):
            return None
        attempted = None
        match = _BYTES.search(text)
        if match:
            try:
                attempted = int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])
            except (KeyError, ValueError):
                attempted = None
        return cls(attempted, "CUDA" in text)

    def line(self, work: tuple[str, tuple[int, int]] | None, baseline: int | None,
             models: Sequence[Any] = ()) -> str:
        """One line: what failed, the memory there is, and the input size that should fit."""
        available = _cuda_free() if self.cuda else available_memory()
        where = "GPU memory" if self.cuda else "memory"
        asked = (f"tried to allocate {_gb(self.attempted)}" if self.attempted
                 else "an allocation failed")
        facts = asked + (f" with {_gb(available)} available" if available is not None else "")
        share = self._share(available, baseline)
        per_pixel = max((b for b in map(_activation_bytes, models) if b), default=None)
        if work is not None and per_pixel and available is not None:
            h, w = work[1]
            by_model = SAFETY * available / (LIVE_TENSORS * per_pixel * h * w)
            share = min(SAFETY, by_model, share if share is not None else SAFETY)
        if work is None:
            if share is None:
                return (f"out of {where}: {facts}; use smaller images or --input-size, or a "
                        "machine with more memory")
            return (f"out of {where}: {facts}; inputs of about {100 * share:.0f} % of the "
                    "pixels should fit (smaller images or --input-size, or more memory)")
        what, (h, w) = work
        flag = what == "--input-size"
        at = f"--input-size {h} {w}" if flag else f"{what} ({h}x{w} LR)"
        if share is None:
            return (f"out of {where} at {at}: {facts}; use a smaller input or a machine with "
                    "more memory")
        h2, w2 = _shrunk((h, w), share)
        fits = (f"--input-size {h2} {w2} or smaller" if flag
                else f"LR inputs of about {h2}x{w2} or smaller")
        basis = ("the model's widest feature map, " if per_pixel else "") + (
            "that allocation, " if self.attempted else "")
        return (f"out of {where} at {at}: {facts}; {fits} should fit (estimated from "
                f"{basis}the {where} available)")

    def _share(self, available: int | None, baseline: int | None) -> float | None:
        """The fraction of the input's pixels that should fit: the memory available over
        what the run held when it failed plus what it asked for (memory grows with pixels)."""
        if available is None or not self.attempted:
            return None
        held = 0
        peak = _peak_rss()
        if not self.cuda and peak is not None and baseline is not None:
            held = max(0, peak - baseline)
        needed = max(held + self.attempted, 2 * self.attempted)  # a layer's input and output
        return min(SAFETY, SAFETY * available / needed)


def _activation_bytes(model: Any, side: int = 16) -> float | None:
    """float32 bytes per LR pixel of the model's widest conv output (a meta-device forward:
    nothing computed or allocated); None for what it cannot trace (an ONNX file)."""
    net = getattr(model, "net", None)
    if net is None or not hasattr(net, "named_modules"):
        return None
    try:
        from srprune.measure.cost import layer_channels, meta_calls

        calls, _ = meta_calls(net, (side, side))
        modules = dict(net.named_modules())
        widest = max((layer_channels(modules[name])[0] * c.out_positions / max(1, c.calls)
                      for name, c in calls.items()), default=0)
    except Exception:  # a model the meta device cannot run: no estimate from it
        return None
    return 4 * widest / (side * side) or None


def _shrunk(size: tuple[int, int], share: float) -> tuple[int, int]:
    """``size`` with ``share`` of its pixels, each side a multiple of 8 (at least 8)."""
    side = math.sqrt(share)
    return tuple(max(8, int(n * side) // 8 * 8) for n in size)  # type: ignore[return-value]


def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of the free RAM (MemAvailable), the
    cgroup's headroom and the address-space limit (``ulimit -v``); None when unknown."""
    found: list[int] = []
    meminfo = _read_fields("/proc/meminfo")
    if "MemAvailable" in meminfo:
        found.append(meminfo["MemAvailable"] * 1024)
    else:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    found += _cgroup_headroom()
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        vm = _read_fields("/proc/self/status").get("VmSize")
        if soft != resource.RLIM_INFINITY and vm is not None:
            found.append(max(0, soft - vm * 1024))
    except (ImportError, OSError, ValueError):
        pass
    return min(found) if found else None


def _cgroup_headroom() -> list[int]:
    """Bytes left under this process's cgroup memory limits (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``; the namespace's root and the process's own group)."""
    groups = {"/sys/fs/cgroup": ("memory.max", "memory.current"),
              "/sys/fs/cgroup/memory": ("memory.limit_in_bytes", "memory.usage_in_bytes")}
    folders: list[tuple[Path, tuple[str, str]]] = []
    with contextlib.suppress(OSError):
        for row in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, where = row.split(":", 2)
            if controllers == "":
                folders.append((Path("/sys/fs/cgroup" + where), groups["/sys/fs/cgroup"]))
            elif "memory" in controllers.split(","):
                folders.append((Path("/sys/fs/cgroup/memory" + where),
                                groups["/sys/fs/cgroup/memory"]))
    folders += [(Path(root), files) for root, files in groups.items()]
    headroom = []
    for folder, (limit_file, usage_file) in folders:
        try:
            limit = (folder / limit_file).read_text().strip()
            if limit.isdigit() and int(limit) < 1 << 60:  # "max" / 2^63: no limit
                used = int((folder / usage_file).read_text().strip())
                headroom.append(max(0, int(limit) - used))
        except (OSError, ValueError):
            continue
    return headroom


def _read_fields(path: str) -> dict[str, int]:
    """``Key: 123 kB`` lines of a /proc file as ``{key: 123}`` (empty where there is none)."""
    fields: dict[str, int] = {}
    try:
        for row in Path(path).read_text().splitlines():
            key, _, rest = row.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[key.strip()] = int(parts[0])
    except OSError:
        pass
    return fields


def _peak_rss() -> int | None:
    """The process's peak resident memory in bytes (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cuda_free() -> int | None:
    """Free bytes on the current CUDA device (None without torch loaded or CUDA)."""
    torch = sys.modules.get("torch")
    try:
        return int(torch.cuda.mem_get_info()[0]) if torch and torch.cuda.is_available() \
            else None
    except RuntimeError:
        return None


def note_work_size(what: str, size: tuple[int, int]) -> None:
    """Tell the out-of-memory line the LR size the command is working at (and how the user
    sets it, e.g. ``--input-size`` or ``image a.png``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[WORK_SIZE_KEY] = (what, (int(size[0]), int(size[1])))


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else on it."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


ARCH_OPT_KEY = "srprune.arch_options"


def _store_arch_options(ctx: click.Context, param: click.Parameter,
                        value: tuple[str, ...]) -> None:
    ctx.meta[ARCH_OPT_KEY] = parse_options(value, "--arch-opt")


def scale_option(f: Callable) -> Callable:
    """``--scale`` and ``--arch-opt KEY=VALUE`` (model builder or import-path options)."""
    f = click.option("--arch-opt", multiple=True, metavar="KEY=VALUE", expose_value=False,
                     callback=_store_arch_options,
                     help="Model option (repeatable): a registered model's builder argument, "
                          "or an import path's keyword argument.")(f)
    f = trust_import_option(f)
    f = click.option("--arch", metavar="NAME", expose_value=False, callback=_store_arch,
                     help="Architecture of an ncnn or ONNX file that is not detected (a registered "
                          "name or a spandrel architecture, e.g. SPAN); --arch-opt gives its "
                          "options; weights are then mapped in execution order.")(f)
    return click.option("--scale", "-s", type=int, default=None,
                        help="Upscaling factor (default: the model's own, usually 4).")(f)


TRUST_KEY = "srprune.trust_import"
ARCH_KEY = "srprune.arch"


def _store_arch(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta[ARCH_KEY] = value


def _store_trust(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta[TRUST_KEY] = bool(value)


def trust_import_option(f: Callable) -> Callable:
    """``--trust-import``: artifacts may name import paths to rebuild their model from."""
    return click.option("--trust-import", is_flag=True, expose_value=False,
                        callback=_store_trust,
                        help="Allow artifacts built from an import path (package.module:Class) "
                             "to import and call that code; without it only paths given on "
                             "the command line are used.")(f)


def command_trust() -> Any:
    """What this command trusts artifacts to import: everything with ``--trust-import``,
    else the import paths the user typed as its arguments (see srprune.models.trust)."""
    from srprune.models.trust import command_line_imports

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    if ctx.meta.get(TRUST_KEY):
        return True
    typed: list[str] = []
    for value in ctx.params.values():
        values = value if isinstance(value, (list, tuple)) else (value,)
        typed += [v for v in values if isinstance(v, str)]
    return command_line_imports(typed)


def _current(key: str) -> Any:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(key) if ctx is not None else None


def arch_options() -> dict[str, Any]:
    """The current command's ``--arch-opt`` values (empty outside a command)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get(ARCH_OPT_KEY, {})) if ctx is not None else {}


def input_size_option(default: tuple[int, int] = (96, 96), sizes_the_work: bool = True
                      ) -> Callable:
    """``--input-size H W``. ``sizes_the_work``: the command runs the model at this size, so
    running out of memory answers with the size that would fit (not for sizes that only
    count MACs or time a latency target)."""

    def remember(ctx: click.Context, param: click.Parameter,
                 value: tuple[int, int]) -> tuple[int, int]:
        if sizes_the_work and value is not None:
            ctx.meta[WORK_SIZE_KEY] = ("--input-size", tuple(value))
        return value

    def decorate(f: Callable) -> Callable:
        return click.option("--input-size", type=(int, int), default=default, show_default=True,
                            metavar="H W", callback=remember,
                            help="LR input height and width in pixels.")(f)
    return decorate


MAX_INPUT_PIXELS = 4096 * 4096  # LR pixels; a 4K x 4K input at x4 already needs many GB


def check_input_size(size: tuple[int, int], scale: int, minimum: int = 4) -> tuple[int, int]:
    """LR sizes must be at least ``minimum`` and at most :data:`MAX_INPUT_PIXELS` in area."""
    h, w = size
    if h < minimum or w < minimum:
        raise SrpruneError(f"input size {h}x{w} is too small (minimum {minimum}x{minimum})")
    if h * w > MAX_INPUT_PIXELS:
        raise SrpruneError(f"input size {h}x{w} is too large: at most 4096x4096 LR pixels "
                           f"(x{scale} output and its feature maps must fit in memory)")
    return h, w


def check_device(device: str) -> str:
    """``cuda`` only where this torch has a CUDA device."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SrpruneError("--device cuda asked, but this torch has no CUDA device "
                           "(use --device cpu)")
    return device


def lr_dir_option(f: Callable) -> Callable:
    """``--lr-dir DIR``: the LR files of the HR images in ``--data`` (DIV2K-style siblings)."""
    return click.option(
        "--lr-dir", type=click.Path(), default=None,
        help="LR files for the HR images in --data: DIR/X<f>/<name>x<f>.png (e.g. "
             "DIV2K_train_LR_bicubic); X<scale> is needed, a missing X2 etc. is made from HR.",
    )(f)


class LearningRate(click.ParamType):
    """A learning rate: a positive number, or ``auto`` (chosen during the run)."""

    name = "rate|auto"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float | str:
        if isinstance(value, float) or value == "auto":
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)


LEARNING_RATE = LearningRate()


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def load_model_arg(spec: str, scale: int | None, weights: str | None = None,
                   channel_config: str | None = None, note_random: bool = True,
                   model_options: bool = True) -> Any:
    """A registered model name or an artifact file, as an SRModel.

    ``model_options`` off: ``--arch-opt``/``--arch`` are not this argument's (``bench`` puts
    an import-path model beside its own artifact: the options are the import path's).

    A registered model without trained weights (none shipped, no ``--weights``) runs on
    random weights: unless ``note_random`` is off (latency does not care), one ``note:``
    line on stderr says so, because its PSNR is meaningless.
    """
    from srprune.models import resolve_model

    model = resolve_model(spec, scale, weights=weights, channel_config=channel_config,
                          arch_options=arch_options() if model_options else {},
                          trust_import=command_trust(),
                          arch=_current(ARCH_KEY) if model_options else None)
    if note_random and model.meta.get("weights") == "random":
        click.echo(f"note: {spec} x{model.scale} has no trained weights here; it runs on "
                   "random weights (pass --weights FILE for a trained checkpoint)", err=True)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # for the out-of-memory line: its feature maps per pixel
        ctx.meta.setdefault(MODELS_KEY, []).append(model)
    return model


def fmt_count(n: float) -> str:
    """Human-readable count: 4.80 M, 109.92 G."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f}"


def parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``("steps=3", "variant=paper")`` -> ``{"steps": 3, "variant": "paper"}`` (JSON values).

    A value that is not JSON stays a string (``variant=paper``); whether it suits the option
    is the plugin's or model builder's check. Here only the syntax is refused, as one line:
    no ``=``, a key that is not a name, a key given twice, JSON nested too deeply to read.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not name.isidentifier():
            raise SrpruneError(f"{flag} expects KEY=VALUE with KEY a name, got {pair!r}")
        if name in options:
            raise SrpruneError(f"{flag} {key} is given twice; give it once")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
        except RecursionError:  # "[[[[...": the JSON reader's recursion, not a value
            raise SrpruneError(f"{flag} {key}: the value is nested too deeply to read") \
                from None
        except ValueError:  # an integer of more than 4300 digits
            raise SrpruneError(f"{flag} {key}: the number has too many digits to read") \
                from None
    return options


def distill_options(f: Callable) -> Callable:
    """``--distill-weight`` and ``--distill-features`` (fine-tuning a pruned model)."""
    from srprune.config import FineTune

    f = click.option("--distill-features", type=float, default=FineTune.distill_features,
                     show_default=True, help="Fine-tuning: weight of the L1 to the unpruned "
                     "model's features at unit consumers (0: off).")(f)
    return click.option("--distill-weight", type=float, default=FineTune.distill_weight,
                        show_default=True, help="Fine-tuning: weight of the L1 to the "
                        "unpruned model's SR output (0: off).")(f)
