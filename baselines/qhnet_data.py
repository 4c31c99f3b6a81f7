"""Labelled conformations for the supervised baseline: one composition, many geometries.

``LabelledSet`` holds everything training and evaluation need as stacked arrays (positions in Å,
Fock and overlap matrices in PySCF AO order, energies in Ha).  It is made either from the label
store (``from_store``: a split of a ``qptbench.data.store`` dataset file) or directly from
(molecule, label) pairs (``from_labels``: anything with ``fock``, ``overlap``, ``energy`` and
``n_occ``, e.g. ``qptbench.dft.labels.PySCFResult``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError


class LabelLike(Protocol):
    energy: float          # Ha
    fock: np.ndarray       # (N, N) PySCF AO order
    overlap: np.ndarray    # (N, N)
    n_occ: int


@dataclass(frozen=True)
class LabelledSet:
    numbers: np.ndarray    # (A,)
    charge: int
    positions: np.ndarray  # (M, A, 3) Å
    fock: np.ndarray       # (M, N, N) Ha
    overlap: np.ndarray    # (M, N, N)
    energy: np.ndarray     # (M,) Ha
    n_occ: int
    indices: np.ndarray    # (M,) positions in the source (store index or list position)
    level: LevelOfTheory | None = None

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def molecule(self, k: int) -> Molecule:
        return Molecule(self.numbers, self.positions[k], self.charge)

    def subset(self, k: Sequence[int] | np.ndarray) -> LabelledSet:
        k = np.asarray(k, dtype=np.int64)
        return LabelledSet(self.numbers, self.charge, self.positions[k], self.fock[k],
                           self.overlap[k], self.energy[k], self.n_occ, self.indices[k],
                           self.level)

    @classmethod
    def from_labels(cls, molecules: Sequence[Molecule], labels: Sequence[LabelLike],
                    level: LevelOfTheory | None = None,
                    indices: Sequence[int] | None = None) -> LabelledSet:
        if not molecules or len(molecules) != len(labels):
            raise InputError(f"need as many labels as molecules (got {len(molecules)} "
                             f"molecules, {len(labels)} labels)")
        first = molecules[0]
        for m in molecules:
            if not np.array_equal(m.numbers, first.numbers) or m.charge != first.charge:
                raise InputError("the QHNet baseline trains on one composition: all "
                                 f"conformations must be {first.formula} with charge "
                                 f"{first.charge} in the same atom order")
        n_occ = {int(lab.n_occ) for lab in labels}
        if len(n_occ) != 1:
            raise InputError(f"labels disagree on the number of occupied orbitals: {n_occ}")
        return cls(
            numbers=np.asarray(first.numbers, dtype=np.int64), charge=int(first.charge),
            positions=np.stack([np.asarray(m.positions, dtype=np.float64) for m in molecules]),
            fock=np.stack([np.asarray(lab.fock, dtype=np.float64) for lab in labels]),
            overlap=np.stack([np.asarray(lab.overlap, dtype=np.float64) for lab in labels]),
            energy=np.asarray([float(lab.energy) for lab in labels]),
            n_occ=n_occ.pop(),
            indices=np.asarray(indices if indices is not None else range(len(molecules)),
                               dtype=np.int64),
            level=level,
        )

    @classmethod
    def from_store(cls, dataset: Any, split: str, limit: int | None = None) -> LabelledSet:
        """The labelled conformations of one split of an open ``qptbench.data.store.Dataset``."""
        idx = [int(i) for i in dataset.split(split) if dataset.has_label(int(i))]
        if limit is not None:
            idx = idx[:limit]
        if not idx:
            raise InputError(f"{dataset.path}: the {split!r} split has no labelled conformations "
                             "(run qptbench label first)")
        molecules = [dataset.molecule(i) for i in idx]
        labels = [dataset.label(i) for i in idx]
        return cls.from_labels(molecules, labels, dataset.level, idx)


def open_store(path: str | Path):
    """``qptbench.data.store.Dataset.open(path)`` with a clear error if the store is missing."""
    try:
        from qptbench.data.store import Dataset
    except ImportError as exc:  # the label store lives in qptbench.data (issue: data)
        raise InputError(f"the label store (qptbench.data.store) is not available: {exc}") from None
    return Dataset.open(path)


@dataclass
class Batch:
    positions: torch.Tensor  # (B, A, 3) Å
    fock: torch.Tensor       # (B, N, N) Ha


def batch_factory(data: LabelledSet, batch_size: int, seed: int, dtype: torch.dtype,
                  device: torch.device | str = "cpu") -> Callable[[int], Iterator[Batch]]:
    """Endless shuffled mini-batches as a function of how many were already consumed.

    Batch k depends only on (seed, k): epoch k // per_epoch is a fresh permutation, so a resumed
    run sees exactly the batches an uninterrupted one would have seen.
    """
    n = len(data)
    if n == 0:
        raise InputError("no training conformations")
    batch_size = min(batch_size, n)
    per_epoch = n // batch_size
    positions = torch.as_tensor(data.positions, dtype=dtype, device=device)
    fock = torch.as_tensor(data.fock, dtype=dtype, device=device)

    def stream(consumed: int) -> Iterator[Batch]:
        k = consumed
        while True:
            epoch, j = divmod(k, per_epoch)
            order = np.random.default_rng([seed, epoch]).permutation(n)
            pick = torch.as_tensor(order[j * batch_size:(j + 1) * batch_size], device=device)
            yield Batch(positions[pick], fock[pick])
            k += 1

    return stream
