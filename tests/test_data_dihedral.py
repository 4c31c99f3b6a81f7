"""Alanine dipeptide (φ, ψ) sampler: angles as drawn, rigid otherwise, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from qptbench.data.dihedral import (
    angle_difference,
    backbone_dihedrals,
    dihedral_angles,
    dihedral_settings,
    sample_dihedrals,
)
from qptbench.dft.geometry import Molecule
from qptbench.errors import InputError

pytest.importorskip("rdkit")


def test_builtin_backbone():
    mol = Molecule.builtin("alanine_dipeptide")
    assert mol.n_atoms == 22 and mol.formula == "C6H12N2O2"
    phi, psi = backbone_dihedrals(mol)
    # φ = C(=O)-N-Cα-C, ψ = N-Cα-C(=O)-N
    assert [mol.symbols[i] for i in phi] == ["C", "N", "C", "C"]
    assert [mol.symbols[i] for i in psi] == ["N", "C", "C", "N"]
    assert phi[1:] == psi[:3]
    # the ASE dihedral convention agrees with ours on the circle: ASE returns [0, 360), and an
    # angle of -1e-14° comes back as 360 - 1e-14 (ASE 3.29), so compare differences wrapped
    a = mol.to_ase()
    for idx, value in zip((phi, psi), dihedral_angles(mol), strict=True):
        assert angle_difference(a.get_dihedral(*idx), value) == pytest.approx(0, abs=1e-6)


def test_angle_difference_wraps():
    assert angle_difference(360.0 - 1e-12, 0.0) == pytest.approx(0.0, abs=1e-9)
    assert angle_difference(0.0, 359.0) == pytest.approx(1.0)
    assert angle_difference(-179.0, 179.0) == pytest.approx(2.0)
    assert angle_difference(90.0, -90.0) == pytest.approx(-180.0)


def test_angles_in_box_and_geometry_rigid():
    ref = Molecule.builtin("alanine_dipeptide")
    d_ref = np.linalg.norm(ref.positions[:, None] - ref.positions[None], axis=-1)
    bonded = (d_ref < 1.6) & (d_ref > 0)
    frames = sample_dihedrals(ref, 20, seed=3)
    angles = np.array([dihedral_angles(m) for m in frames])
    assert np.all((angles >= -1e-6) & (angles <= 180 + 1e-6))
    assert angles.std(axis=0).min() > 20  # spread over the box, not stuck
    draws = np.random.default_rng(3).uniform(0, 180, size=(20, 2))  # same stream, no clashes
    np.testing.assert_allclose(angle_difference(angles, draws), 0.0, atol=1e-6)
    for m in frames:
        d = np.linalg.norm(m.positions[:, None] - m.positions[None], axis=-1)
        np.testing.assert_allclose(d[bonded], d_ref[bonded], atol=1e-8)


def test_deterministic_and_full_box():
    a = sample_dihedrals(n=3, seed=5, phi_range=(-180, 180), psi_range=(-180, 180))
    b = sample_dihedrals(n=3, seed=5, phi_range=(-180, 180), psi_range=(-180, 180))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)
    assert dihedral_settings(5)["phi_range_deg"] == [0.0, 180.0]


def test_needs_alanine_dipeptide_and_a_sane_box():
    with pytest.raises(InputError, match="backbone"):
        sample_dihedrals(Molecule.builtin("ethanol"), 1)
    with pytest.raises(InputError, match="range"):
        sample_dihedrals(n=1, phi_range=(90, 0))
