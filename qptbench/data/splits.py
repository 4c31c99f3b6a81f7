"""Deterministic train/validation/test splits (the MD17/QHNet convention).

QHNet's ``random_split`` takes one ``numpy.random.RandomState(seed)`` permutation of all indices:
the first ``n_train`` are training, the next ``n_val`` validation, the rest test.  MD17 sizes are
500 training structures for water and 25,000 for the others, 500 validation for all.
"""

from __future__ import annotations

import numpy as np

from qptbench.errors import InputError

SPLITS = ("train", "val", "test")
MD17_TRAIN = {"water": 500}  # every other molecule: 25,000
MD17_TRAIN_DEFAULT = 25_000
MD17_VAL = 500
DEFAULT_SEED = 42  # QHNet's


def md17_sizes(name: str) -> tuple[int, int]:
    """(n_train, n_val) of the MD17 convention for a molecule name."""
    return MD17_TRAIN.get(name.strip().lower(), MD17_TRAIN_DEFAULT), MD17_VAL


def default_sizes(name: str, n: int) -> tuple[int, int, str]:
    """MD17 sizes when they leave a test set, else 80 % / 10 % / rest; also says which rule."""
    n_train, n_val = md17_sizes(name)
    if n_train + n_val < n:
        return n_train, n_val, "md17"
    n_val = max(1, n // 10) if n >= 3 else 0
    n_train = max(1, (8 * n) // 10) if n >= 1 else 0
    n_train = min(n_train, n - n_val - (1 if n >= 3 else 0))
    return n_train, n_val, "80/10/10"


def make_splits(n: int, n_train: int, n_val: int, n_test: int | None = None,
                seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Index arrays (int64, each sorted) for train/val/test; test takes the rest by default."""
    for label, value in (("train", n_train), ("val", n_val), ("test", n_test or 0)):
        if value < 0:
            raise InputError(f"split size for {label} must be >= 0, got {value}")
    if n_test is None:
        n_test = max(n - n_train - n_val, 0)
    if n_train + n_val + n_test > n:
        raise InputError(f"split sizes {n_train} train + {n_val} val + {n_test} test exceed "
                         f"the {n} conformations")
    order = np.random.RandomState(seed).permutation(n)
    bounds = np.cumsum([0, n_train, n_val, n_test])
    return {name: np.sort(order[bounds[k]:bounds[k + 1]]).astype(np.int64)
            for k, name in enumerate(SPLITS)}
