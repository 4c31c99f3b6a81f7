"""AO values over a memory budget are not stored but evaluated per block (``grid_ao``,
``gto``): the energy, Fock matrix and sandwich gradient still match PySCF and finite
differences, the graph keeps no AO values, and the memory estimate and CLI follow the budget."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qptbench.cli.main import app
from qptbench.dft.energy import energy, energy_and_fock, fock, sandwich
from qptbench.dft.geometry import Molecule
from qptbench.dft.labels import make_rks
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.memory import estimate_tensor_bytes
from qptbench.dft.tensors import AO_BUDGET_ENV, build_tensors
from qptbench.errors import InputError

LEVEL = LevelOfTheory(grid_level=1, eri="df")


@pytest.fixture(scope="module")
def ethanol():
    mol = Molecule.builtin("ethanol").displaced(3, scale=0.05)
    return mol, build_tensors(mol, LEVEL, ao_budget_gb=0.0), build_tensors(mol, LEVEL)


def test_over_the_budget_nothing_is_stored_and_pyscf_still_agrees(ethanol):
    mol, t, stored = ethanol
    assert t.ao_basis is not None and t.ao_values.numel() == 0
    assert stored.ao_basis is None and stored.ao_values.numel() > 0
    assert t.ao_blocks == tuple(  # the same screen
        b._replace(offset=0) for b in stored.ao_blocks)
    mf = make_rks(mol, LEVEL)
    dm = t.dm_minao
    e, f = energy_and_fock(t, dm)
    assert abs(float(e) - mf.energy_tot(dm=dm.numpy())) <= 1e-9
    assert np.abs(f.numpy() - mf.get_fock(dm=dm.numpy())).max() <= 1e-8


def test_sandwich_gradient_recomputes_and_matches_finite_differences(ethanol):
    _, t, stored = ethanol
    h0 = fock(t, t.dm_minao).detach()
    step = torch.from_numpy(np.random.default_rng(1).normal(size=h0.shape))
    step = 1e-3 * (step + step.T)
    h = h0.clone().requires_grad_(True)
    saved = []
    held = {v.untyped_storage().data_ptr() for v in vars(t).values()
            if isinstance(v, torch.Tensor)}

    def pack(x):  # what the graph keeps beyond views of the tensors (B, the weights, ...)
        if x.untyped_storage().data_ptr() not in held:
            saved.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss = sandwich(t, h, mixes=(0.5, 0.0)).energy
    (grad,) = torch.autograd.grad(loss, h)
    # nothing the size of the AO values is kept: the largest saved tensors are grid-sized
    assert max(saved) < 0.05 * stored.ao_values.numel()
    def central(eps: float) -> float:
        with torch.no_grad():
            return float(energy(t, h0 + eps * step, (0.5, 0.0))
                         - energy(t, h0 - eps * step, (0.5, 0.0))) / (2 * eps)

    fd = (4 * central(1e-3) - central(2e-3)) / 3      # Richardson: the eps² error cancels
    assert float((grad * step).sum()) == pytest.approx(float(fd), rel=1e-6)
    h_stored = h0.clone().requires_grad_(True)
    sandwich(stored, h_stored, mixes=(0.5, 0.0)).energy.backward()
    assert torch.allclose(grad, h_stored.grad, rtol=0, atol=1e-10)


def test_estimate_follows_the_budget(monkeypatch):
    mol, level = Molecule.builtin("uracil"), LevelOfTheory(eri="df")
    full = estimate_tensor_bytes(mol, level)
    capped = estimate_tensor_bytes(mol, level, ao_budget_gb=0.01)
    assert full["ao"] > 0.01e9 and capped["ao"] == capped["ao_grad"] == 0
    assert full["ao_work"] == 0 and capped["ao_work"] > 0
    assert capped["total"] < 0.7 * full["total"]
    monkeypatch.setenv(AO_BUDGET_ENV, "0.01")
    assert estimate_tensor_bytes(mol, level) == capped
    assert estimate_tensor_bytes(mol, level, ao_budget_gb=100) == full
    monkeypatch.setenv(AO_BUDGET_ENV, "lots")
    with pytest.raises(InputError, match=AO_BUDGET_ENV):
        estimate_tensor_bytes(mol, level)


def test_cli_budget_option(tmp_path, monkeypatch):
    # set (empty = no budget), so that the teardown removes what the CLI sets in os.environ
    monkeypatch.setenv(AO_BUDGET_ENV, "")
    runner = CliRunner()
    bad = runner.invoke(app, ["--ao-budget-gb", "-1", "scf", "--molecule", "water"])
    assert bad.exit_code == 2 and "--ao-budget-gb must be >= 0" in bad.output
    ok = runner.invoke(app, ["--ao-budget-gb", "0", "scf", "--molecule", "water",
                             "--grid-level", "1", "--eri", "df"])
    assert ok.exit_code == 0, ok.output
    assert os.environ.get(AO_BUDGET_ENV) == "0.0"
    monkeypatch.setenv(AO_BUDGET_ENV, "")
    plain = runner.invoke(app, ["scf", "--molecule", "water", "--grid-level", "1", "--eri",
                                "df"])
    last = [line for line in ok.output.splitlines() if "E_total" in line or "energy" in line]
    assert last and last == [line for line in plain.output.splitlines()
                             if "E_total" in line or "energy" in line]
