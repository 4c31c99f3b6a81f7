"""Tensor preparation (our full precompute) beside PySCF's raw integrals + grids + AO values."""

from __future__ import annotations

from . import common
from .common import DEVICES, MOLECULES, Benchmark


def pyscf_raw(mol, level) -> None:
    """What PySCF itself computes before an SCF: s8 ERIs, grid, AO values (+ ∇), minao guess."""
    from pyscf import scf
    from pyscf.dft import numint

    from qptbench.dft.tensors import build_grids, build_mole

    pmol = build_mole(mol, level.basis)
    pmol.intor("int2e", aosym="s8")
    grids = build_grids(pmol, level.grid_level)
    numint.eval_ao(pmol, grids.coords, deriv=1)
    scf.hf.init_guess_by_minao(pmol)


class TensorPreparation(Benchmark):
    params = (list(MOLECULES), DEVICES)
    param_names = ("molecule", "device")
    repeat = (2, 5, 60.0)

    def setup(self, name, device):
        common.require_device(device)
        common.require_memory(name)
        common.pin_threads()
        from qptbench.dft.tensors import build_tensors

        self.mol, self.level = common.molecule(name), common.level()
        build_tensors(common.molecule("water"), self.level, device)  # load libraries, warm up
        common.sync(device)

    def time_ours(self, name, device):
        from qptbench.dft.tensors import build_tensors

        build_tensors(self.mol, self.level, device)
        common.sync(device)

    def peakmem_ours(self, name, device):
        from qptbench.dft.tensors import build_tensors

        build_tensors(self.mol, self.level, device)

    def track_ratio_to_pyscf(self, name, device):
        """ours / PySCF raw, both best of 3, timed alternately in this one process."""
        from qptbench.dft.tensors import build_tensors

        ours = common.best_time(lambda: build_tensors(self.mol, self.level, device), 3, device)
        theirs = common.best_time(lambda: pyscf_raw(self.mol, self.level), 3)
        return ours / theirs

    track_ratio_to_pyscf.unit = "ours/PySCF"


class PySCFRawIntegrals(Benchmark):
    params = (list(MOLECULES),)
    param_names = ("molecule",)
    repeat = (2, 5, 60.0)

    def setup(self, name):
        common.pin_threads()
        self.mol, self.level = common.molecule(name), common.level()
        pyscf_raw(common.molecule("water"), self.level)

    def time_pyscf_raw(self, name):
        pyscf_raw(self.mol, self.level)

    def peakmem_pyscf_raw(self, name):
        pyscf_raw(self.mol, self.level)


class Sizes:
    """Deterministic sizes: good regression gates on a noisy machine."""

    params = (list(MOLECULES),)
    param_names = ("molecule",)
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name):
        self.t = common.load_tensors(cache, name, "cpu")

    def track_n_ao(self, cache, name):
        return self.t.n_ao

    track_n_ao.unit = "AO"

    def track_grid_points(self, cache, name):
        return self.t.n_grid

    track_grid_points.unit = "points"

    def track_eri_stored(self, cache, name):
        return common.eri_elements(self.t)

    track_eri_stored.unit = "values"
