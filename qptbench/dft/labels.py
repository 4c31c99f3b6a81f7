"""PySCF's own Kohn–Sham SCF: the reference labels and the "data creation" cost."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_auxmol, build_grids, build_mole


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
    threads: int = 0         # OpenMP threads PySCF ran with
    host: str = ""
    pyscf_version: str = ""
    failure: str = ""        # why the SCF is not a usable label ("" when converged)


def make_rks(molecule: Molecule, level: LevelOfTheory | None = None, max_cycle: int = 100):
    """A PySCF RKS object at ``level`` with its grid built exactly as ``tensors.build_tensors``.

    At a density-fitted level (``level.eri == "df"``) it is PySCF's DF-RKS with the same
    auxiliary basis, so labels and our energies share one level of theory.
    """
    from pyscf import dft

    level = level or LevelOfTheory()
    mol = build_mole(molecule, level.basis)
    mf = dft.RKS(mol)
    if level.is_df:
        build_auxmol(mol, level.auxbasis)  # a bad name fails here, in one line, not in the SCF
        mf = mf.density_fit(auxbasis=level.auxbasis)
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
    threads: int | None = None,
) -> PySCFResult:
    """Run PySCF's RKS to convergence (default DIIS, minao guess) and time it, grids included.

    ``threads`` sets PySCF's OpenMP thread count first (None keeps the current one); the result
    records the count used, the host and the PySCF version, and for an SCF that did not converge
    a one-line ``failure`` reason with the last energy change and orbital-gradient norm.
    """
    import pyscf
    from pyscf import lib

    if threads is not None:
        lib.num_threads(int(threads))
    tic, cpu = time.perf_counter(), time.process_time()
    mf = make_rks(molecule, level, max_cycle)
    mf.conv_tol = conv_tol
    last: dict[str, float] = {}

    def watch(envs: dict) -> None:
        # PySCF hands its kernel's locals to the callback; keep what explains a failure
        last["de"] = float(envs.get("e_tot", np.nan) - envs.get("last_hf_e", np.nan))
        norm = envs.get("norm_gorb")
        last["gorb"] = float(norm) if norm is not None else np.nan

    mf.callback = watch
    mf.kernel()
    fock = mf.get_fock()
    cycles = int(getattr(mf, "cycles", -1))
    failure = ""
    if not mf.converged:
        failure = (f"SCF not converged in {cycles} cycles (max_cycle {max_cycle}): last "
                   f"|dE| = {abs(last.get('de', np.nan)):.2e} Ha, |g| = "
                   f"{last.get('gorb', np.nan):.2e} (conv_tol {conv_tol:.0e})")
    return PySCFResult(
        energy=float(mf.e_tot),
        converged=bool(mf.converged),
        cycles=cycles,
        fock=fock,
        overlap=mf.get_ovlp(),
        mo_energy=np.asarray(mf.mo_energy),
        n_occ=molecule.n_electrons // 2,
        seconds=time.perf_counter() - tic,
        cpu_seconds=time.process_time() - cpu,
        threads=int(lib.num_threads()),
        host=socket.gethostname(),
        pyscf_version=str(pyscf.__version__),
        failure=failure,
    )
