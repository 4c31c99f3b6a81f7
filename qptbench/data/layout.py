"""What ``store`` (reading and creating dataset files) and ``journal`` (committing labels) share:
the file format tag, the label status codes and fields, and the fsync helpers.

Kept apart so that ``store`` can import ``journal`` and ``journal`` needs nothing from ``store``.
"""

from __future__ import annotations

import os
from pathlib import Path

FORMAT = "qptbench-dataset-1"
NOT_ATTEMPTED, CONVERGED, FAILED = 0, 1, 2
MATRIX_FIELDS = ("fock", "overlap")
FLOAT_FIELDS = ("energy", "wall_seconds", "cpu_seconds")
INT_FIELDS = ("n_occ", "cycles", "threads")
STRING_FIELDS = ("host", "pyscf_version", "reason", "labeller")


def h5py_module():
    import h5py  # lazy: only reading or writing dataset files needs it

    return h5py


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fsync(path)
    except OSError:  # some file systems do not allow fsync on directories
        pass
