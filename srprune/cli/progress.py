"""Progress of long stages on stderr: rich bars on a terminal, plain lines in logs.

One :class:`ProgressReporter` serves a whole command. It is a ``ProgressFn``
(``report(stage, done, total)``, the callback ``srprune.compress``, the engine, strategies
and evaluation call), used as a context manager::

    with ProgressReporter(quiet=as_json) as report:
        compress_model(..., progress=report)

* stderr is a terminal: one transient rich bar per stage (none with ``quiet``, i.e. ``--json``);
* stderr is not a terminal (``make demo``, CI, a log file): plain lines, whatever ``quiet``
  says (they are on stderr, stdout stays clean for ``--json``)::

      [dr-search] start (60 steps)
      [dr-search] 24/60 (40 %) 12.3 s
      [dr-search] done 60/60 in 31.0 s

  a ``start`` line when a stage is first reported, a progress line whenever ``interval``
  seconds (10) have passed since the stage's last line, and a ``done`` line with the elapsed
  time when ``done`` reaches ``total``. A stage still open when the reporter closes (an
  error, Ctrl-C, an early stop) gets a ``stopped at`` line.

Callers report ``(stage, 0, total)`` when a stage starts, so its elapsed time is right; a
stage reported again after it finished starts over. ``total`` <= 1 means "one step": the
lines then leave the counts out. The optional ``note`` (``report(stage, done, total,
note="loss 0.123")``) is shown beside the bar and appended to the start and progress lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from srprune.cli.common import err_console

PLAIN_INTERVAL_S = 10.0


@dataclass
class _Stage:
    start: float
    last_line: float
    total: int
    done: int = 0
    task: TaskID | None = None
    finished: bool = False


class ProgressReporter:
    """Bars or plain lines for ``(stage, done, total)`` reports (see the module docstring).

    ``quiet`` turns the bars off (``--json``); plain lines stay. ``tty`` overrides
    ``stream.isatty()`` and ``stream`` (default: ``sys.stderr`` when the reporter is built)
    and ``clock`` (seconds, default ``time.monotonic``) are there for tests.
    """

    def __init__(self, *, quiet: bool = False, tty: bool | None = None,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = PLAIN_INTERVAL_S) -> None:
        self._given_stream = stream
        self.stream: TextIO = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.mode = ("bars" if not quiet else "off") if is_tty else "plain"
        self.clock, self.interval = clock, interval
        self._stages: dict[str, _Stage] = {}
        self._bars: Progress | None = None

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> ProgressReporter:
        if self.mode == "bars":
            console = (Console(file=self._given_stream) if self._given_stream is not None
                       else err_console)
            self._bars = Progress(TextColumn("{task.description:<24}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TextColumn("{task.fields[note]}"), console=console,
                                  transient=True)
            self._bars.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the bars; in plain mode, say which stages never finished."""
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
        if self.mode == "plain":
            now = self.clock()
            started = sorted(self._stages.items(), key=lambda item: item[1].start)
            for name, st in reversed(started):  # innermost (latest) first, like a traceback
                if not st.finished:
                    at = f" at {_counts(st.done, st.total)}" if st.total > 1 else ""
                    self._line(name, f"stopped{at} after {now - st.start:.1f} s")
        self._stages.clear()

    # -- the ProgressFn -------------------------------------------------------------------

    def __call__(self, stage: str, done: int, total: int, note: str | None = None) -> None:
        """Report that ``done`` of ``total`` steps of ``stage`` are finished."""
        if self.mode == "off":
            return
        now = self.clock()
        st = self._stages.get(stage)
        if st is None or (st.finished and (done < total or done == 0)):
            st = self._start(stage, total, now, note)
        st.total, st.done = total, done
        if self.mode == "bars":
            self._update_bar(st, done, total, note)
        elif not st.finished:
            self._plain(stage, st, done, total, now, note)
        if done >= total:
            st.finished = True

    def _start(self, stage: str, total: int, now: float, note: str | None) -> _Stage:
        old = self._stages.pop(stage, None)
        st = _Stage(start=now, last_line=now, total=total)
        if self._bars is not None:
            if old is not None and old.task is not None:
                self._bars.reset(old.task, total=max(total, 1), completed=0)
                st.task = old.task
            else:
                st.task = self._bars.add_task(stage, total=max(total, 1), note=note or "")
        if self.mode == "plain":
            self._line(stage, "start" + (f" ({total} steps)" if total > 1 else ""), note)
        self._stages[stage] = st
        return st

    def _update_bar(self, st: _Stage, done: int, total: int, note: str | None) -> None:
        if self._bars is None or st.task is None:
            return
        fields: dict[str, Any] = {} if note is None else {"note": note}
        self._bars.update(st.task, completed=done, total=max(total, 1), **fields)

    def _plain(self, stage: str, st: _Stage, done: int, total: int, now: float,
               note: str | None) -> None:
        elapsed = now - st.start
        if done >= total:
            counts = f" {_counts(done, total)}" if total > 1 else ""
            self._line(stage, f"done{counts} in {elapsed:.1f} s")
        elif now - st.last_line >= self.interval:
            share = f" ({100 * done // total} %)" if total > 0 else ""
            self._line(stage, f"{_counts(done, total)}{share} {elapsed:.1f} s", note)
            st.last_line = now

    def _line(self, stage: str, text: str, note: str | None = None) -> None:
        self.stream.write(f"[{stage}] {text}" + (f", {note}" if note else "") + "\n")
        self.stream.flush()


def _counts(done: int, total: int) -> str:
    return f"{done}/{total}" if total > 0 else str(done)
