"""The torch bridge to the JAX engine: a QPT-like loss and its parameter gradients agree with
the torch engine's (water at two geometries and methane, 6-31G, grid level 1)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_symmetric

pytest.importorskip("jax")

from qptbench.dft import energy as torch_engine
from qptbench.dft import jax_torch
from qptbench.dft.geometry import Molecule
from qptbench.dft.jax_tensors import from_torch
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_tensors
from qptbench.errors import InputError

LEVEL = LevelOfTheory(basis="6-31g", xc="b3lyp5", grid_level=1)


def _molecules() -> list[Molecule]:
    d = 1.087 / 3**0.5
    methane = Molecule.from_arrays(
        ["C", "H", "H", "H", "H"],
        [[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]], name="methane")
    water = Molecule.builtin("water")
    return [water.displaced(41, scale=0.05), water.displaced(42, scale=0.05), methane]


def _loss(engine, batch, weights, mixes):
    """A QPT-shaped loss: mean energy of H = H_init + a learned symmetric correction, the
    correction one shared parameter matrix sliced to each molecule's basis."""
    total = 0.0
    for t, tj, h_init in batch:
        n = t.n_ao
        w = weights[:n, :n]
        h = h_init + 0.01 * (w + w.T)
        total = total + (torch_engine.energy(t, h, mixes) if engine == "torch"
                         else jax_torch.energy(tj, h, mixes))
    return total / len(batch)


# two waters share one compile; methane (a degenerate HOMO) only in the cheaper 1-iteration loss
@pytest.mark.parametrize("mixes, n_mol", [((), 3), ((0.5,), 2)], ids=["1-iter", "2-iter"])
def test_loss_and_gradients_match_the_torch_engine(mixes, n_mol):
    batch = []
    for mol in _molecules()[:n_mol]:
        t = build_tensors(mol, LEVEL)
        with torch.no_grad():
            h_init = torch_engine.fock(t, t.dm_minao)
        batch.append((t, from_torch(t), h_init))
    n_max = max(t.n_ao for t, _, _ in batch)
    results = {}
    for engine in ("torch", "jax"):
        weights = random_symmetric(n_max, seed=3).requires_grad_(True)
        loss = _loss(engine, batch, weights, mixes)
        (grad,) = torch.autograd.grad(loss, weights)
        results[engine] = (float(loss.detach()), grad)
    (loss_t, grad_t), (loss_j, grad_j) = results["torch"], results["jax"]
    assert abs(loss_j - loss_t) <= 1e-8 * abs(loss_t)
    assert float((grad_j - grad_t).abs().max()) <= 1e-8 * float(grad_t.abs().max())
    assert float(grad_t.abs().max()) > 1e-3  # a real gradient, not two zeros


def test_no_grad_and_bad_dtype():
    t = build_tensors(_molecules()[0], LEVEL)
    tj = from_torch(t)
    with torch.no_grad():
        h = torch_engine.fock(t, t.dm_minao)
        e = jax_torch.energy(tj, h)
    assert not e.requires_grad
    assert abs(float(e) - float(torch_engine.energy(t, h))) <= 1e-9
    with pytest.raises(InputError, match="float64"):
        jax_torch.energy(tj, h.float())
