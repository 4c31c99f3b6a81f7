"""The GPU check script end to end on the CPU (water, a tiny QPT), and its clean refusal of
``--device cuda`` where there is no GPU: the script a person with a GPU runs once must work the
first time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def test_prepare_run_and_table_on_cpu(tmp_path):
    tensors, out = tmp_path / "tensors", tmp_path / "check.json"
    prep = _run("prepare", "--out", str(tensors), "--molecules", "water", "--qpt-molecule",
                "water")
    assert prep.returncode == 0, prep.stderr
    done = _run("run", "--tensors", str(tensors), "--device", "cpu", "--out", str(out),
                "--qpt-preset", "tiny", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    water = result["molecules"]["water"]
    assert water["n_ao"] == 24
    for key in ("energy_s", "energy_backward_s", "sandwich_backward_s"):
        assert water["torch"][key] > 0
    assert water["jax"].get("energy_backward_s", 0) > 0 or "skipped" in water["jax"]
    assert result["qpt_step"]["n_ao"] == 24 and result["qpt_step"]["step_s"] > 0
    assert "skipped" in result["labelling"] or result["labelling"]["gpu4pyscf_s"] > 0
    table = _run("table", str(out))
    assert table.returncode == 0 and "| water | 24 |" in table.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_one_clear_line(tmp_path):
    tensors = tmp_path / "tensors"
    tensors.mkdir()
    done = _run("run", "--tensors", str(tensors), "--device", "cuda")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
