"""PySCF's own Kohn–Sham SCF: the reference labels and the "data creation" cost."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from qptbench.geometry import Molecule
from qptbench.level import LevelOfTheory
from qptbench.tensors import build_grids, build_mole


@dataclass
class PySCFResult:
    energy: float            # Ha
    converged: bool
    cycles: int
    fock: np.ndarray         # converged Fock matrix H* (N, N), PySCF AO order
    overlap: np.ndarray      # S (N, N)
    mo_energy: np.ndarray    # (N,) Ha
    n_occ: int
    seconds: float           # wall
    cpu_seconds: float       # process CPU time (all threads)


def make_rks(molecule: Molecule, level: LevelOfTheory | None = None, max_cycle: int = 100):
    """A PySCF RKS object at ``level`` with its grid built exactly as ``tensors.build_tensors``."""
    from pyscf import dft

    level = level or LevelOfTheory()
    mol = build_mole(molecule, level.basis)
    mf = dft.RKS(mol)
    mf.xc = level.xc
    mf.grids = build_grids(mol, level.grid_level)
    mf.max_cycle = max_cycle
    mf.verbose = 0
    return mf


def pyscf_rks(
    molecule: Molecule,
    level: LevelOfTheory | None = None,
    conv_tol: float = 1e-10,
    max_cycle: int = 100,
) -> PySCFResult:
    """Run PySCF's RKS to convergence (default DIIS, minao guess) and time it, grids included."""
    tic, cpu = time.perf_counter(), time.process_time()
    mf = make_rks(molecule, level, max_cycle)
    mf.conv_tol = conv_tol
    mf.kernel()
    fock = mf.get_fock()
    return PySCFResult(
        energy=float(mf.e_tot),
        converged=bool(mf.converged),
        cycles=int(getattr(mf, "cycles", -1)),
        fock=fock,
        overlap=mf.get_ovlp(),
        mo_energy=np.asarray(mf.mo_energy),
        n_occ=molecule.n_electrons // 2,
        seconds=time.perf_counter() - tic,
        cpu_seconds=time.process_time() - cpu,
    )
