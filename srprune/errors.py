"""Exception types that tell a user's mistake from ours, and how the CLI ends on each.

* :class:`SrpruneError`: the user's input or environment is wrong: one ``error:`` line, exit 2.
* :class:`Interrupted`: Ctrl-C, after whatever could be kept was saved: one line, exit 130.
* :class:`InternalError`: an invariant of srprune itself failed (a bug): one ``internal
  error:`` line asking for a bug report, exit 1.
"""


class SrpruneError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2).

    Raise it with a message that names the problem and the offending value, e.g.
    ``SrpruneError(f"unknown model 'drn-x'; known: drn-s, drn-l")``. The CLI prints
    ``error: <message>`` and exits with code 2; it never shows a traceback for these.
    """

    exit_code = 2


class Interrupted(SrpruneError):
    """The user pressed Ctrl-C; the message says what was saved and how to go on (exit 130)."""

    exit_code = 130


class InternalError(Exception):
    """An internal invariant failed: a bug in srprune, not the user's input (exit code 1)."""

    exit_code = 1
