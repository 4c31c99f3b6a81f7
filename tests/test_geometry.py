"""Tests for qptbench.dft.geometry: validation messages, xyz/ASE I/O, built-in molecules."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import numpy as np
import pytest

from qptbench.dft.geometry import Molecule, builtin_names, load_molecule
from qptbench.errors import InputError

WATER_POS = [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]]


def water(**kw) -> Molecule:
    return Molecule.from_arrays(["O", "H", "H"], WATER_POS, **kw)


# ---- construction and validation -------------------------------------------------------------

def test_from_arrays_symbols_case_insensitive_and_numbers():
    mol = Molecule.from_arrays(["o", "h", "H"], WATER_POS, name="w")
    assert mol.numbers.tolist() == [8, 1, 1]
    assert mol.numbers.dtype == np.int64 and mol.positions.dtype == np.float64
    assert mol.symbols == ["O", "H", "H"]
    assert (mol.n_atoms, mol.n_electrons, mol.formula, mol.name) == (3, 10, "H2O", "w")
    assert Molecule.from_arrays(["HE"], [[0, 0, 0]]).numbers.tolist() == [2]
    assert Molecule.from_arrays(np.array([8, 1, 1]), WATER_POS).symbols == ["O", "H", "H"]


def test_arrays_are_copied_and_read_only():
    pos = np.array(WATER_POS)
    mol = Molecule.from_arrays([8, 1, 1], pos)
    pos[0, 0] = 5.0
    assert mol.positions[0, 0] == 0.0
    with pytest.raises(ValueError):
        mol.positions[0, 0] = 1.0
    with pytest.raises(ValueError):
        mol.numbers[0] = 6


@pytest.mark.parametrize(
    ("numbers", "positions", "pattern"),
    [
        (["O", "H", "Xx"], WATER_POS, r"^unknown element symbol 'Xx' \(atom 3\)$"),
        ([8, 1, 0], WATER_POS, r"atomic number 0 out of range 1-118 \(atom 3\)"),
        ([8, 1, 200], WATER_POS, r"atomic number 200 out of range 1-118 \(atom 3\)"),
        ([8, 1, 1.5], WATER_POS, r"atomic number 1\.5 is not an integer \(atom 3\)"),
        ("OHH", WATER_POS, r"one element symbol or atomic number per atom"),
        ([[8, 1, 1]], WATER_POS, r"flat list with one entry per atom"),
        ([8, 1, 1], [[0, 0], [0, 1], [1, 0]], r"shape \(n_atoms, 3\) = \(3, 3\), got \(3, 2\)"),
        ([8, 1], WATER_POS, r"shape \(n_atoms, 3\) = \(2, 3\), got \(3, 3\)"),
        ([], np.zeros((0, 3)), r"molecule has no atoms"),
        ([8, 1, 1], [[0, 0, 0], [0, np.nan, 0], [1, 0, 0]],
         r"non-finite coordinate for atom 2 \(H\)"),
        ([8, 1, 1], [[0, 0, 0], [0, 0, 0.1], [1, 0, 0]],
         r"atoms 1 \(O\) and 2 \(H\) are 0\.100 Å apart, closer than 0\.3 Å"),
    ],
)
def test_bad_input_messages(numbers, positions, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        Molecule.from_arrays(numbers, positions)
    assert "\n" not in str(info.value)


def test_closest_pair_is_reported():
    pos = [[0, 0, 0], [0, 0, 0.25], [2, 0, 0], [2, 0, 0.05]]
    with pytest.raises(InputError, match=r"atoms 3 \(H\) and 4 \(H\) are 0\.050 Å apart"):
        Molecule.from_arrays(["C", "H", "H", "H"], pos, charge=0)


def test_electron_count_rules():
    with pytest.raises(InputError, match=r"odd number of electrons \(9, charge \+1\).*closed-shell "
                       r"\(restricted, RKS\).*--charge"):
        water(charge=1)
    with pytest.raises(InputError, match=r"0 electrons \(charge \+2\).*must be positive"):
        Molecule.from_arrays(["H", "H"], [[0, 0, 0], [0, 0, 0.74]], charge=2)
    with pytest.raises(InputError, match=r"charge must be an integer, got 0\.5"):
        water(charge=0.5)
    assert water(charge=-2).n_electrons == 12
    assert water(charge=np.int64(2)).charge == 2


# ---- xyz I/O ---------------------------------------------------------------------------------

def test_xyz_round_trip_string_and_file(tmp_path):
    mol = Molecule.builtin("uracil").displaced(seed=3)
    text = mol.to_xyz()
    assert text.splitlines()[0] == "12"
    back = Molecule.from_xyz_string(text)
    assert back.numbers.tolist() == mol.numbers.tolist()
    np.testing.assert_allclose(back.positions, mol.positions, atol=1e-9)
    path = tmp_path / "u.xyz"
    path.write_text(water(charge=2).to_xyz())
    back = Molecule.from_xyz(path, charge=2)
    assert (back.charge, back.name, back.symbols) == (2, "u", ["O", "H", "H"])
    np.testing.assert_allclose(back.positions, WATER_POS, atol=1e-9)


def test_xyz_frames_atomic_numbers_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "traj.xyz"
    frames = [water().to_xyz(), water().displaced(1).to_xyz().replace("H ", "1 ")]
    path.write_text("".join(frames) + "\n\n")
    first, last = Molecule.from_xyz(path), Molecule.from_xyz(path, frame=-1)
    np.testing.assert_allclose(first.positions, WATER_POS)
    assert last.symbols == ["O", "H", "H"]
    assert not np.allclose(last.positions, first.positions)
    with pytest.raises(InputError, match=r"traj\.xyz: frame 2 requested but the file has 2 frame"):
        Molecule.from_xyz(path, frame=2)


def test_extended_xyz(tmp_path):
    from ase.io import write

    mol = Molecule.builtin("ethanol")
    path = tmp_path / "e.extxyz"
    write(path, mol.to_ase(), format="extxyz")
    np.testing.assert_allclose(Molecule.from_xyz(path).positions, mol.positions, atol=1e-6)
    # Columns in a non-default order must follow the Properties= header.
    path.write_text('1\nProperties=pos:R:3:species:S:1 pbc="F F F"\n0.0 0.0 0.0 He\n')
    assert Molecule.from_xyz(path).symbols == ["He"]
    path.write_text("1\nProperties=pos:R:3 energy=1\n0.0 0.0 0.0\n")
    with pytest.raises(InputError, match=r"e\.extxyz:2: extended xyz Properties lacks species"):
        Molecule.from_xyz(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("abc\n\nO 0 0 0\n", r"bad\.xyz:1: expected the number of atoms, got 'abc'"),
        ("3\n\nO 0 0 0\nH 0 0 1\n", r"bad\.xyz:1: says 3 atoms but only 2 coordinate line"),
        ("2\n\nO 0 0 0\nH 0 0 1\nH 0 1 0\n",
         r"bad\.xyz:5: expected the number of atoms, got 'H 0 1 0' \(does the atom count on "
         r"line 1 match"),
        ("3\n\nO 0 0 0\nH 0 0 x\nH 0 1 0\n", r"bad\.xyz:4: bad coordinate line 'H 0 0 x'"),
        ("3\n\nO 0 0 0\nH 0 0\nH 0 1 0\n", r"bad\.xyz:4: bad coordinate line 'H 0 0'"),
        ("1\n\nQq 0 0 0\n", r"unknown element symbol 'Qq' \(atom 1\)"),
        ("", r"bad\.xyz: empty xyz file"),
    ],
)
def test_malformed_xyz(tmp_path, text, pattern):
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    with pytest.raises(InputError, match=pattern):
        Molecule.from_xyz(path)


def test_missing_and_unreadable_xyz(tmp_path):
    with pytest.raises(InputError, match=r"xyz file not found: .*nope\.xyz"):
        Molecule.from_xyz(tmp_path / "nope.xyz")
    with pytest.raises(InputError, match=r"cannot read xyz file .*"):
        Molecule.from_xyz(tmp_path)  # a directory
    (tmp_path / "bin.xyz").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match=r"cannot read xyz file .*bin\.xyz"):
        Molecule.from_xyz(tmp_path / "bin.xyz")


# ---- ASE -------------------------------------------------------------------------------------

def test_ase_round_trip():
    from ase import Atoms

    mol = Molecule.builtin("malondialdehyde")
    back = Molecule.from_ase(mol.to_ase())
    assert back.numbers.tolist() == mol.numbers.tolist()
    np.testing.assert_array_equal(back.positions, mol.positions)
    assert back.name == "C3H4O2"
    assert Molecule.from_ase(Atoms("H2O", positions=WATER_POS), charge=-2).n_electrons == 12
    with pytest.raises(InputError, match="periodic systems are not supported"):
        Molecule.from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5] * 3, pbc=True))


# ---- built-in molecules ----------------------------------------------------------------------

# name: (formula, atom order (MD17's where it is one), n_electrons, parent heavy atom of each
# H, heavy-heavy bonds)
BUILTINS = {
    "water": ("H2O", "OHH", 10, {1: 0, 2: 0}, []),
    "ethanol": ("C2H6O", "CCOHHHHHH", 26, {3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 2},
                [(0, 1), (0, 2)]),
    "malondialdehyde": ("C3H4O2", "CCCOOHHHH", 38, {5: 0, 6: 1, 7: 1, 8: 2},
                        [(0, 1), (1, 2), (2, 3), (0, 4)]),
    "uracil": ("C4H4N2O2", "CCNCNCOOHHHH", 58, {8: 1, 9: 2, 10: 4, 11: 0},
               [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (3, 6), (5, 7)]),
    # ACE-ALA-NME in RDKit's order (datasets/make_builtin_geometries.py), not an MD17 molecule
    "alanine_dipeptide": ("C6H12N2O2", "CCONCCCONC" + "H" * 12, 78,
                          {10: 0, 11: 0, 12: 0, 13: 3, 14: 4, 15: 5, 16: 5, 17: 5, 18: 8,
                           19: 9, 20: 9, 21: 9},
                          [(0, 1), (1, 2), (1, 3), (3, 4), (4, 5), (4, 6), (6, 7), (6, 8),
                           (8, 9)]),
    # ACE-(ALA)4-NME, RDKit's order (datasets/make_peptide_geometry.py): 485 AOs in def2-SVP
    "ace_ala4_nme": ("C15H27N5O5", "CCON" + "CCCON" * 4 + "C" + "H" * 27, 192,
                     {25: 0, 26: 0, 27: 0, 28: 3, 29: 4, 30: 5, 31: 5, 32: 5, 33: 8, 34: 9,
                      35: 10, 36: 10, 37: 10, 38: 13, 39: 14, 40: 15, 41: 15, 42: 15, 43: 18,
                      44: 19, 45: 20, 46: 20, 47: 20, 48: 23, 49: 24, 50: 24, 51: 24},
                     [(0, 1), (1, 2), (1, 3), *((3 + 5 * k, 4 + 5 * k) for k in range(4)),
                      *((4 + 5 * k, 5 + 5 * k) for k in range(4)),
                      *((4 + 5 * k, 6 + 5 * k) for k in range(4)),
                      *((6 + 5 * k, 7 + 5 * k) for k in range(4)),
                      *((6 + 5 * k, 8 + 5 * k) for k in range(4)), (23, 24)]),
}


def test_builtin_names_and_package_data():
    assert builtin_names() == list(BUILTINS)
    data = importlib.resources.files("qptbench") / "geometries"
    assert sorted(p.name for p in data.iterdir() if p.name.endswith(".xyz")) == sorted(
        f"{n}.xyz" for n in BUILTINS)


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_geometry(name):
    formula, order, n_el, parents, heavy_bonds = BUILTINS[name]
    mol = Molecule.builtin(name.upper())
    assert (mol.formula, "".join(mol.symbols), mol.n_electrons, mol.name) == (
        formula, order, n_el, name)
    d = np.linalg.norm(mol.positions[:, None] - mol.positions[None], axis=-1)
    heavy = np.flatnonzero(mol.numbers > 1)
    for h, parent in parents.items():
        assert heavy[np.argmin(d[h, heavy])] == parent, f"H{h} not on atom {parent}"
        assert 0.9 <= d[h, parent] <= 1.15
    for i, j in heavy_bonds:
        assert 1.15 <= d[i, j] <= 1.6, (i, j, d[i, j])
    bonded = {frozenset(b) for b in heavy_bonds}
    for i in heavy:
        for j in heavy[heavy > i]:
            if frozenset((i, j)) not in bonded:
                assert d[i, j] > 2.0, f"unexpected bond {i}-{j}"


def test_uracil_is_planar():
    pos = Molecule.builtin("uracil").positions
    sv = np.linalg.svd(pos - pos.mean(axis=0), compute_uv=False)
    assert sv[-1] / np.sqrt(len(pos)) < 0.02


def test_builtin_unknown_and_alias():
    assert Molecule.builtin("Malonaldehyde").name == "malondialdehyde"
    with pytest.raises(InputError, match=r"unknown built-in molecule 'benzene'; choose one of: "
                       r"water, ethanol, malondialdehyde, uracil"):
        Molecule.builtin("benzene")


# ---- displaced -------------------------------------------------------------------------------

def test_displaced_is_deterministic_per_seed():
    mol = Molecule.builtin("ethanol")
    a, b, c = mol.displaced(seed=7), mol.displaced(seed=7), mol.displaced(seed=8)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)
    shift = a.positions - mol.positions
    assert 0.02 < shift.std() < 0.1  # 27 samples of N(0, 0.05²)
    assert np.abs(mol.displaced(seed=7, scale=0.01).positions - mol.positions).max() < 0.06
    assert (a.charge, a.name, a.numbers.tolist()) == (0, "ethanol", mol.numbers.tolist())
    np.testing.assert_array_equal(mol.positions, Molecule.builtin("ethanol").positions)
    with pytest.raises(InputError, match="displacement scale"):
        mol.displaced(seed=1, scale=-0.1)


# ---- load_molecule ---------------------------------------------------------------------------

def test_load_molecule_rules(tmp_path):
    assert load_molecule(name="Water").formula == "H2O"
    assert load_molecule(name="water", charge=2).n_electrons == 8
    path = tmp_path / "w.xyz"
    path.write_text(water().to_xyz())
    assert load_molecule(xyz=str(path), charge=-2).n_electrons == 12
    with pytest.raises(InputError, match="exactly one of"):
        load_molecule()
    with pytest.raises(InputError, match="exactly one of"):
        load_molecule(name="water", xyz=str(path))
    with pytest.raises(InputError, match=r"odd number of electrons.*--charge"):
        load_molecule(name="water", charge=1)


def test_geometry_does_not_import_heavy_backends():
    code = ("import sys, qptbench.dft.geometry as g; g.Molecule.builtin('water'); "
            "print(sorted(m for m in ('pyscf', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
