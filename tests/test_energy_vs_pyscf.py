"""E(D) and F(D) against PySCF's energy_tot(dm) and get_fock(dm=dm) on the same grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import cached_tensors, random_symmetric

from qptbench.dft.density import aufbau_density
from qptbench.dft.energy import energy_and_fock, total_energy
from qptbench.dft.labels import make_rks
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.xc import get_functional

MOLECULES = ["water", "ethanol", "malondialdehyde", "uracil"]
FUNCTIONALS = ["b3lyp", "b3lyp5", "pbe"]


def _test_density(t) -> torch.Tensor:
    """An idempotent but unconverged density: aufbau of a randomly disturbed minao Fock."""
    h0 = energy_and_fock(t, t.dm_minao)[1]
    return aufbau_density(h0 + random_symmetric(t.n_ao, seed=7, scale=0.02), t.l_inv, t.n_occ)


@pytest.mark.parametrize("name", MOLECULES)
def test_energy_and_fock_match_pyscf(name):
    mol, t = cached_tensors(name, seed=11)
    dm = _test_density(t)
    mf = make_rks(mol, LevelOfTheory(xc="b3lyp5"))
    dm_np = dm.numpy()
    for xc in FUNCTIONALS:
        tx = dataclasses.replace(t, xc=get_functional(xc))
        mf.xc = xc
        e_ref = mf.energy_tot(dm_np)
        f_ref = mf.get_fock(dm=dm_np)
        e, f = energy_and_fock(tx, dm)
        assert abs(float(e) - e_ref) <= 1e-9, (xc, float(e) - e_ref)
        assert np.abs(f.numpy() - f_ref).max() <= 1e-8, xc
        # the custom-backward energy is the same number
        assert float(total_energy(tx, dm)) == pytest.approx(float(e), abs=1e-12)


def test_functionals_really_differ():
    """Guards the comparison above: B3LYP (VWN-RPA) and B3LYP5 must not coincide."""
    _, t = cached_tensors("water", seed=11)
    dm = _test_density(t)
    e = {xc: float(energy_and_fock(dataclasses.replace(t, xc=get_functional(xc)), dm)[0])
         for xc in FUNCTIONALS}
    assert abs(e["b3lyp"] - e["b3lyp5"]) > 0.01  # ~1 eV for water
    assert abs(e["pbe"] - e["b3lyp5"]) > 0.01
