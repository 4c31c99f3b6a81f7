"""Labelling: PySCF labels against an independent PySCF call, cost fields, failures, Dask."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from qptbench.data.labelling import label_dataset
from qptbench.data.splits import make_splits
from qptbench.data.store import Dataset, create_dataset
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError

LEVEL = LevelOfTheory(grid_level=1)  # def2-svp / b3lyp5, small grid: quick
N_CONF = 3


def water_dataset(path, n=N_CONF, seed=0):
    water = Molecule.builtin("water")
    confs = [water.displaced(seed + k, scale=0.05) for k in range(n)]
    return create_dataset(path, confs, name="water", sampler={"kind": "displaced"},
                          splits=make_splits(n, n - 1, 1, seed=0), split_seed=0)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = water_dataset(tmp_path_factory.mktemp("labels") / "water.h5")
    summary = label_dataset(path, LEVEL, workers=1, threads_per_worker=1, progress=False)
    return path, summary


def independent_rks(mol: Molecule):
    """PySCF RKS built here, not through qptbench, at the same level."""
    from pyscf import dft, gto

    pmol = gto.M(atom=[(s, tuple(r)) for s, r in zip(mol.symbols, mol.positions, strict=True)],
                 basis="def2-svp", unit="Angstrom", verbose=0)
    mf = dft.RKS(pmol)
    mf.xc = "b3lyp5"
    mf.grids.level = 1
    mf.conv_tol = 1e-10
    mf.kernel()
    assert mf.converged
    return mf


def test_labels_match_independent_pyscf(labelled):
    path, _ = labelled
    with Dataset.open(path) as ds:
        assert ds.level == LEVEL
        assert list(ds.labelled()) == list(range(N_CONF))
        for i in range(N_CONF):
            lab = ds.label(i)
            mf = independent_rks(ds.molecule(i))
            assert lab.energy == pytest.approx(mf.e_tot, abs=1e-9)
            np.testing.assert_allclose(lab.fock, mf.get_fock(), atol=1e-7)
            np.testing.assert_allclose(lab.overlap, mf.get_ovlp(), atol=1e-13)
            np.testing.assert_allclose(lab.mo_energy, mf.mo_energy, atol=1e-7)
            assert lab.fock.dtype == np.float64 and lab.fock.shape == (24, 24)


def test_cost_fields_filled(labelled):
    import pyscf

    path, summary = labelled
    with Dataset.open(path) as ds:
        for i in range(N_CONF):
            lab = ds.label(i)
            assert lab.converged and lab.n_occ == 5 and lab.cycles > 1
            assert lab.wall_seconds > 0 and lab.cpu_seconds > 0
            assert lab.threads == 1
            assert lab.host == socket.gethostname()
            assert lab.pyscf_version == pyscf.__version__
        cost = ds.label_cost()
        walls = [ds.label(i).wall_seconds for i in range(N_CONF)]
    assert cost.n_labels == N_CONF and cost.n_failed == 0
    assert cost.wall_seconds == pytest.approx(sum(walls))
    assert cost.mean_seconds_per_label == pytest.approx(sum(walls) / N_CONF)
    assert summary.n_labels == N_CONF and summary.n_failed == 0
    assert summary.wall_seconds == pytest.approx(sum(walls))
    assert summary.elapsed_seconds >= max(walls)
    assert "labels made: 3, failures: 0" in summary.line()


def test_rerun_does_nothing(labelled):
    path, _ = labelled
    again = label_dataset(path, LEVEL, progress=False)
    assert again.n_labels == 0 and again.n_skipped == N_CONF and again.n_remaining == 0


def test_other_level_refused(labelled):
    path, _ = labelled
    with pytest.raises(InputError, match="labelled at"):
        label_dataset(path, LevelOfTheory(xc="pbe", grid_level=1), progress=False)


def test_failed_scf_recorded_not_stored(tmp_path):
    path = water_dataset(tmp_path / "w.h5", n=3)
    summary = label_dataset(path, LEVEL, max_cycle=1, limit=2, progress=False)
    assert summary.n_labels == 0 and summary.n_failed == 2 and summary.n_remaining == 1
    assert "failures: 2" in summary.line()
    with Dataset.open(path) as ds:
        failed = ds.failed()
        assert len(failed) == 2 and len(ds.labelled()) == 0
        for i in failed:
            assert not ds.has_label(i)
            assert "not converged in 1 cycles" in ds.failure(i)
            with pytest.raises(InputError, match="no label"):
                ds.label(i)
        for split in ("train", "val", "test"):
            assert not set(ds.split(split)) & set(failed)
        all_idx = np.concatenate([ds.split(s) for s in ("train", "val", "test")])
        assert sorted(all_idx) == sorted(set(range(3)) - set(failed))
        cost = ds.label_cost()
        assert cost.n_failed == 2 and cost.n_labels == 0 and cost.wall_seconds > 0
        assert np.isnan(cost.mean_seconds_per_label)
    # failures are not retried by a rerun (the same SCF would fail the same way)
    again = label_dataset(path, LEVEL, max_cycle=1, progress=False)
    assert again.n_skipped == 2 and again.n_failed == 1


def test_dask_local_cluster_matches_pool(labelled, tmp_path):
    distributed = pytest.importorskip("distributed")
    path = water_dataset(tmp_path / "dask.h5")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        summary = label_dataset(path, LEVEL, scheduler=cluster.scheduler_address, limit=2,
                                progress=False)
    assert summary.n_labels == 2 and summary.scheduler.startswith("dask tcp://127.0.0.1")
    with Dataset.open(path) as ds, Dataset.open(labelled[0]) as ref:
        for i in ds.labelled():
            np.testing.assert_allclose(ds.label(i).fock, ref.label(i).fock, atol=1e-9)
            assert ds.label(i).energy == pytest.approx(ref.label(i).energy, abs=1e-10)


def test_bad_scheduler_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("qptbench.data.labelling.DASK_CONNECT_TIMEOUT", "1s")
    path = water_dataset(tmp_path / "w.h5", n=2)
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        label_dataset(path, LEVEL, scheduler="tcp://127.0.0.1:9", progress=False)
