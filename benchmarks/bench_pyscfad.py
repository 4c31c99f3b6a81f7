"""pyscfad as an external peer: E(D) and dE/dD at our level of theory, steady state.

What is compared (details in ``pyscfad_peer``): pyscfad's ``jax.value_and_grad`` of
``RKS.energy_tot`` at a given density (the minao guess), B3LYP5/def2-SVP, the same PySCF grid
level unpruned, molecule and integrals constant, on a warm RKS object (ERIs in core, grid built,
JAX's primitives compiled by the call in ``setup``) — against our torch engine's E(aufbau(H)) +
dE/dH from F(minao), which does the same energy and Fock work plus one eigh and its backward.
Skipped (n/a) where pyscfad is not installed (``pip install 'qptbench[pyscfad]'``).
"""

from __future__ import annotations

from . import common, pyscfad_peer
from .bench_energy import energy_backward
from .common import MOLECULES, Benchmark


class PySCFADEnergy(Benchmark):
    params = (list(MOLECULES),)
    param_names = ("molecule",)
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name):
        reason = pyscfad_peer.missing_reason()
        if reason is not None:
            raise NotImplementedError(reason)
        self.t = common.load_tensors(cache, name, "cpu")
        self.dm = self.t.dm_minao.numpy()
        self.step = pyscfad_peer.energy_and_density_grad(common.molecule(name), common.level())
        self.step(self.dm)  # warm: ERIs, grid, JAX's eager kernels

    def time_pyscfad_energy_and_grad(self, cache, name):
        self.step(self.dm)

    def track_ratio_ours_to_pyscfad(self, cache, name):
        """our torch E + backward / pyscfad's E + dE/dD, same density, best of 3 each."""
        h0 = common.initial_h(self.t)
        ours = common.best_time(lambda: energy_backward(self.t, h0), 3)
        return ours / common.best_time(lambda: self.step(self.dm), 3)

    track_ratio_ours_to_pyscfad.unit = "ours/pyscfad"
