"""The asv tensor cache loads with ``torch.load(weights_only=True)`` and rebuilds DFTTensors."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import DFTTensors, build_tensors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
common = importlib.import_module("benchmarks.common")


def test_cache_round_trip_is_weights_only(tmp_path):
    t = build_tensors(Molecule.builtin("water"), LevelOfTheory(grid_level=0))
    path = tmp_path / "t.pt"
    torch.save(common.to_plain(t), path)
    back = common.from_plain(torch.load(path, weights_only=True))
    assert isinstance(back, DFTTensors) and back.n_ao == 24
    for f in dataclasses.fields(DFTTensors):
        a, b = getattr(t, f.name), getattr(back, f.name)
        if isinstance(a, torch.Tensor):
            # float64 values; the screened grid's AO indices and block records are int64
            assert b.dtype == a.dtype and torch.equal(a, b), f.name
            assert a.dtype in (torch.float64, torch.int64), f.name
        else:
            assert a == b, f.name
    assert back.to("cpu").overlap.device.type == "cpu"


def test_cache_rebuilds_only_qptbench_classes():
    plain = common.to_plain({"x": np.arange(3), "y": np.float64(2.5), "z": (1, "a")})
    assert common.from_plain(plain)["y"] == 2.5
    np.testing.assert_array_equal(common.from_plain(plain)["x"], np.arange(3))
    with pytest.raises(TypeError, match="refusing"):
        common.from_plain({common.OBJECT: "os:system", "fields": {}})
    with pytest.raises(TypeError, match="cannot cache"):
        common.to_plain(object())
