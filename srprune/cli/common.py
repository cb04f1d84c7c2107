"""Shared CLI pieces: error reporting, common options, JSON output, model loading."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
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
        try:
            return super().invoke(ctx)
        except SrpruneError as exc:
            _fail(_one_line(str(exc)), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except InternalError as exc:
            click.echo(f"internal error: {_one_line(str(exc))} ({BUG_REPORT})", err=True)
            sys.exit(InternalError.exit_code)


def _warning_line(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, line: str | None = None) -> str:
    """Python warnings as one ``warning: ...`` line (no file, line number or source)."""
    return f"warning: {_one_line(str(message))}\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


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
    return click.option("--scale", "-s", type=int, default=None,
                        help="Upscaling factor (default: the model's own, usually 4).")(f)


def arch_options() -> dict[str, Any]:
    """The current command's ``--arch-opt`` values (empty outside a command)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get(ARCH_OPT_KEY, {})) if ctx is not None else {}


def input_size_option(default: tuple[int, int] = (96, 96)) -> Callable:
    def decorate(f: Callable) -> Callable:
        return click.option("--input-size", type=(int, int), default=default, show_default=True,
                            metavar="H W", help="LR input height and width in pixels.")(f)
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


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def load_model_arg(spec: str, scale: int | None, weights: str | None = None,
                   channel_config: str | None = None, note_random: bool = True) -> Any:
    """A registered model name or an artifact file, as an SRModel.

    A registered model without trained weights (none shipped, no ``--weights``) runs on
    random weights: unless ``note_random`` is off (latency does not care), one ``note:``
    line on stderr says so, because its PSNR is meaningless.
    """
    from srprune.models import resolve_model

    model = resolve_model(spec, scale, weights=weights, channel_config=channel_config,
                          arch_options=arch_options())
    if note_random and model.meta.get("weights") == "random":
        click.echo(f"note: {spec} x{model.scale} has no trained weights here; it runs on "
                   "random weights (pass --weights FILE for a trained checkpoint)", err=True)
    return model


def fmt_count(n: float) -> str:
    """Human-readable count: 4.80 M, 109.92 G."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f}"


def parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``("steps=3", "variant=paper")`` -> ``{"steps": 3, "variant": "paper"}`` (JSON values)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SrpruneError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
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
