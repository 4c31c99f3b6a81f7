"""The three training signals (``training.signals``): where each is zero, its gradient, and the
labels carried into a prepared molecule's canonical frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import cached_tensors, random_symmetric

from qptbench.dft.energy import energy, fock
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.scf import run_scf
from qptbench.dft.tensors import build_tensors
from qptbench.models.qpt_inputs import Vocabulary
from qptbench.training.labelled import LabelledPreparer
from qptbench.training.qpt import Preparer
from qptbench.training.signals import SignalLoss, hamiltonian_loss, sc_loss, sc_residual


@pytest.fixture(scope="module")
def converged():
    """Displaced water (no symmetry), B3LYP5, and its tightly converged Fock matrix."""
    _, t = cached_tensors("water", seed=7, grid_level=1)
    result = run_scf(t, conv_tol=1e-13, conv_tol_grad=1e-10)
    assert result.converged
    # one more Fock build from the converged Fock matrix's own density: the fixed point
    return t, result.fock + sc_residual(t, result.fock)


def test_sc_is_zero_at_the_scf_solution_and_only_there(converged):
    t, h = converged
    assert float(sc_residual(t, h).abs().max()) < 1e-8
    assert float(sc_loss(t, h)[0]) < 1e-8
    moved = h + random_symmetric(t.n_ao, 3, scale=1e-3)
    assert float(sc_loss(t, moved)[0]) > 1e-5


def test_energy_is_stationary_at_the_scf_solution(converged):
    t, h = converged
    x = h.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(t, x), x)
    moved = (h + random_symmetric(t.n_ao, 3, scale=1e-3)).requires_grad_(True)
    (grad_moved,) = torch.autograd.grad(energy(t, moved), moved)
    assert float(grad.abs().max()) < 1e-7
    assert float(grad_moved.abs().max()) > 1e-5


def _disturbed():
    """Displaced water's tensors and H = F(D_minao) plus a disturbance, as a network's output
    would look (no symmetry, so no entry of the residual sits at MAE's kink)."""
    _, t = cached_tensors("water", seed=8, grid_level=1)
    with torch.no_grad():
        return t, fock(t, t.dm_minao) + random_symmetric(t.n_ao, 5, scale=0.01)


def test_sc_gradient_matches_finite_differences():
    t, h0 = _disturbed()
    h = h0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sc_loss(t, h)[0], h)
    for seed in (1, 2):
        v = random_symmetric(t.n_ao, seed)
        v = v / v.norm()

        def central(step, v=v):
            with torch.no_grad():
                return float(sc_loss(t, h0 + step * v)[0] - sc_loss(t, h0 - step * v)[0]) / (
                    2 * step)

        fd = (4 * central(5e-6) - central(1e-5)) / 3  # Richardson: error O(step⁴)
        analytic = float((grad * v).sum())
        assert abs(analytic - fd) <= 1e-6 * abs(fd) + 1e-9, (seed, analytic, fd)


def test_sc_gradient_reaches_the_target_term():
    """The full derivative differs from the stop-gradient one (F(D(H)) as a constant target)."""
    t, h0 = _disturbed()
    h = h0.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(sc_loss(t, h)[0], h)
    target = (h0 + sc_residual(t, h0)).detach()
    h = h0.clone().requires_grad_(True)
    (stopped,) = torch.autograd.grad(hamiltonian_loss(h, target)[0], h)
    assert float((full - stopped).abs().max()) > 1e-3 * float(stopped.abs().max())


def test_labels_are_carried_into_the_canonical_frame():
    """A label given in the input frame of a rotated, moved molecule comes out as the same
    matrix of the canonical-frame molecule; h_core is exact (no grid), so 1e-10 holds."""
    level = LevelOfTheory(grid_level=1)
    base = cached_tensors("water", seed=9, grid_level=1)[0]
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = type(base)(base.numbers, base.positions @ q.T + [1.0, -2.0, 0.5], base.charge,
                       base.name)
    h_core_input = build_tensors(moved, level).h_core.numpy()
    prepared = LabelledPreparer(Preparer(Vocabulary.from_basis(level.basis), level))(
        (0, moved, h_core_input))
    canonical = build_tensors(prepared.sample.molecule, level).h_core
    assert prepared.sample.tensors is None  # the labels signal keeps no ERIs or grid
    np.testing.assert_allclose(prepared.label.numpy(), canonical.numpy(), atol=1e-10)

    loss = SignalLoss("labels", torch.device("cpu"))
    exact, _ = loss(lambda sample: canonical, prepared)
    off, _ = loss(lambda sample: canonical + 1e-3, prepared)
    assert float(exact) < 1e-12 < 1e-4 < float(off)
    assert loss.prep_n == 1  # the preparation is counted once, however often the item is seen


def test_unknown_signal_is_refused():
    with pytest.raises(ValueError, match="choose from labels, energy, sc"):
        SignalLoss("forces", torch.device("cpu"))
