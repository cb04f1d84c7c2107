"""The one exception type that means "the user's input is wrong"."""


class SrpruneError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2).

    Raise it with a message that names the problem and the offending value, e.g.
    ``SrpruneError(f"unknown model 'drn-x'; known: drn-s, drn-l")``. The CLI prints
    ``error: <message>`` and exits with code 2; it never shows a traceback for these.
    """
