"""pyscfad (https://github.com/fishjojo/pyscfad) as an external peer: its differentiable RKS energy.

What it times, and why that is the closest match pyscfad offers to our E + backward:
pyscfad has no function from a Hamiltonian to an energy, so the peer is the energy of a *given*
density and its gradient with respect to that density, ``jax.value_and_grad`` of
``RKS.energy_tot(dm)`` (one-electron part, J, K, XC on the grid, nuclear repulsion): the
gradient is the unsymmetrised Fock matrix.  Same level of theory as ours: B3LYP5/def2-SVP, the
same PySCF grid level with no small-density pruning (``small_rho_cutoff = 0``, as our grid;
PySCF's default drops near-empty points: 2e-10 Ha at water, the same grid no longer).  The
molecule and its integrals are constants (no nuclear derivatives).  Warm state: the RKS object
keeps its in-core ERIs and built grid after the first call, which also lets JAX compile its
primitives; pyscfad's energy cannot be ``jax.jit``-ed as a whole (its AO evaluation calls
into C with concrete arrays), so every call re-evaluates AO values on the grid and runs eagerly.

Our E + backward does a little more: aufbau(H) (one eigh) before the energy and the aufbau
backward after it (a few N³ products; negligible next to the N⁴ J/K at these sizes).

No relative imports: ``side_by_side.py`` (run as a script) imports this module too.
"""

from __future__ import annotations

from collections.abc import Callable


def missing_reason() -> str | None:
    """Why the peer cannot run here (one line), or None when pyscfad imports."""
    try:
        import pyscfad  # noqa: F401
        from pyscfad import dft, gto  # noqa: F401
    except ImportError as exc:
        return f"pyscfad not installed ({exc}); pip install 'qptbench[pyscfad]'"
    return None


def make_rks(molecule, level):
    """pyscfad's RKS for ``molecule`` at ``level`` (dense ERIs only), grid as ours."""
    import jax

    jax.config.update("jax_enable_x64", True)  # float64, as all DFT here
    from pyscfad import dft, gto

    if level.is_df:
        raise NotImplementedError("the pyscfad peer is set up for dense ERIs only")
    mol = gto.Mole()
    mol.atom = [(s, tuple(map(float, r)))
                for s, r in zip(molecule.symbols, molecule.positions, strict=True)]
    mol.unit = "Angstrom"
    mol.basis = level.basis
    mol.charge = int(molecule.charge)
    mol.spin = 0
    mol.verbose = 0
    mol.build()
    mf = dft.RKS(mol, xc=level.xc)
    mf.grids.level = level.grid_level
    mf.small_rho_cutoff = 0.0  # keep every grid point, as build_grids does
    mf.verbose = 0
    return mf


def energy_and_density_grad(molecule, level) -> Callable:
    """``step(dm) -> (E, dE/dD)`` on pyscfad's warm RKS object; call once to warm it up."""
    import jax

    mf = make_rks(molecule, level)
    value_and_grad = jax.value_and_grad(mf.energy_tot)

    def step(dm):
        return jax.block_until_ready(value_and_grad(jax.numpy.asarray(dm)))

    return step
