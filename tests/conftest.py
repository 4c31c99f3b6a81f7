"""Shared, cached fixtures: PySCF-made tensors are the slow part of most tests."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_run import make_run_dir

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_tensors

torch.set_num_threads(2)


@functools.lru_cache(maxsize=2)  # uracil's dense ERIs are 2.4 GB: keep few alive
def cached_tensors(name: str, seed: int | None = None, xc: str = "b3lyp5", grid_level: int = 3):
    """Tensors of a built-in molecule, randomly displaced by 0.05 Å if a seed is given."""
    mol = perturbed(name, seed)
    return mol, build_tensors(mol, LevelOfTheory(xc=xc, grid_level=grid_level))


def perturbed(name: str, seed: int | None) -> Molecule:
    mol = Molecule.builtin(name)
    return mol if seed is None else mol.displaced(seed, scale=0.05)


def random_symmetric(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    a = torch.as_tensor(np.random.default_rng(seed).normal(size=(n, n)) * scale)
    return 0.5 * (a + a.T)


@pytest.fixture
def water():
    return cached_tensors("water")


# A synthetic run directory (tests/synthetic_run.py) for the report tests: built (and its tables
# made) once per module; tests that change files work on a copy.
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("built") / "run")


@pytest.fixture(scope="module")
def built_tables(built):
    make = _tables().make_tables
    return {True: make([built]), False: make([built], paper=False)}


@pytest.fixture(scope="module")
def written(built, tmp_path_factory):
    """The synthetic run with its tables and plots written, as `qptbench run` leaves it."""
    path = Path(shutil.copytree(built, tmp_path_factory.mktemp("written") / "run"))
    from qptbench.report.outputs import write_run_outputs

    write_run_outputs(path)
    return path


@pytest.fixture
def run_dir(built, tmp_path):
    return Path(shutil.copytree(built, tmp_path / "run_a"))


def _tables():
    from qptbench.report import tables  # pandas: only for the tests that use these fixtures

    return tables
