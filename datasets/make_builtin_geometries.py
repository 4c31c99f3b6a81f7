"""Regenerate the built-in geometries in qptbench/geometries/*.xyz.

Starting structures are built here from textbook bond lengths and angles (no coordinates are
taken from any data set), in the MD17/SchNOrb atom order, with the hydrogens on the same heavy
atoms as in MD17's frames.  Each is relaxed with GFN2-xTB (tblite's ASE calculator) and BFGS to
fmax <= 1e-3 eV/Å, then the bond graph is checked against the intended one.

Alanine dipeptide (ACE-ALA-NME, 22 atoms, L-alanine) starts from RDKit (SMILES, ETKDG embedding
with a fixed seed, MMFF) instead; its atom order is RDKit's: the heavy atoms in SMILES order
(C C O N C C C O N C), then the hydrogens of each in turn.

Run:  python datasets/make_builtin_geometries.py [NAME ...]   (default: all)
"""

from __future__ import annotations

import importlib.metadata
import itertools
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, covalent_radii
from ase.optimize import BFGS
from tblite.ase import TBLite

FMAX = 1e-3  # eV/Å
OUT_DIR = Path(__file__).resolve().parents[1] / "qptbench" / "geometries"

# A Z-matrix row: (symbol, (ref_bond, r), (ref_angle, degrees), (ref_dihedral, degrees)).
ZRow = tuple


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, r: float, ang: float, dih: float):
    """Position of atom d with |d-a| = r, angle(d,a,b) = ang, dihedral(d,a,b,c) = dih (NeRF)."""
    ang, dih = np.radians(ang), np.radians(dih)
    bc = (b - c) / np.linalg.norm(b - c)
    ab = (a - b) / np.linalg.norm(a - b)
    n = np.cross(bc, ab)
    n /= np.linalg.norm(n)
    m = np.cross(n, ab)
    d_local = r * np.array([-np.cos(ang), np.sin(ang) * np.cos(dih), np.sin(ang) * np.sin(dih)])
    return a + d_local[0] * ab + d_local[1] * m + d_local[2] * n


def zmatrix(rows: list[ZRow]) -> tuple[list[str], np.ndarray, set[tuple[int, int]]]:
    """Cartesian coordinates and bond set (each atom bonded to its distance reference)."""
    symbols, pos, bonds = [], [], set()
    for i, row in enumerate(rows):
        symbols.append(row[0])
        if i == 0:
            pos.append(np.zeros(3))
            continue
        (ia, r) = row[1]
        bonds.add((min(i, ia), max(i, ia)))
        if i == 1:
            pos.append(np.array([r, 0.0, 0.0]))
            continue
        (ib, ang) = row[2]
        if i == 2:
            # Third atom: any non-collinear dummy reference defines the plane.
            dummy = pos[ib] + np.array([0.0, 1.0, 0.0])
            pos.append(_place(pos[ia], pos[ib], dummy, r, ang, 0.0))
            continue
        (ic, dih) = row[3]
        pos.append(_place(pos[ia], pos[ib], pos[ic], r, ang, dih))
    return symbols, np.array(pos), bonds


def water() -> tuple[list[str], np.ndarray, set[tuple[int, int]]]:
    return zmatrix([("O",), ("H", (0, 0.96)), ("H", (0, 0.96), (1, 104.5))])


def ethanol() -> tuple[list[str], np.ndarray, set[tuple[int, int]]]:
    # MD17: C0 is the CH2 carrying the OH (H3, H4), C1 the methyl (H5-H7), H8 on O2.
    # Anti (trans) H-O-C-C conformer.
    return zmatrix([
        ("C",),
        ("C", (0, 1.52)),
        ("O", (0, 1.43), (1, 108.0)),
        ("H", (0, 1.09), (1, 110.0), (2, 120.0)),
        ("H", (0, 1.09), (1, 110.0), (2, -120.0)),
        ("H", (1, 1.09), (0, 110.0), (2, 180.0)),
        ("H", (1, 1.09), (0, 110.0), (2, 60.0)),
        ("H", (1, 1.09), (0, 110.0), (2, -60.0)),
        ("H", (2, 0.96), (0, 109.0), (1, 180.0)),
    ])


