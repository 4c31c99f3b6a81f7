"""The differentiable energy: one iteration forward, forward + backward, the QPT sandwich."""

from __future__ import annotations

from . import common
from .common import DEVICES, MOLECULES, Benchmark

SCHEDULES = {1: (), 3: (0.5, 0.0)}  # DFT iterations -> mixes (the paper's 1 + 2 schedule)


def energy_backward(t, h0, mixes=()) -> None:
    from qptbench.dft.energy import energy

    h = h0.clone().requires_grad_(True)
    energy(t, h, mixes).backward()


def pyscf_fock_energy(mf, dm) -> None:
    """PySCF's warm Fock build + energy on one density (ERIs in core, grid built)."""
    mf.energy_tot(dm, vhf=mf.get_veff(mf.mol, dm))


def warm_pyscf(name: str, dm):
    from qptbench.dft.labels import make_rks

    mf = make_rks(common.molecule(name), common.level())
    mf.get_fock(dm=dm)
    return mf


class Energy(Benchmark):
    params = (list(MOLECULES), DEVICES)
    param_names = ("molecule", "device")
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name, device):
        common.require_device(device)
        self.t = common.load_tensors(cache, name, device)
        self.h0 = common.initial_h(self.t)
        energy_backward(self.t, self.h0)  # warm-up: first-call allocations
        common.sync(device)

    def time_forward(self, cache, name, device):
        import torch

        from qptbench.dft.energy import energy

        with torch.no_grad():
            energy(self.t, self.h0)
        common.sync(device)

    def time_forward_backward(self, cache, name, device):
        energy_backward(self.t, self.h0)
        common.sync(device)

    def track_gflops_forward_backward(self, cache, name, device):
        t = self.t
        flops = common.flops_energy(
            t.n_ao, t.n_occ, t.n_grid, common.eri_elements(t), backward=True
        )
        return flops / common.best_time(lambda: energy_backward(t, self.h0), 3, device) / 1e9

    track_gflops_forward_backward.unit = "GFLOP/s"

    def track_ratio_to_pyscf_fock(self, cache, name, device):
        """ours E + backward / PySCF's warm Fock build + energy, same density, best of 3 each."""
        dm = self.t.dm_minao.cpu().numpy()
        mf = warm_pyscf(name, dm)
        ours = common.best_time(lambda: energy_backward(self.t, self.h0), 3, device)
        return ours / common.best_time(lambda: pyscf_fock_energy(mf, dm), 3)

    track_ratio_to_pyscf_fock.unit = "ours/PySCF"


class Sandwich(Benchmark):
    params = (list(MOLECULES), DEVICES, list(SCHEDULES))
    param_names = ("molecule", "device", "dft_iterations")
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name, device, iterations):
        common.require_device(device)
        self.t = common.load_tensors(cache, name, device)
        self.h0 = common.initial_h(self.t)
        energy_backward(self.t, self.h0, SCHEDULES[iterations])
        common.sync(device)

    def time_forward_backward(self, cache, name, device, iterations):
        energy_backward(self.t, self.h0, SCHEDULES[iterations])
        common.sync(device)


class PySCFFockEnergy(Benchmark):
    params = (list(MOLECULES),)
    param_names = ("molecule",)
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name):
        self.dm = common.load_tensors(cache, name, "cpu").dm_minao.numpy()
        self.mf = warm_pyscf(name, self.dm)

    def time_pyscf_fock_energy(self, cache, name):
        pyscf_fock_energy(self.mf, self.dm)


class EnergyMemory:
    """Peak RSS of loading the tensors and one E + backward (tensors counted: they are needed)."""

    params = (list(MOLECULES),)
    param_names = ("molecule",)
    setup_cache = staticmethod(common.build_all_tensors)
    timeout = 600

    def peakmem_forward_backward(self, cache, name):
        t = common.load_tensors(cache, name, "cpu")
        energy_backward(t, common.initial_h(t))
