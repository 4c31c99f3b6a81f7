"""The JAX engine at a density-fitted level: energy, Fock, dE/dH and SCF against the torch
engine's DF and PySCF's DF-RKS (same auxiliary basis), water and methane, small basis and grid."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import random_symmetric

pytest.importorskip("jax")

from qptbench.dft import energy as torch_engine
from qptbench.dft import jax_engine, jax_scf
from qptbench.dft.density import aufbau_density
from qptbench.dft.geometry import Molecule
from qptbench.dft.jax_tensors import from_torch
from qptbench.dft.labels import make_rks, pyscf_rks
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_tensors


def _methane() -> Molecule:
    d = 1.087 / 3**0.5
    pos = [[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]]
    return Molecule.from_arrays(["C", "H", "H", "H", "H"], pos, name="methane").displaced(
        6, scale=0.05)


MOLECULES = {"water": lambda: Molecule.builtin("water").displaced(5, scale=0.05),
             "methane": _methane}


@functools.lru_cache(maxsize=4)
def _tensors(name: str, basis: str, xc: str):
    level = LevelOfTheory(basis=basis, xc=xc, grid_level=1, eri="df")
    mol = MOLECULES[name]()
    t = build_tensors(mol, level)
    return mol, level, t, from_torch(t)


def _mixed_density(t) -> torch.Tensor:
    """Half and half of two aufbau densities of disturbed minao Fock matrices: symmetric, not
    idempotent, as the sandwich's mixed iterations make them."""
    with torch.no_grad():
        h0 = torch_engine.fock(t, t.dm_minao)
        d1, d2 = (aufbau_density(h0 + random_symmetric(t.n_ao, seed, 0.05), t.l_inv, t.n_occ)
                  for seed in (7, 8))
    return 0.5 * (d1 + d2)


@pytest.mark.parametrize("name, basis, xc", [("water", "6-31g", "b3lyp5"),
                                             ("methane", "sto-3g", "pbe")])
def test_df_energy_and_fock_match_torch_and_pyscf_df(name, basis, xc):
    mol, level, t, tj = _tensors(name, basis, xc)
    assert tj.eri is None and tj.df_b.shape == tuple(t.df_b.shape)  # the factor, not N⁴
    dm = _mixed_density(t)
    e_j, f_j = jax_engine.energy_and_fock(tj, dm.numpy())
    e_j, f_j = float(e_j), np.asarray(f_j)
    with torch.no_grad():
        e_t, f_t = torch_engine.energy_and_fock(t, dm)
    mf = make_rks(mol, level)
    assert mf.with_df.auxbasis == level.auxbasis  # PySCF fits too, with the same basis
    e_ref, f_ref = mf.energy_tot(dm=dm.numpy()), mf.get_fock(dm=dm.numpy())
    for label, e, f in (("torch", float(e_t), f_t.numpy()), ("pyscf", e_ref, f_ref)):
        assert abs(e_j - e) <= 1e-9, (label, e_j - e)
        assert np.abs(f_j - f).max() <= 1e-8, (label, np.abs(f_j - f).max())
    # guards the comparison: the fitted level really differs from the exact one (1e-5 Ha)
    mf_dense = make_rks(mol, LevelOfTheory(basis=basis, xc=xc, grid_level=1))
    assert abs(e_j - mf_dense.energy_tot(dm=dm.numpy())) > 1e-7


def test_df_sandwich_gradient_matches_torch():
    # the torch engine's DF gradient is checked against finite differences in
    # test_density_fitting; equality with it carries that over
    _, _, t, tj = _tensors("water", "6-31g", "b3lyp5")
    with torch.no_grad():
        h0 = torch_engine.fock(t, t.dm_minao) + random_symmetric(t.n_ao, 5, scale=0.01)
    mixes = (0.5,)
    e, grad = jax_engine.energy_and_grad(tj, h0.numpy(), mixes)
    grad = np.asarray(grad)
    h = h0.clone().requires_grad_(True)
    e_t = torch_engine.energy(t, h, mixes)
    (g_t,) = torch.autograd.grad(e_t, h)
    g_t = g_t.numpy()
    assert abs(float(e) - float(e_t.detach())) <= 1e-9
    assert np.abs(grad - g_t).max() <= 1e-8 * np.abs(g_t).max(), np.abs(grad - g_t).max()


@pytest.mark.slow  # two SCFs to 1e-10 and a compile of the SCF step: ~10 s
def test_df_scf_converges_to_pyscf_df():
    mol, level, _, tj = _tensors("methane", "sto-3g", "pbe")
    ours = jax_scf.run_scf(tj, conv_tol=1e-10)
    ref = pyscf_rks(mol, level, conv_tol=1e-10)
    assert ours.converged and ref.converged
    assert abs(ours.energy - ref.energy) <= 1e-7, ours.energy - ref.energy
