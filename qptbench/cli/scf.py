"""``qptbench scf``: our DIIS SCF and PySCF's RKS on one molecule, side by side."""

from __future__ import annotations

import json
import sys
import time

import typer

from qptbench.cli.common import (
    MOLECULES,
    auxbasis_option,
    device_option,
    energy_backend_option,
    eri_option,
    friendly,
)
from qptbench.cli.memory import guard, memory_limit_option


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
    eri: str = eri_option(),
    auxbasis: str = auxbasis_option(),
    energy_backend: str = energy_backend_option(),
    device: str = device_option("Device for our SCF."),
    conv_tol: float = typer.Option(1e-10, "--conv-tol", metavar="HA",
                                   help="Energy convergence, Ha."),
    as_json: bool = typer.Option(False, "--json/--no-json", show_default=False,
                                 help="Print one JSON object instead of the table.  "
                                 "[default: off]"),
    memory_limit_gb: float = memory_limit_option(),
) -> None:
    """Compare our DIIS SCF with PySCF's RKS on one molecule.

    Both run on the same geometry and level of theory; prints both energies (Ha), the
    difference, iterations and wall time.  Ours runs on the torch engine, or with
    --energy-backend jax on the JAX engine (one jitted loop; its wall time includes the
    compilation, as a first call does).  Exit code 1 if either SCF did not converge.
    """
    from qptbench.dft.energy_backend import check_energy_backend
    from qptbench.dft.geometry import load_molecule
    from qptbench.dft.labels import pyscf_rks
    from qptbench.dft.level import LevelOfTheory
    from qptbench.dft.scf import run_scf
    from qptbench.dft.tensors import build_tensors
    from qptbench.runtime import resolve_device, synchronize

    check_energy_backend(energy_backend)
    mol = load_molecule(molecule, xyz, charge)
    level = LevelOfTheory(basis=basis, xc=xc, grid_level=grid_level, eri=eri, auxbasis=auxbasis)
    dev = resolve_device(device)
    from qptbench.methods.memory import scf_need

    guard("qptbench scf", scf_need(mol, level), memory_limit_gb, evaluator=False)

    tic = time.perf_counter()
    tensors = build_tensors(mol, level, device=dev)
    synchronize(dev)
    if energy_backend == "jax":
        from qptbench.dft import jax_scf
        from qptbench.dft.jax_tensors import from_torch

        jax_tensors = from_torch(tensors)  # DF tensors: the engine's one-line refusal
        prep_seconds = time.perf_counter() - tic
        ours = jax_scf.run_scf(jax_tensors, conv_tol=conv_tol)
    else:
        prep_seconds = time.perf_counter() - tic
        ours = run_scf(tensors, conv_tol=conv_tol)
    ref = pyscf_rks(mol, level, conv_tol=conv_tol)

    result = {
        "molecule": mol.name or xyz,
        "level_of_theory": level.as_dict(),
        "energy_backend": energy_backend,
        "device": str(dev),
        "energy_hartree": ours.energy,
        "pyscf_energy_hartree": ref.energy,
        "abs_diff_hartree": abs(ours.energy - ref.energy),
        "converged": ours.converged,
        "pyscf_converged": ref.converged,
        "iterations": ours.iterations,
        "pyscf_iterations": ref.cycles,
        "n_ao": tensors.n_ao,
        "n_aux": None if tensors.df_b is None else int(tensors.df_b.shape[0]),
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
        + (f"density fitting ({lot['auxbasis']}), " if lot.get("eri") == "df" else "")
        + f"N_AO={r['n_ao']}, {r['n_grid']} grid points, device {r['device']}, "
        + f"{r['energy_backend']} engine"
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


def register(app: typer.Typer) -> None:
    app.command("scf")(friendly(scf))
