"""dE/dH by autograd against central finite differences."""

from __future__ import annotations

import pytest
import torch
from conftest import cached_tensors, random_symmetric

from qptbench.dft.density import aufbau_density
from qptbench.dft.energy import energy, fock
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_tensors


def _central_difference(t, h0, v, mixes, step):
    with torch.no_grad():
        return (energy(t, h0 + step * v, mixes) - energy(t, h0 - step * v, mixes)) / (2 * step)


def _directional_check(t, h0, mixes, seeds=(1, 2, 3), step=2e-4, rtol=1e-6):
    """Directional derivatives along the gradient and random unit symmetric V against a
    Richardson-extrapolated central difference (error O(step⁴); round-off ~1e-12 Ha / step)."""
    h = h0.clone().requires_grad_(True)
    e = energy(t, h, mixes)
    (grad,) = torch.autograd.grad(e, h)
    assert torch.isfinite(grad).all()
    directions = [grad / grad.norm()] + [random_symmetric(t.n_ao, seed) for seed in seeds]
    for seed, v in enumerate(directions):
        v = v / v.norm()
        coarse = _central_difference(t, h0, v, mixes, step)
        fine = _central_difference(t, h0, v, mixes, step / 2)
        fd = (4 * fine - coarse) / 3
        analytic = (grad * v).sum()
        # 1e-9 absolute: the difference quotient's round-off floor, far below |dE/dH| ~ 1e-2..1
        assert abs(float(analytic - fd)) <= rtol * abs(float(fd)) + 1e-9, (seed, analytic, fd)


def _h_init(t):
    """H = F(D_minao) plus a disturbance, as a network's output would look."""
    with torch.no_grad():
        return fock(t, t.dm_minao) + random_symmetric(t.n_ao, 5, scale=0.01)


@pytest.mark.parametrize("mixes", [(), (0.5,), (0.5, 0.0)], ids=["1-iter", "2-iter", "sandwich"])
def test_energy_gradient_matches_finite_differences(mixes):
    _, t = cached_tensors("water", seed=3)
    _directional_check(t, _h_init(t), mixes)


def test_gradient_pbe_and_b3lyp_sandwich():
    for xc in ("pbe", "b3lyp"):
        _, t = cached_tensors("water", seed=4, xc=xc, grid_level=1)
        _directional_check(t, _h_init(t), (0.5, 0.0), seeds=(9,))


def test_gradcheck_water():
    _, t = cached_tensors("water", xc="b3lyp5", grid_level=1)
    h = _h_init(t).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: energy(t, x), (h,), eps=1e-6, atol=1e-7, rtol=1e-6)


def _methane() -> Molecule:
    d = 1.087 / 3**0.5  # tetrahedral C–H of 1.087 Å: exact T_d symmetry, triply degenerate HOMO
    pos = [[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]]
    return Molecule.from_arrays(["C", "H", "H", "H", "H"], pos, name="methane")


def test_degenerate_occupied_orbitals_give_finite_correct_gradients():
    t = build_tensors(_methane(), LevelOfTheory(grid_level=1))
    h0 = fock(t, t.dm_minao).detach()
    eps = torch.linalg.eigvalsh(t.l_inv @ h0 @ t.l_inv.T)
    homo = eps[t.n_occ - 3: t.n_occ]
    assert float(homo.max() - homo.min()) < 1e-8  # really degenerate
    _directional_check(t, h0, ())
    _directional_check(t, h0, (0.5, 0.0), seeds=(4,))


def test_generic_eigh_backward_fails_where_ours_does_not():
    """Witness that the degenerate test tests something.

    At H = F₀ the aufbau density of H makes tr(D(H) F₀) stationary (occupied–virtual blocks of F₀
    vanish in its own eigenbasis), so the exact gradient is zero.  torch's generic eigh backward
    mixes in the degenerate occupied pairs and returns O(10⁻²) garbage; ours returns ~0.
    """
    t = build_tensors(_methane(), LevelOfTheory(grid_level=1))
    f0 = fock(t, t.dm_minao).detach()
    h = f0.clone().requires_grad_(True)
    _, u = torch.linalg.eigh(t.l_inv @ h @ t.l_inv.T)
    c = t.l_inv.T @ u[:, : t.n_occ]
    (g_generic,) = torch.autograd.grad((2 * c @ c.T * f0).sum(), h)
    h = f0.clone().requires_grad_(True)
    (g_ours,) = torch.autograd.grad((aufbau_density(h, t.l_inv, t.n_occ) * f0).sum(), h)
    assert float(g_ours.abs().max()) < 1e-10
    assert not torch.isfinite(g_generic).all() or float(g_generic.abs().max()) > 1e-4