def malondialdehyde(d1: float, d2: float) -> tuple[list[str], np.ndarray, set[tuple[int, int]]]:
    # MD17's frames are the dialdehyde tautomer OHC-CH2-CHO: C0(=O4)H5, C1H6H7, C2(=O3)H8.
    # d1, d2 are the O=C-C-C torsions; several are tried because the minimum is not obvious.
    return zmatrix([
        ("C",),
        ("C", (0, 1.51)),
        ("C", (1, 1.51), (0, 112.0)),
        ("O", (2, 1.21), (1, 124.0), (0, d1)),
        ("O", (0, 1.21), (1, 124.0), (2, d2)),
        ("H", (0, 1.10), (1, 115.0), (4, 180.0)),
        ("H", (1, 1.09), (0, 109.0), (2, 120.0)),
        ("H", (1, 1.09), (0, 109.0), (2, -120.0)),
        ("H", (2, 1.10), (1, 115.0), (3, 180.0)),
    ])


def uracil() -> tuple[list[str], np.ndarray, set[tuple[int, int]]]:
    # MD17 order maps onto uracil's numbering as C5 C6 N1 C2 N3 C4 O2 O4 H6 H1 H3 H5.
    symbols = ["C", "C", "N", "C", "N", "C", "O", "O", "H", "H", "H", "H"]
    ring = [2, 3, 4, 5, 0, 1]  # N1 C2 N3 C4 C5 C6, going round the ring
    # Exocyclic (atom, ring parent, bond length): O2, O4, H6, H1, H3, H5.
    exo = [(6, 3, 1.22), (7, 5, 1.22), (8, 1, 1.08), (9, 2, 1.01), (10, 4, 1.01), (11, 0, 1.08)]
    pos = np.zeros((12, 3))
    radius = 1.39  # regular hexagon: circumradius equals the side
    for k, i in enumerate(ring):
        phi = np.radians(60.0 * k)
        pos[i] = radius * np.array([np.cos(phi), np.sin(phi), 0.0])
    for i, parent, r in exo:
        pos[i] = pos[parent] * (1.0 + r / radius)  # radially outwards
    bonds = {tuple(sorted((ring[k], ring[(k + 1) % 6]))) for k in range(6)}
    bonds |= {tuple(sorted((i, parent))) for i, parent, _ in exo}
    return symbols, pos, bonds


ALANINE_DIPEPTIDE_SMILES = "CC(=O)N[C@@H](C)C(=O)NC"  # ACE-ALA-NME


def alanine_dipeptide() -> tuple[list[str], np.ndarray, set[tuple[int, int]]]:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(ALANINE_DIPEPTIDE_SMILES))
    params = AllChem.ETKDGv3()
    params.randomSeed = 0
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError("RDKit could not embed alanine dipeptide")
    AllChem.MMFFOptimizeMolecule(mol)
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    pos = mol.GetConformer().GetPositions()
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}
    return symbols, pos, bonds


def bond_graph(atoms: Atoms) -> set[tuple[int, int]]:
    """Bonds by covalent radii (1.2x tolerance): pairs that a chemist would draw."""
    r = covalent_radii[atoms.numbers]
    d = atoms.get_all_distances()
    n = len(atoms)
    return {(i, j) for i, j in itertools.combinations(range(n), 2) if d[i, j] < 1.2 * (r[i] + r[j])}


def plane_rms(pos: np.ndarray) -> float:
    """RMS distance (Å) of the points from their best-fit plane."""
    centred = pos - pos.mean(axis=0)
    return float(np.linalg.svd(centred, compute_uv=False)[-1] / np.sqrt(len(pos)))


def relax(symbols: list[str], pos: np.ndarray, seed: int) -> tuple[Atoms, float, float]:
    # A small random kick so symmetric starts (e.g. planar uracil) cannot stay on a saddle
    # point just because the forces keep the symmetry.
    kick = np.random.default_rng(seed).normal(scale=0.02, size=pos.shape)
    atoms = Atoms(symbols, positions=pos + kick)
    atoms.calc = TBLite(method="GFN2-xTB", accuracy=0.01, verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=FMAX, steps=2000)
    fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    if fmax > FMAX:
        raise RuntimeError(f"BFGS did not converge: fmax {fmax:.2e} eV/Å")
    return atoms, float(atoms.get_potential_energy()), fmax


