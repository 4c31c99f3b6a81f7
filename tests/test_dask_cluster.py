"""Labelling on a real Dask cluster: a scheduler and two workers as separate OS processes.

One worker is killed (SIGKILL) while it holds a conformation; the run still completes on the
other one.  Shown: every label committed before the kill is kept as it was (not recomputed), the
conformation the dead worker held is labelled once by the survivor, no conformation is labelled
twice, and the labels equal a process-pool run's to 1e-10.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qptbench.data.journal import journal_dir, pending
from qptbench.data.labelling import label_dataset
from qptbench.data.splits import make_splits
from qptbench.data.store import Dataset, create_dataset
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory

distributed = pytest.importorskip("distributed")

HERE = Path(__file__).resolve().parent
LEVEL = LevelOfTheory(basis="sto-3g", grid_level=1)
N_CONF = 8
SLEEP_S = 0.5  # per task, in the workers (dask_slow_labels.py): time to kill one mid-task


def _dask(*args: str) -> list[str]:
    # `dask scheduler` / `dask worker`, through the venv's own `dask` script
    script = Path(sys.executable).with_name("dask")
    return [str(script), *args]


def _wait_for(what: str, ready, timeout: float = 60.0, procs=()) -> None:
    end = time.monotonic() + timeout
    while not ready():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{what}: process {proc.args[:2]} exited with "
                                     f"{proc.returncode}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _address(file: Path) -> str | None:
    """The scheduler address in its --scheduler-file, once written completely."""
    try:
        return json.loads(file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def cluster(tmp_path):
    """(scheduler address, {worker pid: Popen}, markers folder); every process is killed at the
    end, whatever happened."""
    procs: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "QPTBENCH_TEST_MARKS": str(marks), "QPTBENCH_TEST_SLEEP": str(SLEEP_S),
           "OMP_NUM_THREADS": "1"}

    def start(name: str, args: list[str]) -> subprocess.Popen:
        with open(logs / f"{name}.log", "w") as log:
            proc = subprocess.Popen(_dask(*args), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=tmp_path)
        procs.append(proc)
        return proc

    try:
        file = tmp_path / "scheduler.json"
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                            "--no-dashboard", "--scheduler-file", str(file)])
        _wait_for("the scheduler file", lambda: _address(file) is not None, procs=procs)
        address = _address(file)
        workers = {}
        for k in range(2):
            proc = start(f"worker{k}", ["worker", "--scheduler-file", str(file), "--nthreads",
                                        "1", "--no-nanny", "--no-dashboard", "--name",
                                        f"w{k}", "--preload", str(HERE / "dask_slow_labels.py")])
            workers[proc.pid] = proc
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers, marks
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def _water(path: Path) -> Path:
    water = Molecule.builtin("water")
    confs = [water.displaced(k, scale=0.05) for k in range(N_CONF)]
    return create_dataset(path, confs, name="water", sampler={"kind": "displaced"},
                          splits=make_splits(N_CONF, N_CONF - 2, 1, seed=0), split_seed=0)


def _committed(path: Path) -> set[int]:
    folder = journal_dir(path)
    return {int(p.name[:9]) for p in folder.glob("[0-9]*.npz")} if folder.is_dir() else set()


def _started(marks: Path, within_s: float | None = None) -> list[tuple[int, int]]:
    """(conformation, worker pid) of every task a worker has started (in the last
    ``within_s`` seconds: still in its sleep, so surely not finished)."""
    now = time.time()
    return [tuple(int(x) for x in p.name.split(".")) for p in marks.iterdir()
            if within_s is None or now - p.stat().st_mtime < within_s]


def test_killed_worker_loses_nothing_and_duplicates_nothing(cluster, tmp_path):
    address, workers, marks = cluster
    path = _water(tmp_path / "water.h5")
    pool_path = shutil.copyfile(path, tmp_path / "pool.h5")
    label = subprocess.Popen(
        [sys.executable, "-m", "qptbench", "label", str(path), "--basis", "sto-3g",
         "--grid-level", "1", "--scheduler", address, "--no-progress", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim = next(iter(workers))

        def victim_busy() -> bool:
            # at least 2 labels committed, and the victim is in the middle of another one
            done = _committed(path)
            return len(done) >= 2 and any(pid == victim and i not in done
                                          for i, pid in _started(marks, SLEEP_S / 2))

        _wait_for("a busy worker after 2 labels", victim_busy, procs=[label])
        os.kill(victim, signal.SIGKILL)
        # what was committed when the worker died (read now: the run folds and removes it)
        before = {i: (e.get("wall_seconds"), e.get("energy")) for i, e in pending(path).items()}
        held = {i for i, pid in _started(marks) if pid == victim} - set(before)
        out, err = label.communicate(timeout=90)
    finally:
        if label.poll() is None:
            label.kill()
            label.wait()
    workers[victim].wait(timeout=10)
    assert workers[victim].returncode == -signal.SIGKILL
    assert label.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    # one result per conformation: N results for N distinct labelled indices, so none twice
    assert summary["n_labels"] == N_CONF and summary["n_failed"] == 0
    assert summary["n_remaining"] == 0
    assert held, "the killed worker held no conformation"
    survivor = next(pid for pid in workers if pid != victim)
    label_dataset(pool_path, LEVEL, workers=1, threads_per_worker=1, progress=False)
    with Dataset.open(path) as ds, Dataset.open(pool_path) as pool:
        assert list(ds.labelled()) == list(range(N_CONF))
        for i, (wall, energy) in before.items():  # kept as committed, not computed again
            assert (ds.label(i).wall_seconds, ds.label(i).energy) == (wall, energy)
        for i in held:  # what the dead worker held was redone by the survivor
            assert (i, survivor) in set(_started(marks))
        for i in range(N_CONF):
            assert ds.label(i).energy == pytest.approx(pool.label(i).energy, abs=1e-10)
            np.testing.assert_allclose(ds.label(i).fock, pool.label(i).fock, rtol=0, atol=1e-10)
        assert ds.label_cost().n_labels == N_CONF
