"""Held-out PySCF references: geometry (its own input frame), E*, H*, S, n_occ, SCF seconds.

Stored as a plain ``.npz`` (``np.load(allow_pickle=False)``): a reference cache received with a run
directory can hold numbers only, never code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError


@dataclass(frozen=True)
class Reference:
    molecule: Molecule      # the reference geometry, in its own (input) frame
    energy: float           # Ha, PySCF
    fock: np.ndarray        # converged H* (N, N), PySCF AO order, input frame
    overlap: np.ndarray     # S (N, N)
    n_occ: int
    seconds: float          # PySCF SCF wall seconds of this label (inference yardstick)
    index: int = -1         # position in its source (dataset index), -1 if none


def from_dataset(path: str | Path, split: str = "val", limit: int | None = None,
                 level: LevelOfTheory | None = None) -> list[Reference]:
    """Converged labels of a dataset file's split (failed SCFs are skipped, not scored).

    With ``level``, a file labelled at another level of theory is refused: its energies would be
    scored against ours at a different level (dense vs density-fitted ERIs differ by 1e-5 Ha and
    more, a different grid or functional by far more).
    """
    from qptbench.data.store import Dataset

    refs = []
    with Dataset.open(path) as ds:
        if level is not None and ds.level is not None and ds.level != level:
            raise InputError(f"{path} is labelled at {ds.level}, this run is at {level}: "
                             "label a file at the run's level or run at the file's")
        indices = [int(i) for i in ds.split(split)]
        for i in indices:
            if limit is not None and len(refs) >= limit:
                break
            try:
                lab = ds.label(i)
            except (InputError, KeyError, ValueError):
                continue  # not labelled or failed: nothing to score against
            refs.append(Reference(ds.molecule(i), float(lab.energy), np.asarray(lab.fock),
                                  np.asarray(lab.overlap), int(lab.n_occ),
                                  float(lab.wall_seconds), i))
    if not refs:
        raise InputError(f"{path}: no labelled conformations in split {split!r} to score against")
    return refs


def from_pyscf(molecules: Sequence[Molecule], level: LevelOfTheory, conv_tol: float = 1e-10
               ) -> list[Reference]:
    """Label ``molecules`` with PySCF RKS now (unconverged ones are dropped)."""
    from qptbench.dft.labels import pyscf_rks

    refs = []
    for i, mol in enumerate(molecules):
        lab = pyscf_rks(mol, level, conv_tol=conv_tol)
        if lab.converged:
            refs.append(Reference(mol, lab.energy, lab.fock, lab.overlap, lab.n_occ,
                                  lab.seconds, i))
    return refs


def save(refs: Sequence[Reference], path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, numbers=refs[0].molecule.numbers, charge=refs[0].molecule.charge,
             positions=np.stack([r.molecule.positions for r in refs]),
             energy=np.array([r.energy for r in refs]), fock=np.stack([r.fock for r in refs]),
             overlap=np.stack([r.overlap for r in refs]), n_occ=refs[0].n_occ,
             seconds=np.array([r.seconds for r in refs]),
             index=np.array([r.index for r in refs]))
    tmp.replace(path)


def load(path: str | Path) -> list[Reference]:
    with np.load(path, allow_pickle=False) as z:
        numbers, charge, n_occ = z["numbers"], int(z["charge"]), int(z["n_occ"])
        return [Reference(Molecule(numbers, z["positions"][k], charge), float(z["energy"][k]),
                          z["fock"][k], z["overlap"][k], n_occ, float(z["seconds"][k]),
                          int(z["index"][k])) for k in range(len(z["energy"]))]
