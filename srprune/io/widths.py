"""The authors' width-file format: one integer width per line, blank lines ignored.

Both the DRN channel configs (``models.channel_config``) and text pruning plans
(``prune.plan``) use it; this is the one reader and validator. Every problem is a one-line
``SrpruneError`` naming the file and the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from srprune.errors import SrpruneError


def read_text(path: str | Path, what: str) -> str:
    """A file's text; a missing or unreadable file raises ``cannot read {what} {path}: ...``."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is fine
    except UnicodeDecodeError as exc:
        raise SrpruneError(f"cannot read {what} {path}: not a text file (byte "
                           f"{exc.object[exc.start]:#04x} at offset {exc.start} is not "
                           "UTF-8)") from None
    except OSError as exc:
        raise SrpruneError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def check_width(value: int, limit: int, where: str, bound: str) -> int:
    """``value`` if it lies in 1..``limit``; else ``{where} width V is outside 1..L ({bound})``."""
    if not 1 <= value <= limit:
        raise SrpruneError(f"{where} width {value} is outside 1..{limit} ({bound})")
    return value


def parse_width_lines(text: str, source: str, limits: Sequence[int], *, what: str,
                      expected: str = "", bound: str) -> list[int]:
    """The widths in ``text``, one per non-blank line, each within 1..``limits[i]``.

    ``source`` names the file in messages, ``what`` the kind of file ("channel config",
    "plan"), ``expected`` follows the expected line count in the count message and
    ``bound`` says what the upper limit is ("the original width"). Lines are checked in order
    and the first bad one is reported.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) != len(limits):
        raise SrpruneError(f"{source}: {what} has {len(lines)} lines, expected "
                           f"{len(limits)}{expected}")
    values = []
    for number, (line, limit) in enumerate(zip(lines, limits), start=1):
        try:
            value = int(line)
        except ValueError:
            shown = line if len(line) <= 40 else line[:37] + "..."
            raise SrpruneError(f"{source}: line {number} is not an integer: {shown!r}") from None
        values.append(check_width(value, limit, f"{source}: line {number}", bound))
    return values


def format_width_lines(widths: Sequence[int]) -> str:
    """Widths in the same format (one per line, trailing newline)."""
    return "".join(f"{w}\n" for w in widths)
