"""The torch DIIS SCF converges to PySCF's RKS energy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cached_tensors

from qptbench.dft.labels import pyscf_rks
from qptbench.dft.scf import run_scf


@pytest.mark.parametrize("name", ["water", "ethanol", "malondialdehyde", "uracil"])
def test_scf_converges_to_pyscf(name):
    mol, t = cached_tensors(name)
    ours = run_scf(t, conv_tol=1e-10)
    ref = pyscf_rks(mol, t.level, conv_tol=1e-10)
    assert ours.converged and ref.converged
    assert abs(ours.energy - ref.energy) <= 1e-7
    # orbital energies and the converged Fock matrix agree too (µHa level)
    occ = slice(0, t.n_occ)
    assert np.abs(ours.mo_energy.numpy()[occ] - ref.mo_energy[occ]).max() < 1e-5
    assert np.abs(ours.fock.numpy() - ref.fock).max() < 1e-5


def test_scf_reports_non_convergence():
    _, t = cached_tensors("water")
    result = run_scf(t, max_cycle=1)
    assert not result.converged
    assert result.iterations == 1
