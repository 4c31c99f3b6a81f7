"""`train-qpt --val FILE` scores against FILE's val split whatever the training sampler (the
review found it ignored unless --dataset was given)."""

from __future__ import annotations

import numpy as np

from qptbench.data.labelling import label_dataset
from qptbench.data.store import create_dataset
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.ledger import Ledger, read_ledger
from qptbench.methods.qpt import make_references
from qptbench.training import qpt as tq

LEVEL = LevelOfTheory(grid_level=1)


def test_val_file_is_used_with_the_displaced_sampler(tmp_path):
    base = Molecule.builtin("water")
    mols = [base.displaced(s, 0.03) for s in range(3)]
    path = tmp_path / "val.h5"
    create_dataset(path, mols, name="water", split_seed=0,
                   splits={"train": np.array([0]), "val": np.array([1, 2]),
                           "test": np.array([], dtype=np.int64)})
    label_dataset(path, LEVEL, progress=False)
    cfg = tq.make_config("smoke", val=str(path), n_val=2, grid_level=1)
    assert cfg.sampler == "displaced" and cfg.dataset is None
    ledger = Ledger(tmp_path / "ledger.jsonl")
    refs = make_references(cfg, tmp_path, ledger)
    assert len(refs) == 2
    for ref, mol in zip(refs, mols[1:], strict=True):
        np.testing.assert_array_equal(ref.molecule.positions, mol.positions)
    assert read_ledger(tmp_path / "ledger.jsonl")[0]["source"] == str(path)
    again = make_references(cfg, tmp_path, ledger)  # the cache: plain arrays, same numbers
    np.testing.assert_array_equal(again[0].fock, refs[0].fock)