def build(name: str) -> tuple[Atoms, float, float, set[tuple[int, int]]]:
    if name != "malondialdehyde":
        symbols, pos, bonds = {"water": water, "ethanol": ethanol, "uracil": uracil,
                               "alanine_dipeptide": alanine_dipeptide}[name]()
        return (*relax(symbols, pos, seed=0), bonds)
    best = None
    for k, (d1, d2) in enumerate([(0, 0), (0, 180), (180, 180), (0, 90), (90, 90), (90, -90)]):
        symbols, pos, bonds = malondialdehyde(d1, d2)
        atoms, energy, fmax = relax(symbols, pos, seed=k)
        # Keep only relaxations that stayed the intended tautomer, then the lowest energy.
        if bond_graph(atoms) == bonds and (best is None or energy < best[1]):
            best = (atoms, energy, fmax, bonds)
        print(f"  malondialdehyde start ({d1:4d},{d2:4d}): E = {energy:.6f} eV")
    assert best is not None
    return best


def write_xyz(path: Path, atoms: Atoms, comment: str) -> None:
    masses = atomic_masses[atoms.numbers]
    pos = atoms.positions - masses @ atoms.positions / masses.sum()  # centre of mass at origin
    lines = [str(len(atoms)), comment]
    lines += [f"{s:<2s} {x:15.10f} {y:15.10f} {z:15.10f}" for s, (x, y, z) in
              zip(atoms.get_chemical_symbols(), pos, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    version = importlib.metadata.version("tblite")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    names = sys.argv[1:] or ["water", "ethanol", "malondialdehyde", "uracil",
                             "alanine_dipeptide"]
    for name in names:
        atoms, energy, fmax, bonds = build(name)
        found = bond_graph(atoms)
        if found != bonds:
            raise RuntimeError(f"{name}: bond graph changed: {sorted(found ^ bonds)}")
        heavy = atoms.numbers > 1
        d = atoms.get_all_distances()
        for h in np.flatnonzero(~heavy):
            # Nearest heavy atom must be the intended parent (the bond graph says which).
            parent = int(np.flatnonzero(heavy)[np.argmin(d[h, heavy])])
            assert tuple(sorted((h, parent))) in bonds, (name, h, parent)
        extra = ""
        if name == "uracil":
            planarity = plane_rms(atoms.positions[heavy])
            if planarity > 0.05:
                raise RuntimeError(f"uracil is not planar: heavy-atom plane RMS {planarity:.3f} A")
            extra = f"  heavy-atom plane RMS = {planarity:.4f} A"
        elif name == "alanine_dipeptide":
            extra = (f"  phi = {atoms.get_dihedral(1, 3, 4, 6):.1f}, psi = "
                     f"{atoms.get_dihedral(3, 4, 6, 8):.1f} deg")
        elif name == "malondialdehyde":
            # The dialdehyde has an sp3 CH2, so its minimum is twisted, not planar.
            extra = (f"  O=C-C-C torsions = {atoms.get_dihedral(3, 2, 1, 0):.1f}, "
                     f"{atoms.get_dihedral(4, 0, 1, 2):.1f} deg; heavy-atom plane RMS = "
                     f"{plane_rms(atoms.positions[heavy]):.3f} A")
        order = "RDKit" if name == "alanine_dipeptide" else "MD17"
        comment = (f"{name}: GFN2-xTB minimum (tblite {version}, ASE BFGS, fmax {fmax:.1e} eV/A), "
                   f"E = {energy:.6f} eV; {order} atom order; written by "
                   "datasets/make_builtin_geometries.py")
        write_xyz(OUT_DIR / f"{name}.xyz", atoms, comment)
        print(f"{name:16s} E = {energy:.6f} eV  fmax = {fmax:.1e} eV/A{extra}")


if __name__ == "__main__":
    main()
