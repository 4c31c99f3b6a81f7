"""MD sampler: deterministic, physical at 500 K, decorrelated frames (water; ethanol is slow)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qptbench.data.md import md_conformations, md_settings, sample_md
from qptbench.dft.geometry import Molecule
from qptbench.errors import InputError

pytest.importorskip("tblite")


def distances(mol: Molecule) -> np.ndarray:
    i, j = np.triu_indices(mol.n_atoms, 1)
    return np.linalg.norm(mol.positions[i] - mol.positions[j], axis=1)


def drmsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS difference of interatomic distances (Å): rotation- and translation-free."""
    return np.sqrt(np.mean((a - b) ** 2, axis=-1))


def test_deterministic_for_a_seed():
    water = Molecule.builtin("water")
    run = [sample_md(water, 3, seed=7, interval=5, equilibration_steps=20) for _ in range(2)]
    other = sample_md(water, 3, seed=8, interval=5, equilibration_steps=20)
    for a, b in zip(*run, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.name == "water" and np.all(a.numbers == water.numbers)
    assert not np.allclose(run[0][-1].positions, other[-1].positions)


def test_endless_iterator():
    frames = md_conformations(Molecule.builtin("water"), interval=1, equilibration_steps=0)
    assert len(list(itertools.islice(frames, 5))) == 5
    assert next(frames).n_atoms == 3  # still going


def test_water_at_500K_physical_and_decorrelated():
    water = Molecule.builtin("water")
    kept = np.array([distances(m) for m in sample_md(water, 100, seed=1, interval=20,
                                                      equilibration_steps=300)])
    steps = np.array([distances(m) for m in sample_md(water, 100, seed=1, interval=1,
                                                       equilibration_steps=300)])
    oh, hh = kept[:, :2].ravel(), kept[:, 2]  # pairs (O,H1), (O,H2), (H1,H2)
    # no dissociation, no H2: O-H stays a bond, the two H stay apart
    assert 0.80 < oh.min() and oh.max() < 1.25
    assert hh.min() > 1.2
    # thermal motion of the right size: classical O-H rms amplitude at 500 K is ~0.03 Å
    assert 0.01 < oh.std() < 0.06
    assert abs(oh.mean() - distances(water)[:2].mean()) < 0.03
    # consecutive MD steps are nearly the same structure; consecutive kept frames are as far
    # apart as random pairs of kept frames, i.e. the sampling has forgotten the last frame
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(kept), (2, 2000))
    random_pairs = drmsd(kept[a[a != b]], kept[b[a != b]]).mean()
    kept_ratio = drmsd(kept[1:], kept[:-1]).mean() / random_pairs
    step_ratio = drmsd(steps[1:], steps[:-1]).mean() / random_pairs
    assert step_ratio < 0.3
    assert 0.75 < kept_ratio < 1.4
    lag1 = np.corrcoef(kept[1:, 0], kept[:-1, 0])[0, 1]
    assert abs(lag1) < 0.5 < np.corrcoef(steps[1:, 0], steps[:-1, 0])[0, 1]


@pytest.mark.slow
def test_ethanol_keeps_its_bonds_at_500K():
    from ase.data import covalent_radii

    ethanol = Molecule.builtin("ethanol")
    r = covalent_radii[ethanol.numbers]
    i, j = np.triu_indices(ethanol.n_atoms, 1)
    bonded = distances(ethanol) < 1.2 * (r[i] + r[j])
    for mol in sample_md(ethanol, 50, seed=0, interval=20, equilibration_steps=500):
        d = distances(mol)
        assert np.all(d[bonded] < 1.35 * (r[i] + r[j])[bonded])
        assert np.all(d[~bonded] > 1.0 * (r[i] + r[j])[~bonded])


@pytest.mark.parametrize("kwargs", [dict(temperature_K=-1.0), dict(timestep_fs=5.0),
                                    dict(interval=0), dict(friction=0.0)])
def test_bad_settings(kwargs):
    with pytest.raises(InputError):
        next(md_conformations(Molecule.builtin("water"), **kwargs))


def test_settings_record_versions():
    s = md_settings(seed=3, temperature_K=400.0)
    assert s["kind"] == "md" and s["seed"] == 3 and s["temperature_K"] == 400.0
    assert s["interval"] == 50 and s["tblite_version"] != "unknown"
