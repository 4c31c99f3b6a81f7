"""The one evaluator: same H → same scores whatever the method's name; the label scores at the
floor; a rotated molecule's references are scored in their own frame; controls behave."""

from __future__ import annotations

import numpy as np
import pytest

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.evaluation import references
from qptbench.evaluation.evaluator import METRICS, Evaluator
from qptbench.evaluation.protocol import K_VALUES, iterate, zero_model_h
from qptbench.evaluation.results import RESULT_COLUMNS, aggregate, read_csv, write_csv
from qptbench.evaluation.stats import summarize

LEVEL = LevelOfTheory(basis="sto-3g", xc="b3lyp5", grid_level=1)


@pytest.fixture(scope="module")
def evaluator():
    base = Molecule.builtin("water")
    mols = [base.displaced(seed, 0.03) for seed in (1, 2)]
    refs = references.from_pyscf(mols, LEVEL)
    assert len(refs) == 2
    return Evaluator(refs, LEVEL, scf_molecules=1)


def test_label_scores_at_the_floor(evaluator):
    rows = evaluator.controls(names=("label",))
    for r in rows:
        assert r["floor_mev"] < 1e-4
        assert r["delta_e_mev"] <= 1e-4
        assert r["delta_h_uha"] < (1e-9 if r["dft_iterations"] == 0 else 1.0)
        assert r["psi_occ"] == pytest.approx(1.0, abs=1e-9)


def test_same_h_scores_identically_under_two_names(evaluator):
    rng = np.random.default_rng(0)
    preds = []
    for r in evaluator.refs:
        noise = rng.normal(scale=1e-3, size=r.fock.shape)
        preds.append(r.fock + 0.5 * (noise + noise.T))
    a = evaluator.score(preds, "qpt", seed=0)
    b = evaluator.score(preds, "qhnet", seed=0)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x.keys() - {"method"}:
            assert x[key] == y[key] or (np.isnan(x[key]) and np.isnan(y[key])), key
    # the noise costs energy at k = 0/1, and the DFT iterations remove most of the ΔH
    by_k = {r["dft_iterations"]: r for r in a if r["molecule"] == 0}
    assert by_k[0]["delta_h_uha"] > 100
    assert by_k[3]["delta_h_uha"] < by_k[0]["delta_h_uha"]
    assert by_k[0]["delta_e_mev"] == by_k[1]["delta_e_mev"]  # E₀ = E₁: energy of H's density


def test_energy_trained_methods_get_no_k0_hamiltonian_metrics(evaluator):
    preds = [r.fock + 3.0 * r.overlap for r in evaluator.refs]  # H + cS: the same density
    rows = evaluator.score(preds, "qpt", seed=0, fixes_h=False)
    k0 = [r for r in rows if r["dft_iterations"] == 0]
    assert all(np.isnan(r["delta_h_uha"]) and np.isnan(r["psi_occ"]) for r in k0)
    assert all(r["delta_e_mev"] < 1e-4 for r in k0)  # the density, hence E, is the label's


def test_references_scored_in_their_own_frame():
    """A rotated copy of a molecule gets its own tensors and grid: the label still scores at
    the floor (scoring it on the unrotated molecule's grid would not)."""
    mol = Molecule.builtin("water").displaced(3, 0.03)
    rot = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    turned = Molecule(mol.numbers, mol.positions @ rot.T + 1.0, mol.charge)
    refs = references.from_pyscf([mol, turned], LEVEL)
    ev = Evaluator(refs, LEVEL)
    assert max(ev.floor_mev) < 1e-4
    assert abs(refs[0].energy - refs[1].energy) > 0  # grids do not rotate: two frames differ


def test_controls_and_protocol_counts(evaluator):
    rows = evaluator.controls(scf=True)
    names = {r["method"] for r in rows}
    assert names == {"zero", "scf-diis", "label"}
    zero = {(r["molecule"], r["dft_iterations"]): r for r in rows if r["method"] == "zero"}
    diis = {(r["molecule"], r["dft_iterations"]): r for r in rows if r["method"] == "scf-diis"}
    for key in zero:  # DIIS differs from the zero model only once it has ≥ 2 vectors
        if key[1] <= 1:
            assert zero[key]["delta_e_mev"] == pytest.approx(diis[key]["delta_e_mev"])
    assert zero[(0, 3)]["delta_e_mev"] < zero[(0, 0)]["delta_e_mev"]
    with_scf = [r for r in rows if r["molecule"] == 0]
    assert all(r["scf_cycles_minao"] >= 1 for r in with_scf)
    label = [r for r in with_scf if r["method"] == "label"]
    assert all(r["scf_cycles"] < r["scf_cycles_minao"] for r in label)
    assert all(r["scf_effective_cycles"] == r["scf_cycles"] + r["dft_iterations"]
               for r in with_scf)
    assert all(np.isnan(r["scf_cycles"]) for r in rows if r["molecule"] == 1)


