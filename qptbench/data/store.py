"""One HDF5 file per dataset: conformations, splits, sampler settings and PySCF labels.

Layout (all arrays float64 unless said; Å and Hartree)::

    /                 attrs: format, name, charge, formula, sampler (JSON), created_utc
    /numbers          (n_atoms,) int64
    /positions        (n_conf, n_atoms, 3) Å
    /splits/{train,val,test}   int64 indices; attrs: seed, rule
    /labels           attrs: level (JSON), conv_tol, max_cycle, labeller (pyscf | gpu4pyscf;
                      absent in files from before it was recorded: pyscf); made by the 1st label
      status          (n_conf,) int8: 0 not attempted, 1 converged label, 2 failed SCF
      energy (n_conf,) Ha   fock, overlap (n_conf, N, N) PySCF AO order   mo_energy (n_conf, N) Ha
      n_occ, cycles (int64)  converged (bool)  wall_seconds, cpu_seconds  threads (int32)
      host, pyscf_version, reason, labeller   strings (reason: why a failed SCF failed)

Matrices are chunked one conformation per chunk, so ``Dataset`` reads lazily: opening a 25k-frame
uracil file (GBs) reads nothing but the small arrays.  Writing is crash-safe (see ``journal``):
a file is only ever replaced whole with ``os.replace``, never edited in place, and labels that are
committed but not yet folded into the file are read from the journal next to it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from qptbench.data import journal
from qptbench.data.layout import (  # noqa: F401 (re-exported: store is where callers look)
    CONVERGED,
    FAILED,
    FLOAT_FIELDS,
    FORMAT,
    INT_FIELDS,
    MATRIX_FIELDS,
    NOT_ATTEMPTED,
    STRING_FIELDS,
)
from qptbench.data.layout import fsync as _fsync
from qptbench.data.layout import fsync_dir as _fsync_dir
from qptbench.data.layout import h5py_module as _h5py
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError


@dataclass
class Label:
    """One PySCF label (a converged SCF)."""

    energy: float            # Ha
    fock: np.ndarray         # (N, N) converged Fock matrix H*, PySCF AO order
    overlap: np.ndarray      # (N, N)
    mo_energy: np.ndarray    # (N,) Ha
    n_occ: int
    cycles: int
    converged: bool
    wall_seconds: float
    cpu_seconds: float
    threads: int
    host: str
    pyscf_version: str
    labeller: str = "pyscf"  # the code that made it (older files: always PySCF)


@dataclass
class LabelCost:
    """What labelling this dataset cost; failed SCFs count, since their time was spent too."""

    n_labels: int
    n_failed: int
    wall_seconds: float      # summed over SCFs (labels and failures)
    cpu_seconds: float
    mean_seconds_per_label: float  # wall_seconds / n_labels (nan without labels)

    def line(self) -> str:
        """The "data creation" line of the comparison tables."""
        return (f"{self.n_labels} labels, {self.n_failed} failed, wall "
                f"{self.wall_seconds / 3600:.4f} h, CPU {self.cpu_seconds / 3600:.4f} h, "
                f"{self.mean_seconds_per_label:.2f} s/label")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def create_dataset(path: str | Path, conformations: Sequence[Molecule], *, name: str = "",
                   sampler: dict[str, Any] | None = None, splits: dict[str, np.ndarray],
                   split_seed: int, split_rule: str = "", overwrite: bool = False) -> Path:
    """Write conformations (same atoms, same charge), their splits and the sampler settings.

    The file is written under a temporary name and moved into place, so it either exists
    complete or not at all.  ``splits`` comes from ``qptbench.data.splits.make_splits``.
    """
    path = Path(path)
    if not conformations:
        raise InputError("no conformations to write")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; choose another --out or remove it first")
    first = conformations[0]
    for k, mol in enumerate(conformations):
        if mol.numbers.shape != first.numbers.shape or np.any(mol.numbers != first.numbers):
            raise InputError(f"conformation {k} has other atoms than conformation 0")
        if mol.charge != first.charge:
            raise InputError(f"conformation {k} has charge {mol.charge}, not {first.charge}")
    n = len(conformations)
    for split, idx in splits.items():
        if len(idx) and (np.min(idx) < 0 or np.max(idx) >= n):
            raise InputError(f"split {split!r} has indices outside 0..{n - 1}")
    h5py = _h5py()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp-create")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format=FORMAT, name=name or first.name, charge=first.charge,
                       formula=first.formula, sampler=json.dumps(sampler or {}),
                       created_utc=_now())
        f["numbers"] = first.numbers
        f.create_dataset("positions", data=np.stack([m.positions for m in conformations]),
                         chunks=(1, first.n_atoms, 3))
        group = f.create_group("splits")
        group.attrs.update(seed=split_seed, rule=split_rule)
        for split in ("train", "val", "test"):
            group[split] = np.asarray(splits.get(split, []), dtype=np.int64)
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


class Dataset:
    """Read-only, lazy view of a dataset file (plus labels still in its journal).

    Safe to use while nothing writes the file; a labelling job replaces the file whole, so an
    open ``Dataset`` keeps seeing the version it opened.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"dataset file not found: {self.path}")
        try:
            self._file = _h5py().File(self.path, "r")
        except OSError as exc:
            raise InputError(f"cannot read {self.path} as HDF5: {exc}") from None
        if self._file.attrs.get("format") != FORMAT:
            self._file.close()
            raise InputError(f"{self.path} is not a qptbench dataset (no format={FORMAT})")
        self.numbers = np.asarray(self._file["numbers"][()], dtype=np.int64)
        self.charge = int(self._file.attrs["charge"])
        self.name = str(self._file.attrs["name"])
        self.sampler = json.loads(self._file.attrs.get("sampler", "{}"))
        self._labels = self._file.get("labels")
        n = len(self)
        self._status = (np.asarray(self._labels["status"][()], dtype=np.int8)
                        if self._labels is not None else np.zeros(n, dtype=np.int8))
        self._level = (LevelOfTheory(**json.loads(self._labels.attrs["level"]))
                       if self._labels is not None else None)
        self._journal = journal.pending(self.path)  # index -> entry (loaded lazily)
        for i, entry in self._journal.items():
            self._status[i] = entry.status
            if self._level is None:
                self._level = entry.level

    @classmethod
    def open(cls, path: str | Path) -> Dataset:
        return cls(path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._file["positions"].shape[0])

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, {self.name}, {len(self)} conformations)"

    @property
    def level(self) -> LevelOfTheory | None:
        return self._level

    @property
    def labeller(self) -> str | None:
        """The code that labelled this file (pyscf | gpu4pyscf); None while nothing is."""
        if self._labels is not None and "labeller" in self._labels.attrs:
            return str(self._labels.attrs["labeller"])
        for entry in self._journal.values():
            return str(entry.get("labeller") or "pyscf")
        return "pyscf" if self._labels is not None else None

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._file.attrs)

    def _check(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise InputError(f"conformation {i} out of range (dataset has {n})")
        return int(i) % n

    def molecule(self, i: int) -> Molecule:
        i = self._check(i)
        return Molecule(self.numbers, self._file["positions"][i], self.charge, self.name)

    def positions(self) -> np.ndarray:
        """All positions (n_conf, n_atoms, 3) Å; small even for 25k frames."""
        return np.asarray(self._file["positions"][()])

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "val", "test"):
            raise InputError(f"unknown split {name!r}; choose train, val or test")
        idx = np.asarray(self._file["splits"][name][()], dtype=np.int64)
        return idx[self._status[idx] != FAILED]

    def has_label(self, i: int) -> bool:
        return bool(self._status[self._check(i)] == CONVERGED)

    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self._status == CONVERGED)

    def failed(self) -> np.ndarray:
        return np.flatnonzero(self._status == FAILED)

    def status(self) -> np.ndarray:
        """Per conformation: 0 not attempted, 1 labelled, 2 failed."""
        return self._status.copy()

    def failure(self, i: int) -> str | None:
        """Why the SCF of conformation i failed (None unless it failed)."""
        i = self._check(i)
        if self._status[i] != FAILED:
            return None
        return str(self._field(i, "reason"))

    def _field(self, i: int, key: str) -> Any:
        if i in self._journal:
            return self._journal[i].get(key)
        if key not in self._labels:
            return None  # a field added after this file was written (labeller)
        value = self._labels[key][i]
        return value.decode() if isinstance(value, bytes) else value

    def label(self, i: int) -> Label:
        i = self._check(i)
        if self._status[i] == FAILED:
            raise InputError(f"conformation {i} has no label: {self.failure(i)}")
        if self._status[i] != CONVERGED:
            raise InputError(f"conformation {i} is not labelled yet (run qptbench label)")
        get = self._field
        return Label(
            energy=float(get(i, "energy")), fock=np.asarray(get(i, "fock"), dtype=np.float64),
            overlap=np.asarray(get(i, "overlap"), dtype=np.float64),
            mo_energy=np.asarray(get(i, "mo_energy"), dtype=np.float64),
            n_occ=int(get(i, "n_occ")), cycles=int(get(i, "cycles")),
            converged=bool(get(i, "converged")), wall_seconds=float(get(i, "wall_seconds")),
            cpu_seconds=float(get(i, "cpu_seconds")), threads=int(get(i, "threads")),
            host=str(get(i, "host")), pyscf_version=str(get(i, "pyscf_version")),
            labeller=str(get(i, "labeller") or "pyscf"))

    def label_cost(self) -> LabelCost:
        done = self._status != NOT_ATTEMPTED
        wall = cpu = 0.0
        if self._labels is not None:
            in_file = done.copy()
            in_file[list(self._journal)] = False
            wall += float(np.sum(self._labels["wall_seconds"][()][in_file]))
            cpu += float(np.sum(self._labels["cpu_seconds"][()][in_file]))
        for entry in self._journal.values():
            wall += float(entry.get("wall_seconds"))
            cpu += float(entry.get("cpu_seconds"))
        n_labels = int(np.sum(self._status == CONVERGED))
        return LabelCost(n_labels=n_labels, n_failed=int(np.sum(self._status == FAILED)),
                         wall_seconds=wall, cpu_seconds=cpu,
                         mean_seconds_per_label=wall / n_labels if n_labels else float("nan"))
