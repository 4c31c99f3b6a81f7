"""The torch AO evaluator (``dft.gto``) against PySCF's ``eval_ao``: values and gradients for
s to f shells, general contractions, and the screened blocks of a real grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyscf import gto as pyscf_gto
from pyscf.dft import numint

from qptbench.dft.geometry import Molecule
from qptbench.dft.gto import eval_block, gto_basis
from qptbench.dft.tensors import build_grids, build_mole


def _water(basis: str):
    return pyscf_gto.M(atom="O 0 0 0.1; H 0.7 0.2 -0.4; H -0.75 0.1 -0.5", basis=basis,
                       verbose=0)


@pytest.mark.parametrize("basis", ["def2-svp", "def2-tzvp", "cc-pvdz"])  # d, f; general ctr
def test_values_and_gradients_match_pyscf(basis):
    mol = _water(basis)
    if basis == "cc-pvdz":
        assert any(mol.bas_nctr(i) > 1 for i in range(mol.nbas))  # general contractions
    if basis == "def2-tzvp":
        assert max(mol.bas_angular(i) for i in range(mol.nbas)) == 3
    points = np.random.default_rng(0).normal(scale=1.5, size=(300, 3))
    ref = numint.eval_ao(mol, points, deriv=1)                  # (4, g, N)
    every = torch.arange(mol.nao)
    ours = eval_block(gto_basis(mol), torch.as_tensor(points), every, with_grad=True)
    assert np.abs(ours.numpy() - ref.swapaxes(1, 2)).max() <= 1e-12 * np.abs(ref).max()
    values = eval_block(gto_basis(mol), torch.as_tensor(points), every, with_grad=False)
    assert values.shape == (1, mol.nao, len(points))
    assert np.abs(values[0].numpy() - ref[0].T).max() <= 1e-12 * np.abs(ref[0]).max()


def test_a_subset_of_shells_lands_in_its_rows():
    mol = build_mole(Molecule.builtin("ethanol"))
    coords = build_grids(mol, 1).coords[:500]
    ref = numint.eval_ao(mol, coords, deriv=1).swapaxes(1, 2)   # (4, N, g)
    loc = mol.ao_loc_nr()
    shells = [0, 3, 4, 9, mol.nbas - 1]                         # s, p, d on different atoms
    idx = np.concatenate([np.arange(loc[s], loc[s + 1]) for s in shells])
    ours = eval_block(gto_basis(mol), torch.as_tensor(coords), torch.as_tensor(idx), True)
    assert np.abs(ours.numpy() - ref[:, idx]).max() <= 1e-12 * np.abs(ref).max()
