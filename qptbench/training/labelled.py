"""Labelled training molecules for networks that read prepared molecules (the ``labels`` signal
on QPT): a label store's train split, H* rotated into each sample's canonical frame.

The network never needs the DFT tensors here, only its inputs, so each labelled molecule is
prepared once and kept without its ERIs and grid (a few N² float32 matrices); its preparation is
booked the first time the loss sees it, like every other route's tensor preparation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from qptbench.dft.frames import ao_rotation
from qptbench.dft.geometry import Molecule
from qptbench.errors import InputError


class LabelledSource:
    """index -> (store index, Molecule, H* (N, N) PySCF order, Ha): the labelled conformations
    of ``split`` drawn uniformly with a seeded generator (deterministic per index)."""

    def __init__(self, path: str, seed: int, split: str = "train") -> None:
        from qptbench.data.store import Dataset

        with Dataset.open(path) as ds:
            keep = [int(i) for i in ds.split(split) if ds.has_label(int(i))]
            self.items = {i: (ds.molecule(i), np.asarray(ds.label(i).fock)) for i in keep}
        if not self.items:
            raise InputError(f"{path}: the {split!r} split has no labelled conformations "
                             "(run qptbench label first)")
        self.keys, self.seed = np.asarray(sorted(self.items)), seed

    def __call__(self, index: int) -> tuple[int, Molecule, np.ndarray]:
        key = int(np.random.default_rng([self.seed, index]).choice(self.keys))
        return (key, *self.items[key])


class LabelledPreparer:
    """(store index, Molecule, H*) -> a prepared sample carrying H* in its canonical frame; each
    store index is prepared once (``Prepared.booked`` then keeps the cost counted once)."""

    def __init__(self, preparer: Any) -> None:
        self.preparer, self.cache = preparer, {}

    def __call__(self, item: tuple[int, Molecule, np.ndarray]) -> Any:
        key, molecule, fock = item
        if key not in self.cache:
            prepared = self.preparer(molecule)
            sample = prepared.sample
            u = ao_rotation(sample.shell_ls, sample.rotation)  # input frame = U · canonical
            prepared.label = torch.as_tensor(u.T @ fock @ u)
            prepared.sample = replace(sample, tensors=None)
            self.cache[key] = prepared
        return self.cache[key]
