"""The differentiable energy: one iteration forward, forward + backward, the QPT sandwich.

``backend`` is the engine: ``torch`` (``qptbench.dft.energy``) or ``jax`` (``jax_engine.energy``
/ ``energy_and_grad`` on tensors converted once in ``setup``, results waited for with
``block_until_ready``).  Every ``setup`` makes the first call, so only steady-state calls are
timed; JAX's compilation is its own figure, ``JaxCompile.track_jax_compile_seconds``.

``eri`` is the two-electron treatment: ``dense`` (exact (ij|kl), N⁴ memory) or ``df`` (density
fitting over def2-universal-jkfit, N_aux N²), which carries the N_AO series to the 485-AO
peptide; PySCF's peer is then its DF-RKS.  A case that would not fit is n/a
(``common.why_not``); so is the JAX engine on DF tensors while it has no density fitting.
``benchmarks/fit_exponent.py`` fits the exponent of E + backward vs N_AO from the results.
"""

from __future__ import annotations

from . import common
from .common import DEVICES, ERIS, MOLECULES, Benchmark

SCHEDULES = {1: (), 3: (0.5, 0.0)}  # DFT iterations -> mixes (the paper's 1 + 2 schedule)
BACKENDS = ["torch", "jax"]


def energy_backward(t, h0, mixes=()) -> None:
    from qptbench.dft.energy import energy

    h = h0.clone().requires_grad_(True)
    energy(t, h, mixes).backward()


def pyscf_fock_energy(mf, dm) -> None:
    """PySCF's warm Fock build + energy on one density (ERIs in core, grid built)."""
    mf.energy_tot(dm, vhf=mf.get_veff(mf.mol, dm))


def warm_pyscf(name: str, dm, eri: str = "dense"):
    from qptbench.dft.labels import make_rks

    mf = make_rks(common.molecule(name), common.level(eri))
    mf.get_fock(dm=dm)
    return mf


def require_backend(backend: str, device: str) -> None:
    """Skip (n/a) a JAX case whose device is not JAX's default one (it would be mislabelled)."""
    common.require_device(device)
    if backend == "jax":
        import jax

        want = "gpu" if device == "cuda" else "cpu"
        if jax.default_backend() != want:
            raise NotImplementedError(f"JAX's default backend is {jax.default_backend()}, "
                                      f"not {want}")


def jax_inputs(t):
    """The JAX engine's tensors and H0 (converted once, on JAX's default device); n/a where
    the engine refuses the tensors (density-fitted ones, while it has no DF)."""
    import jax.numpy as jnp

    from qptbench.dft.jax_tensors import from_torch
    from qptbench.errors import InputError

    try:
        tj = from_torch(t.to("cpu"))
    except InputError as exc:
        raise NotImplementedError(str(exc)) from None
    return tj, jnp.asarray(common.initial_h(t).cpu().numpy())


def steps(t, backend: str, device: str, mixes=()):
    """(forward, forward + backward) callables on ``t``, each already called once (warm-up,
    JAX compilation), each returning only when its result is ready."""
    if backend == "torch":
        import torch

        from qptbench.dft.energy import energy

        h0 = common.initial_h(t)

        def forward():
            with torch.no_grad():
                energy(t, h0, mixes)
            common.sync(device)

        def forward_backward():
            energy_backward(t, h0, mixes)
            common.sync(device)
    elif backend == "jax":
        import jax

        from qptbench.dft import jax_engine

        tj, h0 = jax_inputs(t)

        def forward():
            jax.block_until_ready(jax_engine.energy(tj, h0, mixes))

        def forward_backward():
            jax.block_until_ready(jax_engine.energy_and_grad(tj, h0, mixes))
    else:
        raise ValueError(f"unknown backend {backend!r}")
    forward()
    forward_backward()
    return forward, forward_backward


