"""Tensor preparation (our full precompute) beside PySCF's raw integrals + grids + AO values.

``eri``: dense (PySCF's s8 ERIs beside our dense tensor) or df (PySCF's DF object built in core:
its 3-index integrals whitened by the Cholesky factor of (P|Q), beside our B factor), so the
N_AO series reaches the 485-AO peptide with density fitting.
"""

from __future__ import annotations

from . import common
from .common import DEVICES, ERIS, MOLECULES, Benchmark


def pyscf_raw(mol, level) -> None:
    """What PySCF itself computes before an SCF: s8 ERIs (or, density-fitted, its DF object's
    whitened 3-index tensor, in core while it fits PySCF's max_memory: up to 485 AOs), grid, AO
    values (+ ∇), minao guess."""
    from pyscf import df, scf
    from pyscf.dft import numint

    from qptbench.dft.tensors import build_grids, build_mole

    pmol = build_mole(mol, level.basis)
    if getattr(level, "eri", "dense") == "df":
        df.DF(pmol, auxbasis=level.auxbasis).build()
    else:
        pmol.intor("int2e", aosym="s8")
    grids = build_grids(pmol, level.grid_level)
    numint.eval_ao(pmol, grids.coords, deriv=1)
    scf.hf.init_guess_by_minao(pmol)


class TensorPreparation(Benchmark):
    params = (list(MOLECULES), DEVICES, ERIS)
    param_names = ("molecule", "device", "eri")
    repeat = (2, 5, 60.0)
    timeout = 1800  # the 485-AO peptide (DF): about 150 s a build on two cores

    def setup(self, name, device, eri):
        common.require_device(device)
        common.require_memory(name, eri)
        common.pin_threads()
        from qptbench.dft.tensors import build_tensors

        self.mol, self.level = common.molecule(name), common.level(eri)
        build_tensors(common.molecule("water"), self.level, device)  # load libraries, warm up
        common.sync(device)

    def time_ours(self, name, device, eri):
        from qptbench.dft.tensors import build_tensors

        build_tensors(self.mol, self.level, device)
        common.sync(device)

    def peakmem_ours(self, name, device, eri):
        from qptbench.dft.tensors import build_tensors

        build_tensors(self.mol, self.level, device)

    def track_ratio_to_pyscf(self, name, device, eri):
        """ours / PySCF raw, both best of 3, timed alternately in this one process."""
        from qptbench.dft.tensors import build_tensors

        ours = common.best_time(lambda: build_tensors(self.mol, self.level, device), 3, device)
        theirs = common.best_time(lambda: pyscf_raw(self.mol, self.level), 3)
        return ours / theirs

    track_ratio_to_pyscf.unit = "ours/PySCF"


class PySCFRawIntegrals(Benchmark):
    params = (list(MOLECULES), ERIS)
    param_names = ("molecule", "eri")
    repeat = (2, 5, 60.0)
    timeout = 1800

    def setup(self, name, eri):
        if eri == "dense":
            common.require_pyscf_dense(name)
        else:  # its AO values on the whole grid are ours' size
            common.require_memory(name, eri)
        common.pin_threads()
        self.mol, self.level = common.molecule(name), common.level(eri)
        pyscf_raw(common.molecule("water"), self.level)

    def time_pyscf_raw(self, name, eri):
        pyscf_raw(self.mol, self.level)

    def peakmem_pyscf_raw(self, name, eri):
        pyscf_raw(self.mol, self.level)


class Sizes:
    """Deterministic sizes: good regression gates on a noisy machine."""

    params = (list(MOLECULES), ERIS)
    param_names = ("molecule", "eri")
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name, eri):
        self.t = common.load_tensors(cache, name, "cpu", eri)

    def track_n_ao(self, cache, name, eri):
        return self.t.n_ao

    track_n_ao.unit = "AO"

    def track_grid_points(self, cache, name, eri):
        return self.t.n_grid

    track_grid_points.unit = "points"

    def track_eri_stored(self, cache, name, eri):
        """Two-electron values held: N⁴ dense, N_aux N² density-fitted."""
        return common.eri_elements(self.t)

    track_eri_stored.unit = "values"
