"""Peptides beyond 200 AOs with density fitting: the built-in Ace-Ala₄-NMe (485 AOs in def2-SVP)
regenerates from its script, the memory guard lets the DF runs through and stops the dense ones
before building anything, and (slow, minutes) a QPT training step on the alanine dipeptide and
energy + backward on Ace-Ala₄-NMe complete at DF, the latter equal to PySCF's DF-RKS.

The slow tests run tests/peptide_df_run.py in a fresh process each, so its peak-RSS figures are
the phase's own; ``pytest -m slow -s tests/test_peptide_df.py`` prints them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.memory import check_fits, estimate_tensor_bytes
from qptbench.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
MACHINE_LIMIT = 0.8 * 24e9  # the guard's default share of a 24 GB machine, stated, not measured


def _generator():
    path = ROOT / "datasets" / "make_peptide_geometry.py"
    spec = importlib.util.spec_from_file_location("make_peptide_geometry", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peptide_regenerates_to_1e6_angstrom_and_is_sane():
    gen = _generator()
    symbols, pos, bonds = gen.build()  # RDKit: ETKDG with a fixed seed, then MMFF
    mol = Molecule.builtin("Ace_Ala4_NMe")
    assert mol.symbols == symbols and mol.formula == "C15H27N5O5" and mol.n_electrons == 192
    assert np.abs(mol.positions - pos).max() <= 1e-6
    # bonding sanity, from the stored file: RDKit's bonds have bond lengths, the rest do not
    d = np.linalg.norm(mol.positions[:, None] - mol.positions[None], axis=-1)
    heavy = mol.numbers > 1
    assert len(bonds) == mol.n_atoms - 1  # a peptide chain is a tree: no rings
    for i, j in bonds:
        hydrogen = not (heavy[i] and heavy[j])
        lo, hi = (0.95, 1.15) if hydrogen else (1.18, 1.58)
        assert lo <= d[i, j] <= hi, (i, j, d[i, j])
    far = np.ones_like(d, dtype=bool)
    for i, j in bonds:
        far[i, j] = far[j, i] = False
    np.fill_diagonal(far, False)
    assert d[far].min() > 1.6  # no clash and no bond RDKit did not draw (1-3 pairs included)
    from qptbench.dft.tensors import build_mole

    assert build_mole(mol, "def2-svp").nao == 485  # the point of this molecule: N_AO >= 400


def _guard(need) -> None:
    check_fits("test", need, limit_bytes=MACHINE_LIMIT)


def test_memory_guard_accepts_df_and_refuses_dense_for_the_peptides():
    """Estimates only: nothing is built.  The alanine dipeptide's smoke train-qpt and one
    Ace-Ala₄-NMe geometry (tensors beside PySCF's DF-RKS) fit a 24 GB machine at DF; dense ERIs
    (200⁴ and 485⁴ float64: 12.8 and 442 GB) are refused, in one line that suggests DF."""
    from qptbench.methods.memory import qpt_need, scf_need
    from qptbench.training.qpt import make_config

    ala_df = qpt_need(make_config("smoke", molecule="alanine_dipeptide", eri="df"))
    ala_dense = qpt_need(make_config("smoke", molecule="alanine_dipeptide"))
    pep = Molecule.builtin("ace_ala4_nme")
    pep_df = scf_need(pep, LevelOfTheory(eri="df", grid_level=1))
    pep_dense = scf_need(pep, LevelOfTheory(grid_level=1))
    assert estimate_tensor_bytes(pep, LevelOfTheory(grid_level=1))["eri"] == 485**4 * 8
    for need in (ala_df, pep_df):
        _guard(need)
    for need in (ala_dense, pep_dense):
        with pytest.raises(InputError, match="use --eri df") as err:
            _guard(need)
        assert "\n" not in str(err.value)
    assert pep_df["total"] < MACHINE_LIMIT < ala_dense["total"] < pep_dense["total"]


def _run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "peptide_df_run.py"), mode],
                          capture_output=True, text=True, timeout=3600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{mode}: {json.dumps(out, indent=1)}")
    return out


@pytest.mark.slow
def test_qpt_training_step_on_alanine_dipeptide_with_df():
    out = _run("train")
    assert (out["n_ao"], out["dense_eri"], out["level"]["eri"]) == (200, False, "df")
    assert out["n_aux"] > out["n_ao"]
    assert math.isfinite(out["loss_ha"]) and out["grad_finite"]
    assert 0 < out["grad_norm"] < math.inf and out["weights_changed"]
    assert out["n_params_with_grad"] == out["n_params"]
    # an untrained network's energy is a real molecule's: within 1 Ha of the zero model's
    assert abs(out["loss_ha"] - out["e_zero_ha"]) < 1.0


@pytest.mark.slow
def test_peptide_energy_and_backward_with_df_match_pyscf():
    out = _run("energy")
    assert (out["n_atoms"], out["n_ao"], out["dense_eri"]) == (52, 485, False)
    assert out["level"]["grid_level"] == 1 and out["level"]["eri"] == "df"
    assert out["grad_finite"] and 0 < out["grad_norm"] < math.inf
    assert abs(out["diff_ha"]) <= 1e-6, out["diff_ha"]