class Energy(Benchmark):
    params = (list(MOLECULES), DEVICES, BACKENDS, ERIS)
    param_names = ("molecule", "device", "backend", "eri")
    setup_cache = staticmethod(common.build_all_tensors)
    timeout = 1800  # the 485-AO peptide (DF): about 100 s a call on two cores, 2 warm-up calls

    def setup(self, cache, name, device, backend, eri):
        require_backend(backend, device)
        self.t = common.load_tensors(cache, name, device, eri)
        self.forward, self.forward_backward = steps(self.t, backend, device)

    def time_forward(self, cache, name, device, backend, eri):
        self.forward()

    def time_forward_backward(self, cache, name, device, backend, eri):
        self.forward_backward()

    def track_gflops_forward_backward(self, cache, name, device, backend, eri):
        t = self.t
        flops = common.flops_energy(t.n_ao, t.n_occ, t.n_grid, common.eri_elements(t),
                                    backward=True, jk_flops=common.jk_flops(t))
        return flops / common.best_time(self.forward_backward, 3, device) / 1e9

    track_gflops_forward_backward.unit = "GFLOP/s"

    def track_ratio_to_pyscf_fock(self, cache, name, device, backend, eri):
        """ours E + backward / PySCF's warm Fock build + energy (its DF-RKS for ``df``), same
        density, best of 3 each."""
        dm = self.t.dm_minao.cpu().numpy()
        mf = warm_pyscf(name, dm, eri)
        ours = common.best_time(self.forward_backward, 3, device)
        return ours / common.best_time(lambda: pyscf_fock_energy(mf, dm), 3)

    track_ratio_to_pyscf_fock.unit = "ours/PySCF"


class Sandwich(Benchmark):
    params = (list(MOLECULES), DEVICES, list(SCHEDULES), BACKENDS, ERIS)
    param_names = ("molecule", "device", "dft_iterations", "backend", "eri")
    setup_cache = staticmethod(common.build_all_tensors)
    timeout = 3600  # the 485-AO peptide at 3 DFT iterations: minutes a call

    def setup(self, cache, name, device, iterations, backend, eri):
        require_backend(backend, device)
        t = common.load_tensors(cache, name, device, eri)
        _, self.forward_backward = steps(t, backend, device, SCHEDULES[iterations])

    def time_forward_backward(self, cache, name, device, iterations, backend, eri):
        self.forward_backward()


class JaxCompile(Benchmark):
    """JAX's compile time of E + gradient per N_AO, apart from the steady-state times above."""

    params = (list(MOLECULES), list(SCHEDULES))
    param_names = ("molecule", "dft_iterations")
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name, iterations):
        self.tj, self.h0 = jax_inputs(common.load_tensors(cache, name, "cpu"))

    def track_jax_compile_seconds(self, cache, name, iterations):
        """First call in a fresh jit cache (``jax.clear_caches()``) minus one warm call: tracing,
        lowering and XLA compilation of ``energy_and_grad``."""
        import jax

        from qptbench.dft import jax_engine

        def call():
            jax.block_until_ready(jax_engine.energy_and_grad(self.tj, self.h0,
                                                             SCHEDULES[iterations]))

        jax.clear_caches()
        traces = jax_engine.TRACES["energy_and_grad"]
        first = common.best_time(call, 1)
        if jax_engine.TRACES["energy_and_grad"] == traces:  # served from a cache: not a compile
            raise RuntimeError("energy_and_grad did not retrace after jax.clear_caches()")
        return first - common.best_time(call, 1)

    track_jax_compile_seconds.unit = "seconds"


class PySCFFockEnergy(Benchmark):
    params = (list(MOLECULES), ERIS)
    param_names = ("molecule", "eri")
    setup_cache = staticmethod(common.build_all_tensors)

    def setup(self, cache, name, eri):
        self.dm = common.load_tensors(cache, name, "cpu", eri).dm_minao.numpy()
        self.mf = warm_pyscf(name, self.dm, eri)

    def time_pyscf_fock_energy(self, cache, name, eri):
        pyscf_fock_energy(self.mf, self.dm)


class EnergyMemory:
    """Peak RSS of loading the tensors and one E + backward (tensors counted: they are needed)."""

    params = (list(MOLECULES), ERIS)
    param_names = ("molecule", "eri")
    setup_cache = staticmethod(common.build_all_tensors)
    timeout = 600

    def peakmem_forward_backward(self, cache, name, eri):
        t = common.load_tensors(cache, name, "cpu", eri)
        energy_backward(t, common.initial_h(t))
