"""Crash-safe label commits: a journal of one small file per label, folded into the HDF5 file.

HDF5 is not crash-safe: a process killed while h5py writes can leave a file that no longer opens.
So nothing here edits a dataset file in place:

1. *Commit.* When a worker returns a label (or a failed SCF), the parent writes it to
   ``<file>.journal/<index>.npz`` under a temporary name, fsyncs it and ``os.replace``s it into
   place.  A label is committed exactly when its final name exists; a kill loses at most the
   conformations still in flight (a half-written temporary file is ignored and removed later).
2. *Fold.* At safe points (every ``fold_every`` labels, at the end of a run, at the start of the
   next one) the parent copies the dataset file, writes all journal entries into the copy,
   fsyncs it and ``os.replace``s it over the original; only then are the entries deleted.  A kill
   before the replace leaves the original file and the journal intact; a kill after it leaves
   entries that are already in the file, and folding them again writes the same values.
3. *Read.* ``store.Dataset`` overlays entries not yet folded, so a label is visible as soon as it
   is committed.

Only one process writes a dataset at a time: ``writer_lock`` holds an exclusive ``flock`` on
``<file>.lock`` (released by the OS whatever way the process ends; the file itself is removed
when the job ends normally or with an exception, and a stale one left by a kill is harmless).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qptbench.data.layout import (
    CONVERGED,
    FLOAT_FIELDS,
    INT_FIELDS,
    MATRIX_FIELDS,
    STRING_FIELDS,
    fsync,
    fsync_dir,
    h5py_module,
)
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError


def journal_dir(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


class Entry:
    """One committed label; fields load on first use."""

    def __init__(self, path: Path):
        self.path = path
        with np.load(path, allow_pickle=False) as data:
            self.index = int(data["index"])
            self.status = int(data["status"])
            self.level = LevelOfTheory(**json.loads(str(data["level"])))

    def get(self, key: str) -> Any:
        with np.load(self.path, allow_pickle=False) as data:
            if key not in data:
                return None
            value = data[key]
        return value.item() if value.ndim == 0 else value


def commit(path: Path, index: int, status: int, level: LevelOfTheory,
           fields: dict[str, Any]) -> Path:
    """Atomically add one result (label or failure) for conformation ``index`` to the journal."""
    folder = journal_dir(path)
    folder.mkdir(exist_ok=True)
    final = folder / f"{index:09d}.npz"
    tmp = folder / f".{index:09d}.{os.getpid()}.tmp"
    arrays = {k: np.asarray(v) for k, v in fields.items() if v is not None}
    with open(tmp, "wb") as handle:
        np.savez(handle, index=index, status=status, level=json.dumps(level.as_dict()), **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    fsync_dir(folder)
    return final


def pending(path: Path) -> dict[int, Entry]:
    """Committed entries not yet folded into the file, by conformation index."""
    folder = journal_dir(path)
    if not folder.is_dir():
        return {}
    entries = {}
    for item in sorted(folder.glob("[0-9]*.npz")):
        entry = Entry(item)
        entries[entry.index] = entry
    return entries


def _dataset(group, key: str, shape: tuple[int, ...], dtype, fill) -> Any:
    if key not in group:
        chunks = (1, *shape[1:]) if len(shape) > 1 else None
        group.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, fillvalue=fill)
    return group[key]


def fold(path: Path, conv_tol: float | None = None, max_cycle: int | None = None) -> int:
    """Move journal entries into the dataset file (copy, write, fsync, replace); returns count."""
    path = Path(path)
    folder = journal_dir(path)
    entries = pending(path)
    for stale in [path.with_name(path.name + ".tmp-fold"),
                  *(folder.glob(".*.tmp") if folder.is_dir() else [])]:
        stale.unlink(missing_ok=True)  # left by a killed fold or commit; never part of the data
    if not entries:
        _remove_if_empty(folder)
        return 0
    h5py = h5py_module()
    tmp = path.with_name(path.name + ".tmp-fold")
    shutil.copyfile(path, tmp)
    with h5py.File(tmp, "r+") as f:
        n = f["positions"].shape[0]
        labels = f.require_group("labels")
        for entry in entries.values():
            if entry.index >= n:
                raise InputError(f"journal entry {entry.path} is for conformation {entry.index}"
                                 f" but {path} has {n}")
            level = json.dumps(entry.level.as_dict())
            if "level" not in labels.attrs:
                labels.attrs["level"] = level
            elif LevelOfTheory(**json.loads(labels.attrs["level"])) != entry.level:
                # compared as levels, not JSON text: a file labelled before a field was added
                # (eri, auxbasis) stores the level without it, and that means its default
                raise InputError(f"{entry.path} was labelled at {level}, the file at "
                                 f"{labels.attrs['level']}")
            # one code per file (data/labelling.py says why); files from before the
            # labeller was recorded were all labelled by PySCF
            labeller = str(entry.get("labeller") or "pyscf")
            known = str(labels.attrs.get("labeller", "pyscf" if "status" in labels else labeller))
            if known != labeller:
                raise InputError(f"{entry.path} was labelled with {labeller}, the file with "
                                 f"{known}")
            labels.attrs["labeller"] = labeller
        if conv_tol is not None:
            labels.attrs["conv_tol"] = conv_tol
        if max_cycle is not None:
            labels.attrs["max_cycle"] = max_cycle
        string = h5py.string_dtype()
        status = _dataset(labels, "status", (n,), np.int8, 0)
        for i, entry in sorted(entries.items()):
            status[i] = entry.status
            _dataset(labels, "converged", (n,), bool, False)[i] = entry.status == CONVERGED
            for key in FLOAT_FIELDS:
                _dataset(labels, key, (n,), np.float64, np.nan)[i] = entry.get(key)
            for key in INT_FIELDS:
                _dataset(labels, key, (n,), np.int64, -1)[i] = entry.get(key)
            for key in STRING_FIELDS:
                _dataset(labels, key, (n,), string, "")[i] = str(entry.get(key) or "")
            if entry.status != CONVERGED:
                continue  # a failed SCF is recorded, never stored as a label
            mo_energy = entry.get("mo_energy")
            n_ao = mo_energy.shape[0]
            _dataset(labels, "mo_energy", (n, n_ao), np.float64, np.nan)[i] = mo_energy
            for key in MATRIX_FIELDS:
                _dataset(labels, key, (n, n_ao, n_ao), np.float64, np.nan)[i] = entry.get(key)
    fsync(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    for entry in entries.values():
        entry.path.unlink(missing_ok=True)
    _remove_if_empty(folder)
    return len(entries)


def _remove_if_empty(folder: Path) -> None:
    """A folded journal leaves no empty folder behind (``commit`` makes it again when needed)."""
    with contextlib.suppress(OSError):  # missing, or not empty: keep it
        folder.rmdir()


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Exclusive writer lock on a dataset file; a second labelling job gets a clear error.

    The lock file ``<file>.lock`` is removed when the holder finishes.  It is unlinked while the
    ``flock`` is still held, and a job that wins the lock checks that it locked the file now at
    that path (not one a finishing job just removed), so two writers never overlap.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the user must not start two jobs on one file
        yield
        return
    lock = path.with_name(path.name + ".lock")
    while True:
        handle = open(lock, "a")  # closed below, after the unlink
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise InputError(f"another process is labelling {path} (lock {lock})") from None
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        mine = os.fstat(handle.fileno())
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            break
        handle.close()  # the previous holder removed this file as we opened it: lock the new one
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
