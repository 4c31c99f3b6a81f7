"""SCF to convergence: our DIIS SCF beside PySCF's RKS (grids and integrals included there)."""

from __future__ import annotations

import time

from . import common
from .common import DEVICES, MOLECULES, Benchmark


def pyscf_scf(name: str) -> float:
    """PySCF's whole RKS (its integrals, grid, minao guess, DIIS to 1e-10 Ha); returns seconds."""
    from qptbench.dft.labels import pyscf_rks

    tic = time.perf_counter()
    result = pyscf_rks(common.molecule(name), common.level(), conv_tol=1e-10)
    if not result.converged:
        raise RuntimeError(f"PySCF did not converge for {name}")
    return time.perf_counter() - tic


class SCF(Benchmark):
    params = (list(MOLECULES), DEVICES)
    param_names = ("molecule", "device")
    repeat = (2, 5, 120.0)
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name, device):
        common.require_device(device)
        self.t = common.load_tensors(cache, name, device)
        from qptbench.dft.energy import energy_and_fock

        energy_and_fock(self.t, self.t.dm_minao)  # warm-up
        common.sync(device)

    def _run(self):
        from qptbench.dft.scf import run_scf

        result = run_scf(self.t, conv_tol=1e-10)
        if not result.converged:
            raise RuntimeError("qptbench SCF did not converge")
        return result

    def time_ours_scf(self, cache, name, device):
        self._run()

    def track_iterations(self, cache, name, device):
        return self._run().iterations

    track_iterations.unit = "Fock builds"

    def track_ratio_to_pyscf_scf(self, cache, name, device):
        """our SCF on prepared tensors / PySCF's whole RKS, one of each, alternately."""
        ours = self._run().seconds
        return ours / pyscf_scf(name)

    track_ratio_to_pyscf_scf.unit = "ours/PySCF"

    def track_ratio_with_preparation_to_pyscf_scf(self, cache, name, device):
        """(our tensor preparation + SCF) / PySCF's whole RKS: the label-making cost."""
        from qptbench.dft.scf import run_scf
        from qptbench.dft.tensors import build_tensors

        tic = time.perf_counter()
        t = build_tensors(common.molecule(name), common.level(), device)
        run_scf(t, conv_tol=1e-10)
        common.sync(device)
        ours = time.perf_counter() - tic
        del t
        return ours / pyscf_scf(name)

    track_ratio_with_preparation_to_pyscf_scf.unit = "ours/PySCF"


class PySCFSCF(Benchmark):
    params = (list(MOLECULES),)
    param_names = ("molecule",)
    repeat = (2, 5, 120.0)

    def setup(self, name):
        common.require_pyscf_dense(name)  # else PySCF's direct SCF: hours at 485 AOs
        common.pin_threads()
        pyscf_scf("water")  # load libraries

    def time_pyscf_scf(self, name):
        pyscf_scf(name)
