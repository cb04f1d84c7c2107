"""The ``srprune`` command line: a thin click layer over the Python API."""

from __future__ import annotations

import sys

import click

from srprune import __version__
from srprune.cli.common import SrpruneGroup


@click.group(cls=SrpruneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="srprune")
def main() -> None:
    """Make super-resolution networks physically smaller and really faster."""


def _add_commands() -> None:
    from srprune.cli import info, listing

    main.add_command(listing.list_cmd)
    main.add_command(info.info_cmd)
    for module_name in ("bench", "compress", "train", "evaluate", "compare", "export",
                        "upscale"):
        try:
            module = __import__(f"srprune.cli.{module_name}", fromlist=["command"])
        except ModuleNotFoundError as exc:
            if exc.name != f"srprune.cli.{module_name}":
                raise
            continue
        main.add_command(module.command)


_add_commands()

if __name__ == "__main__":
    sys.exit(main())