def test_paper_route_matches_the_training_sandwich(evaluator):
    """k = 3 is exactly the energy QPT trains and validates with (energy.sandwich)."""
    from qptbench.dft.energy import sandwich

    t = evaluator.tensors[0]
    h = zero_model_h(t)
    states = iterate(t, h)
    assert states[3].energy == pytest.approx(float(sandwich(t, h, (0.5, 0.0)).energy), abs=1e-10)
    assert states[1].energy == pytest.approx(float(sandwich(t, h).energy), abs=1e-10)


def test_results_file_round_trip(evaluator, tmp_path):
    rows = evaluator.controls(names=("zero",))
    results = aggregate(rows, costs={("zero", ""): {"wall_hours": 0.0}})
    assert {r["dft_iterations"] for r in results} == set(K_VALUES)
    path = write_csv(tmp_path / "results.csv", results, RESULT_COLUMNS)
    back = read_csv(path)
    assert list(back[0]) == list(RESULT_COLUMNS)
    for m in METRICS:
        assert float(back[0][m]) == pytest.approx(results[0][m])


def test_bootstrap_interval_covers_mean_and_pools_seeds():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s["ci_low"] <= s["mean"] == 2.5 <= s["ci_high"] and s["median"] == 2.5
    two = summarize({0: [1.0, 1.0], 1: [3.0, 3.0]})
    assert two["mean"] == 2.0 and two["ci_low"] == 1.0 and two["ci_high"] == 3.0
    assert np.isnan(summarize([float("nan")])["mean"])


def test_tensors_rebuilt_when_they_would_not_fit(evaluator):
    """With no room to keep tensors the evaluator rebuilds them per use: same scores."""
    lean = Evaluator(evaluator.refs, LEVEL, cache_bytes=0)
    assert not lean.tensors.keep and evaluator.tensors.keep
    assert lean.floor_mev == pytest.approx(evaluator.floor_mev, abs=1e-12)
    preds = [r.fock + 1e-3 * r.overlap for r in evaluator.refs]
    a, b = evaluator.score(preds, "m"), lean.score(preds, "m")
    assert [r["delta_e_mev"] for r in a] == pytest.approx([r["delta_e_mev"] for r in b])


def test_same_predictions_are_iterated_once(evaluator, monkeypatch):
    """A loop's last curve point and the final score of the same model are one computation;
    a prediction that differs in one bit is computed again, and a control's curve and rows
    share their routes too (counted as tensor builds on an evaluator that keeps none)."""
    import qptbench.dft.tensors as tensors_module

    lean = Evaluator(evaluator.refs, LEVEL, cache_bytes=0)
    builds = []
    real = tensors_module.build_tensors
    monkeypatch.setattr(tensors_module, "build_tensors",
                        lambda *a, **kw: builds.append(1) or real(*a, **kw))
    preds = [r.fock + 1e-3 * r.overlap for r in evaluator.refs]
    point = lean.curve_point(preds)
    assert len(builds) == len(preds)
    rows = lean.score(preds, "m")
    assert len(builds) == len(preds)
    fresh = evaluator.score(preds, "m")
    assert [r["delta_e_mev"] for r in rows] == pytest.approx([r["delta_e_mev"] for r in fresh])
    assert point["delta_e_mev_k1"] == pytest.approx(
        np.mean([r["delta_e_mev"] for r in fresh if r["dft_iterations"] == 1]))
    nudged = [p.copy() for p in preds]
    nudged[1][0, 0] = np.nextafter(nudged[1][0, 0], np.inf)
    lean.score(nudged, "m")
    assert len(builds) == 2 * len(preds)
    lean.control_curve("zero")
    lean.controls(names=("zero",))
    assert len(builds) == 3 * len(preds)
