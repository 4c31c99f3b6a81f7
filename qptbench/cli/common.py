"""What every command module shares: the plain help mode, the built-in molecules' names, and
``friendly`` (bad input: one line on stderr, exit code 2).  Imports no command and not the app."""

from __future__ import annotations

from functools import wraps

import typer

from qptbench.dft.geometry import builtin_names
from qptbench.errors import InputError

# Plain (click-style) help: it wraps cleanly at 80 columns and shows flags as --x/--no-x without
# a "<bool>" type column, which typer's rich panels add to every flag, --help included.
HELP_MODE = None
MOLECULES = ", ".join(builtin_names())  # from qptbench/geometries/*.xyz


def friendly(command):
    """Bad input ends with one line on stderr and exit code 2, never a deep traceback."""

    @wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return run
