"""Alanine dipeptide conformations by backbone dihedrals (φ, ψ), set with RDKit.

The QPT paper's Fig. 4 experiment: draw (φ, ψ) uniformly from a box ([0, 180]² for training),
rotate the backbone to those angles and keep everything else rigid.  φ is C(=O)-N-Cα-C and
ψ is N-Cα-C(=O)-N; the four atoms of each are found by substructure match, not by index, so any
ACE-ALA-NME geometry with explicit hydrogens works (the built-in ``alanine_dipeptide``
by default).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.errors import InputError

# C'(-O)-N-Cα(4 neighbours)-C(-O)-N: the peptide backbone around alanine
_BACKBONE = "[#6X3](~[#8])~[#7]~[#6X4]~[#6X3](~[#8])~[#7]"
MAX_TRIES = 1000


def _rdkit_mol(molecule: Molecule):
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    mol = Chem.MolFromXYZBlock(molecule.to_xyz())
    if mol is None:
        raise InputError("RDKit cannot read the geometry")
    rdDetermineBonds.DetermineConnectivity(mol, charge=molecule.charge)
    Chem.FastFindRings(mol)  # SetDihedral refuses bonds in rings, so it needs ring info
    return mol


def backbone_dihedrals(molecule: Molecule) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Atom indices (φ, ψ) of the alanine backbone, 0-based."""
    from rdkit import Chem

    matches = _rdkit_mol(molecule).GetSubstructMatches(Chem.MolFromSmarts(_BACKBONE))
    if len(matches) != 1:
        raise InputError(f"expected one ACE-ALA-NME backbone in {molecule!r}, found "
                         f"{len(matches)}; the dihedral sampler needs alanine dipeptide")
    c0, _, n1, ca, c1, _, n2 = matches[0]
    return (c0, n1, ca, c1), (n1, ca, c1, n2)


def dihedral_angles(molecule: Molecule) -> tuple[float, float]:
    """(φ, ψ) in degrees, in [-180, 180)."""
    phi, psi = backbone_dihedrals(molecule)
    return _angle(molecule.positions, phi), _angle(molecule.positions, psi)


def angle_difference(a: float | np.ndarray, b: float | np.ndarray) -> float | np.ndarray:
    """a − b on the circle, in degrees in [-180, 180): 359.9999 and 0 differ by −1e-4, not 360."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


def _angle(pos: np.ndarray, idx: tuple[int, ...]) -> float:
    b0, b1, b2 = pos[idx[0]] - pos[idx[1]], pos[idx[2]] - pos[idx[1]], pos[idx[3]] - pos[idx[2]]
    b1 /= np.linalg.norm(b1)
    v, w = b0 - (b0 @ b1) * b1, b2 - (b2 @ b1) * b1
    return float(np.degrees(np.arctan2(np.cross(b1, v) @ w, v @ w)))


def _check_box(name: str, box: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(v) for v in box)
    if not (np.isfinite(low) and np.isfinite(high) and low <= high and high - low <= 360):
        raise InputError(f"{name} range must be MIN <= MAX within 360 degrees, got {box}")
    return low, high


def dihedral_conformations(molecule: Molecule | None = None, seed: int = 0,
                           phi_range: tuple[float, float] = (0.0, 180.0),
                           psi_range: tuple[float, float] = (0.0, 180.0)) -> Iterator[Molecule]:
    """Endless iterator: (φ, ψ) uniform in the box (degrees), the rest of the molecule rigid.

    A draw that puts two atoms closer than ``geometry.MIN_DISTANCE`` is drawn again (counted
    in ``MAX_TRIES``); deterministic for a seed.
    """
    from rdkit.Chem import rdMolTransforms

    molecule = molecule or Molecule.builtin("alanine_dipeptide")
    phi_box, psi_box = _check_box("phi", phi_range), _check_box("psi", psi_range)
    phi, psi = backbone_dihedrals(molecule)
    mol = _rdkit_mol(molecule)
    conf = mol.GetConformer()
    rng = np.random.default_rng(seed)
    while True:
        for _ in range(MAX_TRIES):
            angles = rng.uniform(*phi_box), rng.uniform(*psi_box)
            rdMolTransforms.SetDihedralDeg(conf, *phi, float(angles[0]))
            rdMolTransforms.SetDihedralDeg(conf, *psi, float(angles[1]))
            try:
                new = Molecule(molecule.numbers, conf.GetPositions(), molecule.charge,
                               molecule.name)
            except InputError:  # a steric clash: atoms on top of each other
                continue
            yield new
            break
        else:
            raise InputError(f"no clash-free conformation in {MAX_TRIES} draws from the box "
                             f"phi {phi_box}, psi {psi_box}")


def conformations_at(points: Sequence[tuple[float, float]], molecule: Molecule | None = None
                     ) -> list[Molecule]:
    """The molecule with its backbone set to each (φ, ψ) of ``points`` (degrees), the rest
    rigid: the alanine map's grid.  A point that puts two atoms on top of each other is an
    InputError naming it (a map cannot silently lose a cell)."""
    from rdkit.Chem import rdMolTransforms

    molecule = molecule or Molecule.builtin("alanine_dipeptide")
    phi, psi = backbone_dihedrals(molecule)
    conf = _rdkit_mol(molecule).GetConformer()
    out = []
    for a, b in points:
        rdMolTransforms.SetDihedralDeg(conf, *phi, float(a))
        rdMolTransforms.SetDihedralDeg(conf, *psi, float(b))
        try:
            out.append(Molecule(molecule.numbers, conf.GetPositions(), molecule.charge,
                                molecule.name))
        except InputError as exc:
            raise InputError(f"(phi, psi) = ({a:g}, {b:g}): {exc}") from None
    return out


def sample_dihedrals(molecule: Molecule | None = None, n: int = 1, seed: int = 0,
                     **box: Any) -> list[Molecule]:
    if n < 1:
        raise InputError(f"number of conformations must be >= 1, got {n}")
    return list(itertools.islice(dihedral_conformations(molecule, seed, **box), n))


def dihedral_settings(seed: int = 0, phi_range: tuple[float, float] = (0.0, 180.0),
                      psi_range: tuple[float, float] = (0.0, 180.0)) -> dict[str, Any]:
    import rdkit

    return {"kind": "dihedral", "engine": "RDKit SetDihedralDeg (rigid rotation)",
            "seed": seed, "phi_range_deg": list(phi_range), "psi_range_deg": list(psi_range),
            "rdkit_version": rdkit.__version__}
