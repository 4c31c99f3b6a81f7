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


# The two-electron treatment: shared by every command that builds a level of theory.
ERI_HELP = ("Two-electron integrals: dense = exact (ij|kl), N^4 memory (2.4 GB at 132 AOs); "
            "df = density fitting over --auxbasis, N_aux*N^2 memory (0.1 GB there), 1e-5 Ha "
            "(water) to 4e-5 Ha (ethanol) from exact at def2-svp.  DF is a level of theory of "
            "its own: PySCF's labels use it too, and results record it.")
AUXBASIS_HELP = "Fitting basis for --eri df (PySCF name)."


def eri_option(default: str | None = "dense", note: str = ""):
    """``--eri dense|df`` (a typer option); ``default`` None lets a preset decide (``note``
    says how, in --help)."""
    return typer.Option(default, "--eri", metavar="dense|df", help=ERI_HELP + note)


LABELLER_HELP = ("SCF code of the labels: PySCF on CPU, or GPU4PySCF on a CUDA GPU at the same "
                 "level of theory (pip install 'qptbench[gpu]').")


def labeller_option(note: str = ""):
    """``--labeller pyscf|gpu4pyscf`` (a typer option); ``note`` adds what is particular to the
    command, in --help."""
    return typer.Option("pyscf", "--labeller", metavar="pyscf|gpu4pyscf",
                        help=LABELLER_HELP + note)


def auxbasis_option():
    """``--auxbasis NAME`` for density fitting."""
    return typer.Option("def2-universal-jkfit", "--auxbasis", metavar="NAME", help=AUXBASIS_HELP)


# The engine computing the DFT energy: not a level of theory (both give the same numbers).
ENERGY_BACKEND_HELP = ("Engine for the DFT energy: torch, or jax (the JAX engine, jitted; "
                       "needs `pip install jax`): our SCF, or the energy signal's training "
                       "loss (sc and labels: torch only; scoring stays torch).  Not a level of "
                       "theory: both compute the same energy (to ~1e-9 Ha), so results at "
                       "either are comparable; it is recorded with the config.")


def energy_backend_option():
    """``--energy-backend torch|jax`` (a typer option)."""
    return typer.Option("torch", "--energy-backend", metavar="torch|jax",
                        help=ENERGY_BACKEND_HELP)


def device_option(help_text: str = "Where to train and evaluate."):
    """``--device auto|cpu|cuda`` (a typer option): auto takes CUDA where there is a GPU."""
    return typer.Option("auto", "--device", metavar="auto|cpu|cuda",
                        help=help_text + "  auto: CUDA when a GPU is visible, else CPU.")
