"""The HDF5 store and the splits: round trips, laziness, journal overlay, clear errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from qptbench.data import journal
from qptbench.data.splits import default_sizes, make_splits
from qptbench.data.store import Dataset, create_dataset
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError


def conformations(n=5):
    ethanol = Molecule.builtin("ethanol")
    return [ethanol.displaced(k, 0.03) for k in range(n)]


def make(path, n=5):
    return create_dataset(path, conformations(n), sampler={"kind": "test", "seed": 3},
                          splits=make_splits(n, 3, 1, seed=42), split_seed=42, split_rule="given")


def fake_label(rng, n_ao=4):
    a = rng.normal(size=(n_ao, n_ao))
    return dict(energy=-1.5, fock=a + a.T, overlap=np.eye(n_ao), mo_energy=np.arange(n_ao),
                n_occ=2, cycles=9, converged=True, wall_seconds=2.0, cpu_seconds=3.0, threads=1,
                host="h", pyscf_version="v", reason="")


def test_round_trip(tmp_path):
    confs = conformations()
    path = make(tmp_path / "e.h5")
    with Dataset.open(path) as ds:
        assert len(ds) == 5 and ds.name == "ethanol" and ds.charge == 0
        assert ds.sampler == {"kind": "test", "seed": 3} and ds.level is None
        np.testing.assert_array_equal(ds.numbers, confs[0].numbers)
        for i, mol in enumerate(confs):
            np.testing.assert_array_equal(ds.molecule(i).positions, mol.positions)
        assert ds.molecule(-1).formula == "C2H6O"
        split = {s: ds.split(s) for s in ("train", "val", "test")}
        assert not ds.has_label(0) and len(ds.labelled()) == 0
        cost = ds.label_cost()
        assert cost.n_labels == 0 and cost.wall_seconds == 0
    # QHNet's convention: RandomState(seed).permutation, first train, next val, rest test
    order = np.random.RandomState(42).permutation(5)
    assert set(split["train"]) == set(order[:3]) and set(split["val"]) == {order[3]}
    assert set(split["test"]) == {order[4]}
    with h5py.File(path) as f:  # one conformation per chunk: reads stay lazy
        assert f["positions"].chunks == (1, 9, 3)


def test_splits_deterministic_and_md17_sizes():
    a, b = make_splits(100, 50, 10, seed=1), make_splits(100, 50, 10, seed=1)
    c = make_splits(100, 50, 10, seed=2)
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert not np.array_equal(a["train"], c["train"])
    assert sorted(np.concatenate(list(a.values()))) == list(range(100))
    assert default_sizes("water", 4999) == (500, 500, "md17")
    assert default_sizes("ethanol", 30000) == (25000, 500, "md17")
    assert default_sizes("ethanol", 10) == (8, 1, "80/10/10")
    with pytest.raises(InputError, match="exceed"):
        make_splits(10, 8, 3)


def test_journal_overlay_then_fold(tmp_path):
    path = make(tmp_path / "e.h5")
    rng = np.random.default_rng(0)
    level = LevelOfTheory(grid_level=1)
    good = fake_label(rng)
    journal.commit(path, 2, 1, level, good)
    journal.commit(path, 4, 2, level, {**fake_label(rng), "reason": "SCF not converged"})
    for folded in (False, True):
        with Dataset.open(path) as ds:
            assert ds.level == level
            assert list(ds.labelled()) == [2] and list(ds.failed()) == [4]
            lab = ds.label(2)
            np.testing.assert_array_equal(lab.fock, good["fock"])
            assert (lab.energy, lab.cycles, lab.host) == (-1.5, 9, "h")
            assert ds.failure(4) == "SCF not converged" and ds.failure(2) is None
            assert 4 not in np.concatenate([ds.split(s) for s in ("train", "val", "test")])
            cost = ds.label_cost()
            assert (cost.n_labels, cost.n_failed, cost.wall_seconds) == (1, 1, 4.0)
            assert cost.mean_seconds_per_label == 4.0
        if not folded:
            assert journal.fold(path, conv_tol=1e-10, max_cycle=50) == 2
    with h5py.File(path) as f:
        assert f["labels/fock"].chunks == (1, 4, 4)
        assert np.isnan(f["labels/fock"][4]).all()  # a failed SCF is never stored as a label
        assert json.loads(f["labels"].attrs["level"])["grid_level"] == 1
    assert not journal.pending(path)


def test_errors(tmp_path):
    path = make(tmp_path / "e.h5")
    with pytest.raises(InputError, match="exists"):
        make(path)
    mixed = [*conformations(2), Molecule.builtin("water")]
    with pytest.raises(InputError, match="other atoms"):
        create_dataset(tmp_path / "m.h5", mixed, splits={}, split_seed=0)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="not a qptbench dataset"):
        Dataset.open(tmp_path / "other.h5")
    with Dataset.open(path) as ds:
        with pytest.raises(InputError, match="not labelled yet"):
            ds.label(0)
        with pytest.raises(InputError, match="out of range"):
            ds.molecule(5)
        with pytest.raises(InputError, match="unknown split"):
            ds.split("validation")
    journal.commit(path, 0, 1, LevelOfTheory(xc="pbe"), fake_label(np.random.default_rng(1)))
    journal.commit(path, 1, 1, LevelOfTheory(), fake_label(np.random.default_rng(1)))
    with pytest.raises(InputError, match="labelled at"):
        journal.fold(path)
