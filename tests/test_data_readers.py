"""Readers: SchNOrb .db (ORCA order, float32) -> PySCF order; sGDML/rMD17 .npz; xyz trajectories."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from qptbench.data.readers import (
    read_conformations,
    read_schnorb,
    read_sgdml,
    read_xyz_trajectory,
    schnorb_metadata,
)
from qptbench.dft.geometry import Molecule
from qptbench.errors import InputError

# ORCA lists m as 0, +1, -1, +2, -2: p as (z, x, y), d as (z2, xz, yz, x2-y2, xy)
ORCA_RANK = {"px": 1, "py": 2, "pz": 0, "dz^2": 0, "dxz": 1, "dyz": 2, "dx2-y2": 3, "dxy": 4}


def orca_index(pmol) -> np.ndarray:
    """Built from PySCF's own AO labels, independently of qptbench.dft.ao_order."""
    labels = pmol.ao_labels(fmt=False)
    index = []
    for shell in range(pmol.nbas):
        for ctr in range(pmol.bas_nctr(shell)):
            l = pmol.bas_angular(shell)  # noqa: E741
            start = pmol.ao_loc[shell] + ctr * (2 * l + 1)
            aos = list(range(start, start + 2 * l + 1))
            if l > 0:
                aos.sort(key=lambda i: ORCA_RANK[labels[i][2][1:] + labels[i][3]])
            index += aos
    return np.asarray(index)


def pyscf_matrices(mol: Molecule):
    from pyscf import gto

    pmol = gto.M(atom=[(s, tuple(r)) for s, r in zip(mol.symbols, mol.positions, strict=True)],
                 basis="def2-svp", unit="Angstrom", verbose=0)
    s = pmol.intor("int1e_ovlp")
    h = pmol.intor("int1e_kin") + pmol.intor("int1e_nuc")
    return pmol, h, s


def write_schnorb(path, frames, legacy=False, metadata=None):
    """A SchNOrb-style ASE db: ORCA order, float32 matrices, energy shape (1,)."""
    import ase.db

    db = ase.db.connect(str(path), type="db")
    for mol, energy in frames:
        pmol, h, s = pyscf_matrices(mol)
        p = orca_index(pmol)
        data = {"hamiltonian": h[p][:, p].astype(np.float32),
                "overlap": s[p][:, p].astype(np.float32),
                "energy": np.array([energy]), "forces": np.zeros((mol.n_atoms, 3), np.float32)}
        if legacy:
            for key in list(data):
                arr = data[key]
                data[key] = base64.b64encode(arr.tobytes()).decode()
                data[f"_shape_{key}"] = list(arr.shape)
                data[f"_dtype_{key}"] = str(arr.dtype)
        db.write(mol.to_ase(), data=data)
    if metadata:
        db.metadata = metadata
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_schnorb_recovers_pyscf_order(tmp_path, legacy):
    water = Molecule.builtin("water")
    frames = [(water.displaced(k, 0.05), -0.01 * k) for k in range(2)]
    path = write_schnorb(tmp_path / "h2o.db", frames, legacy=legacy)
    got = list(read_schnorb(path))
    assert len(got) == 2
    for frame, (mol, energy) in zip(got, frames, strict=True):
        _, h, s = pyscf_matrices(mol)
        np.testing.assert_allclose(frame.molecule.positions, mol.positions, atol=1e-12)
        assert frame.hamiltonian.dtype == np.float64 and frame.hamiltonian.shape == (24, 24)
        # float32 storage: ~1e-7 relative
        np.testing.assert_allclose(frame.overlap, s, atol=2e-7)
        np.testing.assert_allclose(frame.hamiltonian, h, atol=1e-5 * np.abs(h).max())
        assert frame.energy == energy
        assert frame.forces.shape == (3, 3)
        # the reordering is not a no-op: ORCA order differs from PySCF's by O(1)
        p = orca_index(pyscf_matrices(mol)[0])
        assert np.abs(s[p][:, p] - s).max() > 0.1


def test_schnorb_mean_energy_and_limit(tmp_path):
    water = Molecule.builtin("water")
    path = write_schnorb(tmp_path / "h2o.db", [(water, 0.5), (water.displaced(1), -0.5)],
                         metadata={"mean_energy": -76.0, "basisdef": "def2-svp"})
    assert schnorb_metadata(path)["basisdef"] == "def2-svp"
    frames = list(read_schnorb(path, limit=1))
    assert len(frames) == 1 and frames[0].energy == pytest.approx(-75.5)
    assert [m.n_atoms for m in read_conformations(path)] == [3, 3]


def test_schnorb_bad_files(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite")
    with pytest.raises(InputError, match="cannot read"):
        list(read_schnorb(bad))
    with pytest.raises(InputError, match="file not found"):
        list(read_schnorb(tmp_path / "missing.db"))
    import ase.db

    db = ase.db.connect(str(tmp_path / "noh.db"), type="db")
    db.write(Molecule.builtin("water").to_ase(), data={"overlap": np.eye(24)})
    with pytest.raises(InputError, match="no 'hamiltonian'"):
        list(read_schnorb(tmp_path / "noh.db"))


@pytest.mark.parametrize("keys", [("R", "z", "E", "F"),
                                  ("coords", "nuclear_charges", "energies", "forces")])
def test_sgdml_and_rmd17_npz(tmp_path, keys):
    ethanol = Molecule.builtin("ethanol")
    positions = np.stack([ethanol.displaced(k, 0.02).positions for k in range(4)])
    energy = np.arange(4.0).reshape(4, 1) - 97000.0
    forces = np.random.default_rng(0).normal(size=positions.shape)
    r, z, e, f = keys
    np.savez(tmp_path / "ethanol.npz", **{r: positions, z: ethanol.numbers, e: energy, f: forces})
    traj = read_sgdml(tmp_path / "ethanol.npz")
    assert len(traj.molecules) == 4 and traj.molecules[0].name == "ethanol"
    for mol, pos in zip(traj.molecules, positions, strict=True):
        np.testing.assert_array_equal(mol.positions, pos)
        np.testing.assert_array_equal(mol.numbers, ethanol.numbers)
    np.testing.assert_array_equal(traj.energy_kcal_mol, energy.ravel())
    np.testing.assert_array_equal(traj.forces_kcal_mol_angstrom, forces)


def test_npz_without_geometry_keys(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(InputError, match="expected sGDML keys"):
        read_sgdml(tmp_path / "x.npz")


def test_xyz_trajectories(tmp_path):
    import ase.io

    water = Molecule.builtin("water")
    frames = [water.displaced(k, 0.05) for k in range(3)]
    plain = tmp_path / "plain.xyz"
    plain.write_text("".join(m.to_xyz() for m in frames))
    ext = tmp_path / "ext.extxyz"
    ase.io.write(ext, [m.to_ase() for m in frames], format="extxyz")
    for path in (plain, ext):
        got = read_xyz_trajectory(path)
        assert len(got) == 3
        for a, b in zip(got, frames, strict=True):
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-7)  # ASE: 8 decimals
            np.testing.assert_array_equal(a.numbers, b.numbers)
    assert len(read_conformations(plain)) == 3
    with pytest.raises(InputError, match="unknown conformation file type"):
        read_conformations(tmp_path / "x.pdb")
    broken = tmp_path / "broken.xyz"
    broken.write_text("3\n\nO 0 0 0\n")
    with pytest.raises(InputError, match="cannot read"):
        read_xyz_trajectory(broken)
