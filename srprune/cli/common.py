"""Shared CLI pieces: error reporting, common options, JSON output, model loading."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from srprune.errors import SrpruneError

console = Console()
err_console = Console(stderr=True)


class SrpruneGroup(click.Group):
    """Turns SrpruneError (bad input) into one ``error:`` line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SrpruneError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else on it."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def scale_option(f: Callable) -> Callable:
    return click.option("--scale", "-s", type=int, default=None,
                        help="Upscaling factor (default: the model's own, usually 4).")(f)


def input_size_option(default: tuple[int, int] = (96, 96)) -> Callable:
    def decorate(f: Callable) -> Callable:
        return click.option("--input-size", type=(int, int), default=default, show_default=True,
                            metavar="H W", help="LR input height and width in pixels.")(f)
    return decorate


def check_input_size(size: tuple[int, int], scale: int, minimum: int = 4) -> tuple[int, int]:
    """LR sizes must be positive and divisible the way the model downsamples."""
    h, w = size
    if h < minimum or w < minimum:
        raise SrpruneError(f"input size {h}x{w} is too small (minimum {minimum}x{minimum})")
    return h, w


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def load_model_arg(spec: str, scale: int | None, weights: str | None = None,
                   channel_config: str | None = None) -> Any:
    """A registered model name or an artifact file, as an SRModel."""
    from srprune.models import resolve_model

    return resolve_model(spec, scale, weights=weights, channel_config=channel_config)


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
