"""A trained QPT must beat the zero model (H_init + the same k iterations), scored by the shared
evaluator: otherwise the network adds nothing to the DFT iterations it is sandwiched between."""

from __future__ import annotations

import pytest
import torch

from qptbench.methods.qpt import run as qpt_run
from qptbench.training import qpt as tq


def _train(tmp_path, preset: str, **overrides) -> dict:
    cfg = tq.make_config(preset, **overrides)
    return qpt_run(cfg, tmp_path / preset, torch.device("cpu"), progress=False)


def test_smoke_trained_qpt_beats_zero_model_at_k1(tmp_path):
    """CI-sized: 30 steps of the smoke preset on displaced waters, 2 held-out geometries."""
    s = _train(tmp_path, "smoke", steps=30, n_val=2)
    assert s["delta_e_mev_k1"] < s["zero_delta_e_mev_k1"]
    assert s["delta_h_uha_k1"] < s["zero_delta_h_uha_k1"]
    assert s["floor_mev"] < 1e-4


@pytest.mark.slow
def test_tiny_trained_qpt_beats_zero_model_at_k1_and_k3(tmp_path):
    """300 steps of the tiny preset, 8 held-out geometries at grid level 3 (~10 min, 2 cores)."""
    s = _train(tmp_path, "tiny", steps=300, n_val=8, eval_every=0)
    for k in (1, 3):
        assert s[f"delta_e_mev_k{k}"] < 0.5 * s[f"zero_delta_e_mev_k{k}"], k
        assert s[f"delta_h_uha_k{k}"] < s[f"zero_delta_h_uha_k{k}"], k
