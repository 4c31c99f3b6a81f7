"""AO screening on the grid (``dft.grid_ao``): AOs dropped per block of points, yet energies,
Fock matrices and gradients as without it — on two water molecules 6 Å apart, where most AOs
are negligible on most blocks, so none of this can pass with nothing screened."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from conftest import random_symmetric

from qptbench.dft.density import aufbau_density
from qptbench.dft.energy import energy, energy_and_fock, fock
from qptbench.dft.geometry import Molecule
from qptbench.dft.grid_ao import SCREEN_CUTOFF
from qptbench.dft.labels import make_rks
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.memory import estimate_tensor_bytes
from qptbench.dft.tensors import build_grids, build_mole, build_tensors
from qptbench.dft.xc import get_functional
from qptbench.evaluation.evaluator import tensor_bytes

LEVEL = LevelOfTheory(basis="6-31g", xc="b3lyp5", grid_level=1)


def _water_pair() -> Molecule:
    """Two waters 6 Å apart, displaced at random (no symmetry left)."""
    one = [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]]
    pos = one + [[x + 6.0, y, z] for x, y, z in one]
    return Molecule.from_arrays(["O", "H", "H"] * 2, pos, name="water-pair").displaced(21)


@functools.lru_cache(maxsize=1)
def _built():
    mol = _water_pair()
    return mol, build_tensors(mol, LEVEL)


def _kept_fraction(t) -> float:
    return t.ao_values.numel() / (t.ao_comp * t.n_ao * t.n_grid)


def test_screening_drops_aos_and_keeps_pyscfs_values():
    mol, t = _built()
    assert _kept_fraction(t) < 0.8  # measured 0.6: far from vacuous
    pmol = build_mole(mol, LEVEL.basis)
    grids = build_grids(pmol, LEVEL.grid_level)
    coords = grids.coords[grids.weights != 0]
    from pyscf.dft import numint

    ref = numint.eval_ao(pmol, coords, deriv=1).swapaxes(-1, -2)  # (4, N, G)
    dense = torch.cat([t.ao[None], t.ao_grad]).numpy()
    assert dense.shape == ref.shape
    dropped = dense == 0
    assert dropped.mean() > 0.2
    # what is stored is PySCF's value (to rounding: evaluated one block per call, ref all at
    # once); what is dropped is below the cutoff (gradients too)
    assert np.abs(dense - ref)[~dropped].max() <= 1e-14 * np.abs(ref).max()
    assert np.abs(ref[dropped]).max() <= 10 * SCREEN_CUTOFF


def test_screened_energy_and_fock_match_pyscf():
    mol, t = _built()
    with torch.no_grad():
        h = fock(t, t.dm_minao) + random_symmetric(t.n_ao, 4, scale=0.02)
        dm = aufbau_density(h, t.l_inv, t.n_occ)
        e, f = energy_and_fock(t, dm)
    mf = make_rks(mol, LEVEL)
    assert abs(float(e) - mf.energy_tot(dm.numpy())) <= 1e-9
    assert np.abs(f.numpy() - mf.get_fock(dm=dm.numpy())).max() <= 1e-8
    # an LDA on the same tensors: gradients dropped, values still screened
    lda = dataclasses.replace(t, xc=get_functional("svwn"), ao_grad=None)
    assert lda.ao_grad is None and lda.ao_values.numel() * 4 == t.ao_values.numel()
    mf.xc = "svwn"
    with torch.no_grad():
        e_lda, f_lda = energy_and_fock(lda, dm)
    assert abs(float(e_lda) - mf.energy_tot(dm.numpy())) <= 1e-9
    assert np.abs(f_lda.numpy() - mf.get_fock(dm=dm.numpy())).max() <= 1e-8


def test_screened_sandwich_gradient_matches_finite_differences():
    """Through a Fock build whose V_xc is differentiated (gathers and scatters of D's and V's
    blocks): dE/dH along a random direction against a Richardson central difference."""
    _, t = _built()
    with torch.no_grad():
        h0 = fock(t, t.dm_minao) + random_symmetric(t.n_ao, 5, scale=0.01)
    mixes = (0.5,)
    h = h0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(t, h, mixes), h)
    v = random_symmetric(t.n_ao, 6)
    v = v / v.norm()

    def central(step):
        with torch.no_grad():
            return (energy(t, h0 + step * v, mixes) - energy(t, h0 - step * v, mixes)) / (2 * step)

    fd = (4 * central(1e-4) - central(2e-4)) / 3
    assert abs(float((grad * v).sum() - fd)) <= 1e-6 * abs(float(fd)) + 1e-9


def test_memory_estimate_counts_the_screened_values():
    mol, t = _built()
    estimate = estimate_tensor_bytes(mol, LEVEL)
    stored = t.ao_values.numel() * 8
    assert estimate["ao"] + estimate["ao_grad"] == pytest.approx(stored, rel=0.03)
    assert estimate["total"] == pytest.approx(tensor_bytes(t), rel=0.05)
    assert stored < 0.8 * 4 * t.n_ao * t.n_grid * 8  # below the unscreened N × G


def test_density_on_the_screened_grid_is_pyscfs():
    """ρ and ∇ρ from the screened blocks (stored, and evaluated per block over a budget) vs
    PySCF's eval_rho from its unscreened AO values, on the same points."""
    from pyscf.dft import numint

    from qptbench.dft.energy import density_on_grid

    mol, t = _built()
    pmol = build_mole(mol, LEVEL.basis)
    grids = build_grids(pmol, LEVEL.grid_level)
    coords = grids.coords[grids.weights != 0]
    points = np.concatenate([np.arange(b.start, b.stop) for b in t.ao_blocks])
    assert len(points) < len(coords) or len(t.ao_blocks) > 1
    dm = _random_density(t)
    ref = numint.eval_rho(pmol, numint.eval_ao(pmol, coords[points], deriv=1), dm.numpy(),
                          xctype="GGA")                                      # (4, g)
    for tensors in (t, build_tensors(mol, LEVEL, ao_budget_gb=0.0)):
        rho, grad = density_on_grid(tensors, dm)
        assert np.abs(rho.numpy() - ref[0]).max() <= 1e-11 * np.abs(ref[0]).max()
        assert np.abs(grad.numpy() - ref[1:]).max() <= 1e-11 * np.abs(ref[1:]).max()


def _random_density(t) -> torch.Tensor:
    with torch.no_grad():
        h = fock(t, t.dm_minao) + random_symmetric(t.n_ao, 5, scale=0.02)
        return aufbau_density(h, t.l_inv, t.n_occ)
