"""``--eri`` / ``--auxbasis`` reach train-baseline (refused against a store at another level,
recorded in result.json and the ledger), ``experiment alanine`` (its harness level) and the memory
guard's per-method QPT configs.  Water in STO-3G on a coarse grid: seconds."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError

DF = LevelOfTheory(basis="sto-3g", grid_level=0, eri="df")


@pytest.fixture(scope="module")
def df_store(tmp_path_factory):
    """Three water conformations labelled by PySCF's DF-RKS (train, val, test: one each),
    committed in this process (a labelling pool would spend seconds starting)."""
    from qptbench.data import journal
    from qptbench.data.store import create_dataset
    from qptbench.dft.labels import pyscf_rks

    molecules = [Molecule.builtin("water").displaced(seed, 0.03) for seed in range(3)]
    path = tmp_path_factory.mktemp("df-store") / "water.h5"
    splits = {"train": np.array([0]), "val": np.array([1]), "test": np.array([2])}
    create_dataset(path, molecules, name="water", splits=splits, split_seed=0)
    for i, mol in enumerate(molecules):
        r = pyscf_rks(mol, DF)
        journal.commit(path, i, 1, DF, dict(
            energy=r.energy, fock=r.fock, overlap=r.overlap, mo_energy=r.mo_energy,
            n_occ=r.n_occ, cycles=r.cycles, converged=r.converged, wall_seconds=r.seconds,
            cpu_seconds=r.cpu_seconds, threads=1, host="h", pyscf_version="v", reason=""))
    journal.fold(path)
    return path


def _baseline(path, out, *extra):
    return CliRunner().invoke(app, ["train-baseline", "--labels", str(path), "--steps", "1",
                                    "--energy-molecules", "1", "--eval-every", "0", "--out",
                                    str(out), "--quiet", "--device", "cpu", *extra])


class _Stop(Exception):
    """Ends a baseline run once its level is checked and booked (QHNet itself takes minutes)."""


class _NoModel:
    """Stands in for QHNet (building e3nn's layers alone takes seconds)."""

    config = SimpleNamespace(batch_size=1)

    def fit_reference(self, *args):
        pass


def test_train_baseline_checks_and_records_the_level(df_store, tmp_path, monkeypatch):
    from qptbench.methods import qhnet

    for extra, asked in ((["--eri", "dense"], "asks for dense"),
                         (["--eri", "df", "--auxbasis", "weigend"], "asks for df (weigend)")):
        bad = _baseline(df_store, tmp_path / "bad", *extra)
        lines = bad.stderr.strip().splitlines()
        assert bad.exit_code == 2 and len(lines) == 1, bad.output
        assert "labelled with df (def2-universal-jkfit) ERIs" in lines[0] and asked in lines[0]
        assert not (tmp_path / "bad" / "ledger.jsonl").exists()
    ri = _baseline(df_store, tmp_path / "bad", "--eri", "ri")
    assert ri.exit_code == 2 and "eri must be one of dense, df" in ri.stderr

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(qhnet, "build_model", lambda *args: _NoModel())
    monkeypatch.setattr(qhnet, "train", stop)
    for extra in ([], ["--eri", "df"], ["--auxbasis", "def2-universal-jkfit"]):
        out = tmp_path / f"run{len(extra)}"
        assert isinstance(_baseline(df_store, out, *extra).exception, _Stop)
        entries = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
        assert entries[0]["phase"] == "label"
        assert entries[0]["level_of_theory"] == DF.as_dict()


@pytest.mark.slow
def test_train_baseline_result_records_the_level(df_store, tmp_path):
    """One QHNet step on DF labels, scored at DF: result.json names the level (a minute or
    more: QHNet's tensor products, the evaluator, the inference timing)."""
    out = tmp_path / "run"
    result = _baseline(df_store, out, "--eri", "df")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["level_of_theory"] == DF.as_dict()
    assert np.isfinite(summary["test_delta_e_mev_k1"])


def test_experiment_alanine_carries_the_level_to_the_harness_and_the_guard():
    from qptbench.experiments import alanine
    from qptbench.methods.memory import _method_config

    cfg = alanine.make_config("smoke", eri="df", auxbasis="def2-universal-jkfit").harness
    assert cfg.level().is_df and cfg.level().basis == "sto-3g"
    assert not alanine.make_config("smoke").harness.level().is_df
    # the guard sizes each QPT method at the run's level, not at dense
    assert _method_config("qpt", cfg).level() == cfg.level()
    assert not _method_config("qpt", alanine.make_config("smoke").harness).level().is_df
    assert _method_config("qhnet", cfg) is None  # the label-trained route: its own estimate
    with pytest.raises(InputError, match="eri must be one of dense, df"):
        alanine.make_config("smoke", eri="ri")
    runner = CliRunner()
    bad = runner.invoke(app, ["experiment", "alanine", "--eri", "ri", "--out", "unused"])
    lines = bad.stderr.strip().splitlines()
    assert bad.exit_code == 2 and len(lines) == 1 and "eri must be one of" in lines[0]
    for command in (["experiment", "alanine"], ["train-baseline"]):
        text = " ".join(runner.invoke(app, [*command, "--help"]).stdout.split())
        assert "--eri" in text and "--auxbasis" in text
