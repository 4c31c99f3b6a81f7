"""The ``qptbench`` command line (typer)."""

from __future__ import annotations

import json
import sys
import time
from functools import wraps

import typer

from qptbench.dft.geometry import builtin_names
from qptbench.errors import InputError

# Plain (click-style) help: it wraps cleanly at 80 columns and shows flags as --x/--no-x without
# a "<bool>" type column, which typer's rich panels add to every flag, --help included.
HELP_MODE = None
MOLECULES = ", ".join(builtin_names())  # from qptbench/geometries/*.xyz

app = typer.Typer(
    help="qptbench: QPT's implicit DFT loss vs supervised Hamiltonian models, measured honestly."
         "\n\nStart with `qptbench run --molecule water` (the smoke preset: a few minutes on 2 CPU"
         " cores), then `qptbench tables runs/run`.  `qptbench COMMAND --help` explains each.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MODE,
)


def _friendly(command):
    """Bad input ends with one line on stderr and exit code 2, never a deep traceback."""

    @wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return run


def _print_version(value: bool) -> None:
    if value:
        from qptbench import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Benchmark harness for learning quantum chemistry without labels."""


@app.command()
@_friendly
def scf(
    molecule: str = typer.Option(
        None, "--molecule", "-m", metavar="NAME",
        help=f"Built-in molecule: {MOLECULES}. Give this or --xyz."),
    xyz: str = typer.Option(None, "--xyz", metavar="FILE",
                            help="Geometry file (.xyz, Ångström) instead of --molecule."),
    charge: int = typer.Option(0, "--charge", metavar="Q",
                               help="Total charge (closed shell: even electrons)."),
    xc: str = typer.Option("b3lyp5", "--xc", metavar="NAME",
                           help="Functional (PySCF name): b3lyp5, pbe, blyp, lda, svwn; or "
                           "b3lyp, which PySCF builds with VWN-RPA."),
    basis: str = typer.Option("def2-svp", "--basis", metavar="NAME",
                              help="Gaussian basis set (PySCF name)."),
    grid_level: int = typer.Option(3, "--grid-level", metavar="0-9",
                                   help="PySCF DFT grid level."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda",
                               help="Device for our SCF."),
    conv_tol: float = typer.Option(1e-10, "--conv-tol", metavar="HA",
                                   help="Energy convergence, Ha."),
    as_json: bool = typer.Option(False, "--json/--no-json", show_default=False,
                                 help="Print one JSON object instead of the table.  "
                                 "[default: off]"),
) -> None:
    """Compare our torch SCF with PySCF's RKS on one molecule.

    Both run on the same geometry and level of theory; prints both energies (Ha), the
    difference, iterations and wall time.  Exit code 1 if either SCF did not converge.
    """
    from qptbench.dft.geometry import load_molecule
    from qptbench.dft.labels import pyscf_rks
    from qptbench.dft.level import LevelOfTheory
    from qptbench.dft.scf import run_scf
    from qptbench.dft.tensors import build_tensors
    from qptbench.runtime import resolve_device, synchronize

    mol = load_molecule(molecule, xyz, charge)
    level = LevelOfTheory(basis=basis, xc=xc, grid_level=grid_level)
    dev = resolve_device(device)

    tic = time.perf_counter()
    tensors = build_tensors(mol, level, device=dev)
    synchronize(dev)
    prep_seconds = time.perf_counter() - tic
    ours = run_scf(tensors, conv_tol=conv_tol)
    ref = pyscf_rks(mol, level, conv_tol=conv_tol)

    result = {
        "molecule": mol.name or xyz,
        "level_of_theory": level.as_dict(),
        "device": str(dev),
        "energy_hartree": ours.energy,
        "pyscf_energy_hartree": ref.energy,
        "abs_diff_hartree": abs(ours.energy - ref.energy),
        "converged": ours.converged,
        "pyscf_converged": ref.converged,
        "iterations": ours.iterations,
        "pyscf_iterations": ref.cycles,
        "n_ao": tensors.n_ao,
        "n_grid": tensors.n_grid,
        "seconds": ours.seconds,
        "tensor_seconds": prep_seconds,
        "pyscf_seconds": ref.seconds,
    }
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print_scf(result)
    if not (ours.converged and ref.converged):
        sys.exit(1)


def _print_scf(r: dict) -> None:
    lot = r["level_of_theory"]
    typer.echo(
        f"{r['molecule']}: {lot['xc']}/{lot['basis']}, grid level {lot['grid_level']}, "
        f"N_AO={r['n_ao']}, {r['n_grid']} grid points, device {r['device']}"
    )
    rows = [
        ("", "energy (Ha)", "converged", "iterations", "wall (s)"),
        ("qptbench", f"{r['energy_hartree']:.10f}", str(r["converged"]), str(r["iterations"]),
         f"{r['seconds']:.2f} (+{r['tensor_seconds']:.2f} tensors)"),
        ("PySCF", f"{r['pyscf_energy_hartree']:.10f}", str(r["pyscf_converged"]),
         str(r["pyscf_iterations"]), f"{r['pyscf_seconds']:.2f}"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    typer.echo(f"|difference| = {r['abs_diff_hartree']:.2e} Ha")


# Commands defined in their own modules register themselves on ``app`` when imported.
from qptbench.cli import baseline, qpt, tables  # noqa: E402, F401
from qptbench.cli import run as _run  # noqa: E402, F401
from qptbench.cli.data import register as _register_data  # noqa: E402

_register_data(app)
# `qptbench --help` lists the commands in the order a new user needs them.
_ORDER = ("run", "tables", "sample", "label", "train-qpt", "train-baseline", "scf")
app.registered_commands.sort(key=lambda c: _ORDER.index(c.name) if c.name in _ORDER
                             else len(_ORDER))


if __name__ == "__main__":
    app()
