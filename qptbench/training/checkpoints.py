"""Checkpoints of the training loop: tensors and plain Python types only.

They are read with ``weights_only=True``: a run directory received from elsewhere cannot execute
code on ``--resume``; a file holding anything else is refused with an
:class:`~qptbench.errors.InputError`.  Also the RNG state a checkpoint carries, and atomic writes.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import torch

from qptbench.errors import InputError

PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def check_plain(obj: Any, where: str) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            check_plain(k, where)
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, PLAIN):
        raise TypeError(f"{where} is a {type(obj).__name__}: checkpoints hold only tensors and "
                        "plain types (dict, list, tuple, str, int, float, bool, None)")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; a file holding other objects (which unpickling
    could execute) is refused with an InputError and never run."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as why:
        found = re.search(r"GLOBAL (\S+)", str(why))
        what = f" (found {found.group(1)})" if found else ""
        raise InputError(f"{path}: refused to load: it holds objects other than tensors and plain "
                         f"types{what}, which could execute code; nothing was executed") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)  # numpy's global RNG is not used anywhere: code passes Generators
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"python_version": version, "python": torch.tensor(internal, dtype=torch.int64),
            "python_gauss": gauss, "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    if isinstance(python, torch.Tensor):
        python = (state["python_version"], tuple(int(x) for x in python.tolist()),
                  state["python_gauss"])
    else:  # checkpoints before 2025-06 stored random.getstate() as is
        python = (python[0], tuple(python[1]), python[2])
    random.setstate(python)
    torch.set_rng_state(state["torch"])


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
