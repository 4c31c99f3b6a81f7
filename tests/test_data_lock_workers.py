"""Labelling's housekeeping: the writer lock file goes away, workers fill the machine by default,
progress bars are named, and store/journal do not import each other in a circle."""

from __future__ import annotations

import ast
import fcntl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qptbench
from qptbench.data import journal, labelling
from qptbench.data.labelling import available_cores, label_dataset, plan_workers
from qptbench.data.splits import make_splits
from qptbench.data.store import Dataset, create_dataset
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="flock and sched_getaffinity")
LEVEL = LevelOfTheory(grid_level=1)


def water_dataset(path, n=2):
    water = Molecule.builtin("water")
    confs = [water.displaced(k, scale=0.05) for k in range(n)]
    return create_dataset(path, confs, name="water", splits=make_splits(n, n - 1, 1, seed=0),
                          split_seed=0)


def lock_of(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def is_locked(lock: Path) -> bool:
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_lock_file_removed_when_the_job_ends(tmp_path):
    path = water_dataset(tmp_path / "w.h5")
    with journal.writer_lock(path):
        assert lock_of(path).exists() and is_locked(lock_of(path))
    assert not lock_of(path).exists()
    with pytest.raises(RuntimeError, match="boom"), journal.writer_lock(path):
        raise RuntimeError("boom")
    assert not lock_of(path).exists()
    label_dataset(path, LEVEL, limit=0, progress=False)  # a whole (empty) labelling run
    assert not lock_of(path).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.h5"]


def test_second_job_in_another_process_gets_the_clear_error(tmp_path):
    path = water_dataset(tmp_path / "w.h5")
    script = textwrap.dedent(f"""
        from pathlib import Path
        from qptbench.data import journal
        from qptbench.errors import InputError
        try:
            with journal.writer_lock(Path({str(path)!r})):
                print("acquired")
        except InputError as exc:
            print(exc)
    """)

    def second_job() -> str:
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True, timeout=60).stdout

    with journal.writer_lock(path):
        assert "another process is labelling" in second_job()
    assert second_job().strip() == "acquired"  # and the finished job left no lock file behind
    assert not lock_of(path).exists()


def test_lock_taken_on_a_file_just_removed_is_retaken(tmp_path, monkeypatch):
    """A job that opened the lock file as the previous holder unlinked it must not keep a lock
    on the orphaned file (a third job would lock a new file at the path: two writers)."""
    path = water_dataset(tmp_path / "w.h5")
    real_stat, calls = journal.os.stat, []

    def stat(p, *args, **kwargs):
        if Path(p) == lock_of(path) and not calls:
            calls.append(p)
            Path(p).unlink()  # the previous holder finishes between our open/flock and stat
        return real_stat(p, *args, **kwargs)

    monkeypatch.setattr(journal.os, "stat", stat)
    with journal.writer_lock(path):
        assert calls and lock_of(path).exists() and is_locked(lock_of(path))
        with pytest.raises(InputError, match="another process"), journal.writer_lock(path):
            pass
    assert not lock_of(path).exists()


@pytest.mark.parametrize(("workers", "threads", "cores", "n_tasks", "expected"), [
    (None, None, 8, None, (8, 1)),
    (None, None, 8, 3, (3, 2)),     # fewer tasks than cores: the spare cores become threads
    (None, None, 8, 0, (1, 8)),
    (2, None, 8, 100, (2, 4)),
    (3, None, 8, 100, (3, 2)),
    (16, None, 8, 100, (16, 1)),
    (None, 4, 8, 100, (2, 4)),
    (None, 16, 8, 100, (1, 16)),
    (2, 2, 8, 100, (2, 2)),
])
def test_plan_workers(workers, threads, cores, n_tasks, expected):
    assert plan_workers(workers, threads, cores, n_tasks) == expected


def test_available_cores_is_the_affinity():
    import os

    assert available_cores() == len(os.sched_getaffinity(0)) >= 1


def test_label_summary_records_the_plan_and_the_bar_is_named(tmp_path, monkeypatch):
    from qptbench import progress

    path = water_dataset(tmp_path / "w.h5")
    bars, real = [], progress.make_bar

    def make_bar(total, desc, disable=False, initial=0, unit="it"):
        bars.append(desc)
        return real(total, desc, disable=True, initial=initial, unit=unit)

    monkeypatch.setattr("qptbench.progress.make_bar", make_bar)
    monkeypatch.setattr(labelling, "available_cores", lambda: 6)
    summary = label_dataset(path, LEVEL, workers=2, limit=0)
    assert (summary.workers, summary.threads_per_worker, summary.cores) == (2, 3, 6)
    assert {"workers", "threads_per_worker", "cores"} <= summary.as_dict().keys()
    assert "2 worker(s) x 3 thread(s) on 6 core(s)" in summary.line()
    label_dataset(path, LEVEL, limit=0, desc="labels: training set (qhnet)")
    assert bars == ["labels: w.h5", "labels: training set (qhnet)"]
    with Dataset.open(path) as ds:
        assert len(ds.labelled()) == 0


def test_store_and_journal_import_no_circle():
    data = Path(qptbench.__file__).parent / "data"

    def imports(name: str) -> set[str]:
        tree = ast.parse((data / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        return found

    assert "qptbench.data.store" not in imports("journal")
    assert not {m for m in imports("layout") if m.startswith("qptbench")}
    out = subprocess.run([sys.executable, "-c", "import sys, qptbench.data.journal; "
                          "print('qptbench.data.store' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
