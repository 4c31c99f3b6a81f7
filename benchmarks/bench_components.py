"""Pieces of one energy + backward: eigh, the aufbau density's backward, J/K, XC."""

from __future__ import annotations

from . import common
from .common import DEVICES, MOLECULES, Benchmark


class Components(Benchmark):
    params = (list(MOLECULES), DEVICES)
    param_names = ("molecule", "device")
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name, device):
        common.require_device(device)
        import torch

        from qptbench.dft.density import orthogonal_eigh
        from qptbench.dft.energy import density_on_grid

        t = self.t = common.load_tensors(cache, name, device)
        self.h0 = common.initial_h(t)
        self.dm = t.dm_minao
        gen = torch.Generator().manual_seed(0)
        g = torch.randn(t.n_ao, t.n_ao, generator=gen, dtype=torch.float64)
        self.grad_d = (g + g.mT).to(device)
        with torch.no_grad():
            rho, grad = density_on_grid(t, self.dm)
        self.rho, self.sigma = rho, None if grad is None else (grad * grad).sum(0)
        orthogonal_eigh(self.h0, t.l_inv)  # warm-up (LAPACK / cuSOLVER workspaces)
        for fn in (self.time_eigh_backward, self.time_jk, self.time_vxc):
            fn(cache, name, device)

    def time_eigh(self, cache, name, device):
        from qptbench.dft.density import orthogonal_eigh

        orthogonal_eigh(self.h0, self.t.l_inv)
        common.sync(device)

    def time_eigh_backward(self, cache, name, device):
        """The aufbau density D(H) forward + its custom backward."""
        from qptbench.dft.density import aufbau_density

        h = self.h0.clone().requires_grad_(True)
        d = aufbau_density(h, self.t.l_inv, self.t.n_occ)
        d.backward(self.grad_d)
        common.sync(device)

    def time_jk(self, cache, name, device):
        from qptbench.dft.energy import coulomb_exchange_of

        coulomb_exchange_of(self.t, self.dm, with_k=True)
        common.sync(device)

    def time_density_on_grid(self, cache, name, device):
        """ρ and ∇ρ on the screened blocks, as the energy computes them."""
        from qptbench.dft.energy import density_on_grid

        density_on_grid(self.t, self.dm)
        common.sync(device)

    def time_functional(self, cache, name, device):
        from qptbench.dft.xc import eval_xc

        eval_xc(self.t.xc, self.rho, self.sigma)
        common.sync(device)

    def time_vxc(self, cache, name, device):
        """E_xc and V_xc: density on the grid, functional, and the V_xc contraction."""
        from qptbench.dft.energy import xc_energy_potential

        xc_energy_potential(self.t, self.dm)
        common.sync(device)
