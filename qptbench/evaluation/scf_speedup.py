"""SCF acceleration, the metric QH9 uses: PySCF RKS cycles from a method's density vs from minao.

One PySCF RKS object per molecule (grid built once, exactly as the labels'), ``conv_tol`` 1e-9;
``kernel(dm0=D)`` for each start.  The effective count adds the Fock builds the route already
spent after its network (k): the correction Eberhard et al. (2026, SAIL) call the effective
relative iteration count, so a hybrid route gets no credit for iterations it did itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory

SCF_CONV_TOL = 1e-9


@dataclass(frozen=True)
class SCFRun:
    cycles: int
    seconds: float
    converged: bool


class SCFTimer:
    """PySCF's RKS for one geometry, started from any density (None: PySCF's minao guess).

    The minao run's clock starts after the guess is made, like every other start's."""

    def __init__(self, molecule: Molecule, level: LevelOfTheory, conv_tol: float = SCF_CONV_TOL,
                 max_cycle: int = 100) -> None:
        from qptbench.dft.labels import make_rks

        self.mf = make_rks(molecule, level, max_cycle)
        self.mf.conv_tol = conv_tol
        self.mf.grids.build()
        self._minao: SCFRun | None = None

    def run(self, dm0: np.ndarray | None = None) -> SCFRun:
        # never kernel(dm0=None): PySCF would restart from the previous run's orbitals
        start = self.mf.get_init_guess(key="minao") if dm0 is None else dm0
        tic = time.perf_counter()
        self.mf.kernel(dm0=start)
        return SCFRun(int(getattr(self.mf, "cycles", -1)), time.perf_counter() - tic,
                      bool(self.mf.converged))

    def run_from_fock(self, fock: np.ndarray) -> SCFRun:
        """Start from the aufbau density of a Hamiltonian (PySCF's own eig and occupations,
        with the molecule's overlap), so the caller needs no tensors of its own."""
        mo_energy, mo_coeff = self.mf.eig(fock, self.mf.get_ovlp())
        return self.run(self.mf.make_rdm1(mo_coeff, self.mf.get_occ(mo_energy, mo_coeff)))

    def minao(self) -> SCFRun:
        if self._minao is None:
            self._minao = self.run(None)
        return self._minao

