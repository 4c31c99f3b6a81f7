"""Write the built-in peptide beyond 400 AOs: qptbench/geometries/ace_ala4_nme.xyz.

Ace-Ala₄-NMe (CH3CO-(L-Ala)4-NHCH3, C15H27N5O5, 52 atoms) has 485 AOs in def2-SVP: C, N, O
have 14 and H 5, so each alanine residue (C3H5NO) adds 95 to the alanine dipeptide's 200, and
Ace-Ala₃-NMe would stop at 390.  It is the size where dense ERIs (N⁴ float64: 442 GB) are out
of reach and density fitting is not (tests/test_peptide_df.py).

The geometry is RDKit's: SMILES -> explicit hydrogens -> ETKDGv3 embedding with a fixed seed
-> MMFF94 minimisation to convergence, centre of mass at the origin.  No xTB relaxation (unlike
make_builtin_geometries.py): the point is a reproducible, chemically sane structure of the
right size, and RDKit alone regenerates it in a second.  Atom order is RDKit's: the heavy atoms
in SMILES order, then the hydrogens of each in turn.

Run:  python datasets/make_peptide_geometry.py          (writes the file)
      python datasets/make_peptide_geometry.py --check  (compares with the file, writes nothing)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

NAME = "ace_ala4_nme"
SMILES = "CC(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)NC"
SEED = 7          # ETKDG's random seed (the alanine dipeptide's in benchmarks/common.py)
MMFF_ITERS = 20000  # enough for MMFF to report convergence on this molecule
OUT = Path(__file__).resolve().parents[1] / "qptbench" / "geometries" / f"{NAME}.xyz"


def build() -> tuple[list[str], np.ndarray, set[tuple[int, int]]]:
    """(symbols, positions in Å with the centre of mass at the origin, RDKit's bond set)."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(SMILES))
    params = AllChem.ETKDGv3()
    params.randomSeed = SEED
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"RDKit {rdBase.rdkitVersion} could not embed {NAME}")
    if AllChem.MMFFOptimizeMolecule(mol, maxIters=MMFF_ITERS) != 0:
        raise RuntimeError(f"MMFF did not converge in {MMFF_ITERS} iterations")
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    pos = mol.GetConformer().GetPositions()
    masses = np.array([a.GetMass() for a in mol.GetAtoms()])
    pos = pos - masses @ pos / masses.sum()
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}
    return symbols, pos, bonds


def xyz_text(symbols: list[str], pos: np.ndarray) -> str:
    from rdkit import rdBase

    comment = (f"{NAME}: Ace-Ala4-NMe, RDKit {rdBase.rdkitVersion} ETKDGv3 seed {SEED} + MMFF94 "
               "minimum; RDKit atom order; written by datasets/make_peptide_geometry.py")
    rows = [f"{s:<2s} {x:15.10f} {y:15.10f} {z:15.10f}"
            for s, (x, y, z) in zip(symbols, pos, strict=True)]
    return "\n".join([str(len(symbols)), comment, *rows]) + "\n"


def main(argv: list[str]) -> int:
    symbols, pos, _ = build()
    if "--check" in argv:
        lines = OUT.read_text().splitlines()[2:]
        stored = np.array([[float(v) for v in line.split()[1:4]] for line in lines])
        same = [line.split()[0] for line in lines] == symbols
        diff = float(np.abs(stored - pos).max()) if same else float("inf")
        print(f"{OUT.name}: max |Δr| = {diff:.2e} Å")
        return 0 if diff <= 1e-6 else 1
    OUT.write_text(xyz_text(symbols, pos))
    print(f"wrote {OUT} ({len(symbols)} atoms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
