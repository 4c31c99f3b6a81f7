"""Metrics against a converged PySCF RKS and exact identities."""

import numpy as np
import pytest
from pyscf import dft

from qptbench.dft.geometry import Molecule
from qptbench.dft.tensors import build_mole
from qptbench.evaluation.metrics import HARTREE_TO_MEV, energy_error_mev, hamiltonian_metrics
from qptbench.ledger import Ledger, read_ledger, totals


@pytest.fixture(scope="module")
def water_rks():
    mol = build_mole(Molecule.builtin("water"))
    mf = dft.RKS(mol, xc="b3lyp5")
    mf.grids.level = 1
    mf.conv_tol = 1e-11
    mf.kernel()
    return mf


def test_identical_hamiltonians_score_zero(water_rks):
    f, s = water_rks.get_fock(), water_rks.get_ovlp()
    m = hamiltonian_metrics(f, f, s, 5)
    assert m["delta_h_uha"] == 0 and m["delta_eps_all_uha"] == 0
    assert m["psi_cos_occ"] == pytest.approx(1.0, abs=1e-12)


def test_a_shift_by_the_overlap_moves_every_eigenvalue_by_c(water_rks):
    f, s = water_rks.get_fock(), water_rks.get_ovlp()
    c = 3e-4  # H + cS has the same orbitals and ε + c
    m = hamiltonian_metrics(f + c * s, f, s, 5)
    assert m["delta_eps_all_uha"] == pytest.approx(300.0, rel=1e-8)
    assert m["delta_eps_occ_uha"] == pytest.approx(300.0, rel=1e-8)
    assert m["delta_h_uha"] == pytest.approx(c * np.abs(s).mean() * 1e6, rel=1e-12)
    assert m["psi_cos_occ"] == pytest.approx(1.0, abs=1e-10)


def test_against_pyscf_orbitals_of_another_hamiltonian(water_rks):
    """H_core vs the converged Fock: Δε and ψ from PySCF's own mo_energy / mo_coeff."""
    mf = water_rks
    s, h = mf.get_ovlp(), mf.get_hcore()
    eps_core, c_core = mf.eig(h, s)
    m = hamiltonian_metrics(h, mf.get_fock(), s, 5)
    d = np.abs(eps_core - mf.mo_energy) * 1e6
    assert m["delta_eps_all_uha"] == pytest.approx(d.mean(), rel=1e-8)
    assert m["delta_eps_occ_uha"] == pytest.approx(d[:5].mean(), rel=1e-8)
    cos = np.abs(np.einsum("mi,mn,ni->i", c_core[:, :5], s, mf.mo_coeff[:, :5]))
    assert m["psi_cos_occ"] == pytest.approx(cos.mean(), rel=1e-6)  # mo_coeff: last cycle
    assert 0.5 < m["psi_cos_occ"] < 0.999


def test_energy_error_unit():
    assert energy_error_mev(-76.0, -76.001) == pytest.approx(27.211386245988, rel=1e-9)
    assert HARTREE_TO_MEV == pytest.approx(27211.386245988)


def test_ledger_survives_a_torn_line(tmp_path):
    ledger = Ledger(tmp_path / "l.jsonl")
    with ledger.phase("label", n=3) as extra:
        extra["n_failed"] = 1
    ledger.record("train", 2.0, 1.5)
    with open(tmp_path / "l.jsonl", "a") as f:
        f.write('{"phase": "tra')  # killed mid-write
    entries = read_ledger(tmp_path / "l.jsonl")
    assert [e["phase"] for e in entries] == ["label", "train"]
    assert entries[0]["n"] == 3 and entries[0]["n_failed"] == 1 and "host" in entries[0]
    assert totals(entries)["train"] == 2.0
    with pytest.raises(ValueError, match="unknown ledger phase"):
        ledger.record("coffee", 1.0)
