"""Per-geometry tensors: sizes derived from the basis, and sane against PySCF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import cached_tensors

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_mole, build_tensors
from qptbench.errors import InputError


def test_water_tensors_are_consistent():
    mol, t = cached_tensors("water")
    pmol = build_mole(mol)
    assert (t.n_ao, t.n_occ) == (pmol.nao, pmol.nelectron // 2) == (24, 5)
    n = t.n_ao
    assert t.eri.shape == (n, n, n, n) and t.ao.shape == (n, t.n_grid)
    assert t.ao_grad.shape == (3, n, t.n_grid)
    assert all(x.dtype == torch.float64 for x in (t.overlap, t.eri, t.ao, t.weights))
    # the Cholesky orthogonaliser whitens S
    eye = t.l_inv @ t.overlap @ t.l_inv.T
    assert torch.allclose(eye, torch.eye(n, dtype=torch.float64), atol=1e-10)
    # the grid integrates a density to its analytic electron count tr(D S)
    rho = torch.einsum("ng,nm,mg->g", t.ao, t.dm_minao, t.ao)
    assert float(t.weights @ rho) == pytest.approx(float((t.dm_minao * t.overlap).sum()), abs=1e-5)
    assert t.e_nuc == pytest.approx(pmol.energy_nuc(), abs=1e-12)
    assert np.allclose(t.eri.numpy(), pmol.intor("int2e").reshape((n,) * 4), atol=1e-14)
    assert set(t.seconds) == {"one_electron", "eri", "grid", "ao_values"}


def test_lda_needs_no_gradients_and_threshold_drops_small_eris():
    mol = Molecule.builtin("water")
    t = build_tensors(mol, LevelOfTheory(xc="lda", grid_level=0, eri_threshold=1e-6))
    assert t.ao_grad is None
    nonzero = t.eri[t.eri != 0].abs()
    assert float(nonzero.min()) >= 1e-6
    assert int((t.eri == 0).sum()) > 0


def test_level_validation():
    with pytest.raises(InputError, match="grid level"):
        LevelOfTheory(grid_level=12)
    with pytest.raises(InputError, match="ERI threshold"):
        LevelOfTheory(eri_threshold=-1.0)


def test_sizes_follow_the_basis():
    mol = Molecule.builtin("water")
    t = build_tensors(mol, LevelOfTheory(basis="sto-3g", grid_level=0))
    assert t.n_ao == 7 and t.n_occ == 5
