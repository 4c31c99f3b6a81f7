"""Resumable, loss-free labelling: kill a worker, kill the parent, break a fold; rerun; compare."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from qptbench.data import journal
from qptbench.data.labelling import label_dataset
from qptbench.data.splits import make_splits
from qptbench.data.store import Dataset, create_dataset
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError

psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="kills processes the Linux way")

LEVEL = LevelOfTheory(grid_level=1)
N_CONF = 6
SCRIPT = textwrap.dedent("""
    import sys
    from qptbench.data.labelling import label_dataset
    from qptbench.dft.level import LevelOfTheory

    if __name__ == "__main__":
        label_dataset(sys.argv[1], LevelOfTheory(grid_level=1), workers=1, progress=False,
                      fold_every=1)  # fold after every label: a kill often lands in a fold
""")


def water_dataset(path, n=N_CONF):
    water = Molecule.builtin("water")
    confs = [water.displaced(k, scale=0.05) for k in range(n)]
    return create_dataset(path, confs, name="water", splits=make_splits(n, n - 2, 1, seed=0),
                          split_seed=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run."""
    path = water_dataset(tmp_path_factory.mktemp("ref") / "ref.h5")
    label_dataset(path, LEVEL, workers=1, progress=False)
    return path


def n_done(path) -> int:
    try:
        with Dataset.open(path) as ds:
            return int(np.sum(ds.status() != 0))
    except (InputError, OSError, FileNotFoundError):
        return 0  # caught between journal entry and fold: try again


def start_job(tmp_path, path) -> subprocess.Popen:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_labels(job, path, at_least: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = n_done(path)
        if done >= at_least:
            return done
        assert job.poll() is None, job.communicate()
        time.sleep(0.02)
    raise AssertionError("labelling made no progress")


def kill_group(job) -> None:
    try:
        os.killpg(job.pid, signal.SIGKILL)  # the orphaned pool worker, if any
    except ProcessLookupError:
        pass
    job.communicate()


def assert_same_as(path, reference) -> None:
    with Dataset.open(path) as ds, Dataset.open(reference) as ref:
        assert list(ds.labelled()) == list(range(N_CONF)) == list(ref.labelled())
        assert len(ds.failed()) == 0
        for i in range(N_CONF):
            a, b = ds.label(i), ref.label(i)
            assert a.energy == pytest.approx(b.energy, abs=1e-10)
            np.testing.assert_allclose(a.fock, b.fock, atol=1e-9)
            np.testing.assert_allclose(a.overlap, b.overlap, atol=1e-14)
            np.testing.assert_allclose(a.mo_energy, b.mo_energy, atol=1e-9)
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(ds.split(split), ref.split(split))
    assert not journal.pending(path)


def test_kill_worker_then_resume(tmp_path, reference):
    path = water_dataset(tmp_path / "w.h5")
    job = start_job(tmp_path, path)
    try:
        before = wait_for_labels(job, path, 1)
        workers = [p for p in psutil.Process(job.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 1
        workers[0].kill()
        _, err = job.communicate(timeout=60)
    finally:
        kill_group(job)
    assert job.returncode != 0 and "rerun the same command to resume" in err
    after = n_done(path)
    assert before <= after < N_CONF, "the kill must land mid-run and lose nothing committed"
    summary = label_dataset(path, LEVEL, workers=1, progress=False)
    assert summary.n_skipped == after and summary.n_labels == N_CONF - after
    assert_same_as(path, reference)


def test_kill_parent_then_resume(tmp_path, reference):
    path = water_dataset(tmp_path / "w.h5")
    job = start_job(tmp_path, path)
    try:
        before = wait_for_labels(job, path, 2)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        kill_group(job)
    after = n_done(path)  # the file still opens: it was never half-written
    assert before <= after < N_CONF
    label_dataset(path, LEVEL, workers=1, progress=False)
    assert_same_as(path, reference)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_fold_killed_before_replace(tmp_path, reference, monkeypatch):
    """A fold that dies before its os.replace leaves the old file and the journal intact."""
    path = water_dataset(tmp_path / "w.h5")
    label_dataset(path, LEVEL, limit=2, progress=False)
    with Dataset.open(path) as ds:
        first = list(ds.labelled())
    todo = sorted(set(range(N_CONF)) - set(first))[:2]
    with Dataset.open(reference) as ref:
        extra = {i: ref.label(i) for i in todo}
    for i, lab in extra.items():  # commit two labels by hand, as the parent would
        fields = {k: v for k, v in vars(lab).items()}
        journal.commit(path, i, 1, LEVEL, {**fields, "reason": ""})
    real_replace = os.replace

    def dies_in_fold(src, dst):
        if str(src).endswith(".tmp-fold"):
            raise KeyboardInterrupt("killed mid-fold")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_in_fold)
    with pytest.raises(KeyboardInterrupt):
        journal.fold(path)
    monkeypatch.setattr(os, "replace", real_replace)
    with Dataset.open(path) as ds:  # old file + journal: nothing lost
        assert sorted(ds.labelled()) == sorted(first + todo)
        assert ds.label(todo[1]).energy == extra[todo[1]].energy
    assert len(journal.pending(path)) == 2
    label_dataset(path, LEVEL, progress=False)
    assert_same_as(path, reference)


def test_refold_is_idempotent(tmp_path, reference):
    """Killed after the replace but before the journal was cleared: folding again is harmless."""
    path = tmp_path / "copy.h5"
    shutil.copyfile(reference, path)
    with Dataset.open(reference) as ref:
        lab = ref.label(3)
    journal.commit(path, 3, 1, LEVEL, {**vars(lab), "reason": ""})
    assert journal.fold(path) == 1
    assert_same_as(path, reference)


def test_second_writer_refused(tmp_path):
    path = water_dataset(tmp_path / "w.h5", n=2)
    with journal.writer_lock(path), pytest.raises(InputError, match="another process"):
        label_dataset(path, LEVEL, progress=False)
