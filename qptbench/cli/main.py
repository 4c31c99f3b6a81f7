"""The ``qptbench`` command line (typer): the one module that builds ``app`` and registers the
commands.  Each command module defines plain functions and a ``register(app)``; none imports the
app, so there is no circle."""

from __future__ import annotations

import typer

from qptbench.cli import baseline, data, experiment, qpt, run, scf, tables
from qptbench.cli.common import HELP_MODE

app = typer.Typer(
    help="qptbench: QPT's implicit DFT loss vs supervised Hamiltonian models, measured honestly."
         "\n\nStart with `qptbench run --molecule water` (the smoke preset: a few minutes on 2 CPU"
         " cores), then `qptbench tables runs/run`.  `qptbench COMMAND --help` explains each.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MODE,
)


def _print_version(value: bool) -> None:
    if value:
        from qptbench import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    ao_budget_gb: float | None = typer.Option(
        None, "--ao-budget-gb", metavar="GB",
        help="Store a geometry's AO values on the grid only while they take at most GB; "
             "above it they are evaluated per block at every energy (the same numbers, more "
             "time; memory N x block instead of the whole grid). Before the command: "
             "`qptbench --ao-budget-gb 1 run ...`. Sets QPTBENCH_AO_BUDGET_GB for the command, "
             "its workers and its memory check (default: that variable, else no budget)."),
) -> None:
    """Benchmark harness for learning quantum chemistry without labels."""
    if ao_budget_gb is not None:
        import os

        from qptbench.dft.tensors import AO_BUDGET_ENV, resolve_ao_budget
        from qptbench.errors import InputError

        try:
            resolve_ao_budget(ao_budget_gb)
        except InputError as why:
            typer.echo(f"error: {why}", err=True)
            raise typer.Exit(code=2) from None
        os.environ[AO_BUDGET_ENV] = repr(float(ao_budget_gb))


for _module in (run, tables, data, qpt, baseline, scf, experiment):
    _module.register(app)
# `qptbench --help` lists the commands in the order a new user needs them.
_ORDER = ("run", "tables", "sample", "label", "train-qpt", "train-baseline", "scf",
          "experiment")
app.registered_commands.sort(key=lambda c: _ORDER.index(c.name) if c.name in _ORDER
                             else len(_ORDER))


if __name__ == "__main__":
    app()
