"""The ``qptbench`` command line (typer)."""

from __future__ import annotations

import json
import sys
import time
from functools import wraps

import typer

from qptbench.errors import InputError

app = typer.Typer(
    help="qptbench: QPT's implicit DFT loss vs supervised Hamiltonian models, measured honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Benchmark harness for learning quantum chemistry without labels."""
    if version:
        from qptbench import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.command()
@_friendly
def scf(
    molecule: str = typer.Option(
        None, "--molecule", "-m",
        help="Built-in molecule: water, ethanol, malondialdehyde, uracil, alanine_dipeptide."
    ),
    xyz: str = typer.Option(None, "--xyz", help="Geometry file (.xyz, Ångström) instead."),
    charge: int = typer.Option(0, "--charge", help="Total charge (closed shell: even electrons)."),
    xc: str = typer.Option("b3lyp5", "--xc", help="Functional, PySCF names: b3lyp5, b3lyp "
                           "(PySCF's = VWN-RPA), pbe, blyp, lda, svwn."),
    basis: str = typer.Option("def2-svp", "--basis", help="Gaussian basis set (PySCF name)."),
    grid_level: int = typer.Option(3, "--grid-level", help="PySCF DFT grid level 0-9."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (for our SCF)."),
    conv_tol: float = typer.Option(1e-10, "--conv-tol", help="Energy convergence, Ha."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """Run qptbench's torch SCF and PySCF's RKS on the same input; compare energies (Ha)."""
    from qptbench.geometry import load_molecule
    from qptbench.labels import pyscf_rks
    from qptbench.level import LevelOfTheory
    from qptbench.runtime import resolve_device, synchronize
    from qptbench.scf import run_scf
    from qptbench.tensors import build_tensors

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
from qptbench import cli_baseline, cli_qpt, cli_run, cli_tables  # noqa: E402, F401
from qptbench.cli_data import register as _register_data  # noqa: E402

_register_data(app)


if __name__ == "__main__":
    app()
