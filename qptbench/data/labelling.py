"""Label a dataset with PySCF: a process pool or a Dask cluster, resumable, with its cost.

The SCF code is the labeller: PySCF on CPU (default) or GPU4PySCF on a CUDA GPU at the same
level of theory (``qptbench.dft.labels_gpu``).  A file is labelled by one labeller only: a
resume with the other is refused.  The two agree to round-off at one level, but a file's
"data creation" cost is a sum over its labels, and CPU and GPU seconds summed together measure
neither, so mixing would silently corrupt the cost the benchmark reports.

Only this parent process writes the dataset: workers (pool processes or Dask tasks) run
``label_task`` and return plain arrays; the parent commits each result atomically to the journal
and folds the journal into the HDF5 file at safe points (``qptbench.data.journal`` explains why a
kill at any moment loses at most the conformations in flight and never corrupts the file).
A rerun skips everything already committed — labels and failed SCFs alike.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qptbench.data import journal
from qptbench.data.store import CONVERGED, FAILED, NOT_ATTEMPTED, Dataset
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError

DASK_CONNECT_TIMEOUT = "20s"


class LabellingInterrupted(RuntimeError):
    """A worker died (killed, out of memory); what finished is saved, a rerun resumes."""


@dataclass
class LabelSummary:
    """What one ``label_dataset`` call did; ``line()`` is the "data creation" line."""

    n_labels: int            # new converged labels this run
    n_failed: int            # new failed SCFs this run
    n_skipped: int           # already labelled or failed before this run
    n_remaining: int         # still not attempted (e.g. because of --limit)
    elapsed_seconds: float   # wall clock of the whole run
    wall_seconds: float      # summed over this run's SCFs
    cpu_seconds: float       # summed over this run's SCFs (all threads)
    mean_seconds_per_label: float
    workers: int             # processes used (1 for a Dask cluster: its own workers)
    threads_per_worker: int  # OpenMP threads per SCF
    scheduler: str
    cores: int = 0           # cores available to this process (os.sched_getaffinity)
    labeller: str = "pyscf"  # the SCF code: pyscf (CPU) or gpu4pyscf (CUDA)

    def line(self) -> str:
        return (f"labels made: {self.n_labels}, failures: {self.n_failed}, run wall "
                f"{self.elapsed_seconds / 3600:.4f} h, SCF wall {self.wall_seconds / 3600:.4f} h"
                f", CPU {self.cpu_seconds / 3600:.4f} h, mean "
                f"{self.mean_seconds_per_label:.2f} s/label ({self.workers} worker(s) x "
                f"{self.threads_per_worker} thread(s) on {self.cores} core(s), {self.scheduler}, "
                f"{self.labeller})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (cgroups, taskset), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def plan_workers(workers: int | None, threads: int | None, cores: int,
                 n_tasks: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) filling ``cores``; ``None`` means choose.

    Neither given: one single-threaded worker per core, but never more workers than tasks (the
    spare cores become threads).  Workers given: threads = cores // workers (at least 1).
    Threads given: workers = cores // threads (at least 1).
    """
    if workers is None:
        workers = max(1, cores // threads) if threads is not None else cores
        if n_tasks is not None:
            workers = max(1, min(workers, n_tasks))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def _set_threads(threads: int) -> None:
    # Before PySCF (and its OpenMP runtime) loads in a fresh worker, and again at run time.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _init_worker(threads: int) -> None:
    _set_threads(threads)


def label_task(task: tuple) -> dict[str, Any]:
    """One SCF, in a worker: (index, numbers, positions, charge, level dict, conv_tol,
    max_cycle, threads[, labeller]) -> a dict of plain values; never raises for a failed SCF."""
    index, numbers, positions, charge, level, conv_tol, max_cycle, threads = task[:8]
    labeller = task[8] if len(task) > 8 else "pyscf"
    from qptbench.dft.geometry import Molecule

    if labeller == "gpu4pyscf":
        from qptbench.dft.labels_gpu import gpu4pyscf_rks as rks
    else:
        from qptbench.dft.labels import pyscf_rks as rks

    tic, cpu = time.perf_counter(), time.process_time()
    try:
        mol = Molecule(numbers, positions, charge)
        res = rks(mol, LevelOfTheory(**level), conv_tol=conv_tol, max_cycle=max_cycle,
                  threads=threads)
    except Exception as exc:  # a crash inside PySCF is a failed conformation, not a dead job
        import socket

        import pyscf

        return dict(index=index, status=FAILED, reason=f"{type(exc).__name__}: {exc}"[:500],
                    energy=np.nan, wall_seconds=time.perf_counter() - tic,
                    cpu_seconds=time.process_time() - cpu, n_occ=-1, cycles=-1,
                    converged=False, threads=threads, host=socket.gethostname(),
                    pyscf_version=pyscf.__version__, labeller=labeller)
    out = dict(index=index, status=CONVERGED if res.converged else FAILED, energy=res.energy,
               wall_seconds=res.seconds, cpu_seconds=res.cpu_seconds, n_occ=res.n_occ,
               cycles=res.cycles, converged=res.converged, threads=res.threads, host=res.host,
               pyscf_version=res.pyscf_version, reason=res.failure, labeller=labeller)
    if res.converged:
        out.update(fock=res.fock, overlap=res.overlap, mo_energy=res.mo_energy)
    return out


def _todo(ds: Dataset, limit: int | None) -> np.ndarray:
    """Not-attempted conformations, training set first, then validation, test, the rest."""
    status = ds.status()
    order = [ds.split(s) for s in ("train", "val", "test")]
    seen = np.zeros(len(ds), dtype=bool)
    ranked = []
    for idx in [*order, np.arange(len(ds))]:
        new = idx[~seen[idx]]
        seen[new] = True
        ranked.append(new)
    todo = np.concatenate(ranked)
    todo = todo[status[todo] == NOT_ATTEMPTED]
    return todo if limit is None else todo[:limit]


def _run_pool(tasks: list[tuple], workers: int, threads: int) -> Iterator[dict[str, Any]]:
    # spawn, not fork: a forked child would inherit the parent's OpenMP/torch thread state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(label_task, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool as exc:
            raise LabellingInterrupted(
                "a labelling worker died (killed or out of memory); finished labels are saved, "
                "rerun the same command to resume") from exc
        finally:
            for future in futures:
                future.cancel()


def _run_dask(tasks: list[tuple], address: str) -> Iterator[dict[str, Any]]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise InputError("--scheduler needs Dask: pip install 'qptbench[cluster]'") from None
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        futures = client.map(label_task, tasks, pure=False)
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()


def label_dataset(path: str | Path, level: LevelOfTheory | None = None,
                  workers: int | None = None, threads_per_worker: int | None = None,
                  scheduler: str | None = None, limit: int | None = None,
                  conv_tol: float = 1e-10, max_cycle: int = 100, progress: bool = True,
                  fold_every: int = 200, desc: str | None = None,
                  labeller: str = "pyscf") -> LabelSummary:
    """Label every not-yet-attempted conformation of a dataset file with PySCF RKS at ``level``.

    ``workers`` processes with ``threads_per_worker`` OpenMP threads each (``None``: use the
    machine, ``plan_workers``), or, with ``scheduler`` ("tcp://host:port"), tasks on that Dask
    cluster (one thread per task unless ``threads_per_worker`` says otherwise).  ``limit`` caps
    the number of new SCFs (training conformations go first).  Results are committed one by
    one; see the module docstring for what survives a kill.  The progress bar is named
    ``desc`` (default ``"labels: <file name>"``).  ``labeller`` is the SCF code, pyscf or
    gpu4pyscf; the latter is refused in one line, before anything is written, where GPU4PySCF
    or a CUDA device is missing here (checked in this process, also with a Dask ``scheduler``),
    and a file labelled with one labeller is never resumed with the other.
    """
    from qptbench.dft.labels_gpu import check_gpu_level, check_labeller
    from qptbench.progress import make_bar

    path = Path(path)
    level = level or LevelOfTheory()
    labeller = check_labeller(labeller)
    if labeller == "gpu4pyscf":
        check_gpu_level(level)
    for name, value in (("workers", workers), ("threads per worker", threads_per_worker)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if limit is not None and limit < 0:
        raise InputError(f"--limit must be >= 0, got {limit}")
    if not conv_tol > 0 or max_cycle < 1:
        raise InputError("conv_tol must be > 0 and max_cycle >= 1")
    started = time.perf_counter()
    if not path.exists():
        raise InputError(f"dataset file not found: {path}")
    with journal.writer_lock(path):
        journal.fold(path)  # whatever a killed run committed
        with Dataset.open(path) as ds:
            if ds.level is not None and ds.level != level:
                raise InputError(f"{path} is labelled at {ds.level}; label a new file (qptbench"
                                 " sample) to use another level of theory")
            if ds.labeller not in (None, labeller):
                raise InputError(f"{path} is labelled with --labeller {ds.labeller}; resume "
                                 f"with it (one file sums one code's label cost)")
            todo = _todo(ds, limit)
            n_skipped = int(np.sum(ds.status() != NOT_ATTEMPTED))
            cores = available_cores()
            if scheduler:
                workers, threads_per_worker = 1, threads_per_worker or 1
            else:
                workers, threads_per_worker = plan_workers(workers, threads_per_worker, cores,
                                                           len(todo))
            tasks = [(int(i), ds.numbers, ds.molecule(int(i)).positions, ds.charge,
                      level.as_dict(), conv_tol, max_cycle, threads_per_worker, labeller)
                     for i in todo]
            n_total = len(ds)
        made = failed = since_fold = 0
        wall = cpu = 0.0
        results = (_run_dask(tasks, scheduler) if scheduler else
                   _run_pool(tasks, workers, threads_per_worker) if tasks else iter(()))
        bar = make_bar(len(tasks), desc or f"labels: {path.name}", disable=not progress,
                       unit="conf")
        try:
            for res in results:
                index, status = res.pop("index"), res.pop("status")
                journal.commit(path, index, status, level, res)
                made += status == CONVERGED
                failed += status == FAILED
                wall += res["wall_seconds"]
                cpu += res["cpu_seconds"]
                since_fold += 1
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
                if since_fold >= fold_every:
                    journal.fold(path, conv_tol, max_cycle)
                    since_fold = 0
        finally:
            bar.close()
            journal.fold(path, conv_tol, max_cycle)  # also after an error: keep what finished
    return LabelSummary(
        n_labels=made, n_failed=failed, n_skipped=n_skipped,
        n_remaining=n_total - n_skipped - made - failed,
        elapsed_seconds=time.perf_counter() - started, wall_seconds=wall, cpu_seconds=cpu,
        mean_seconds_per_label=wall / made if made else float("nan"),
        workers=workers, threads_per_worker=threads_per_worker,
        scheduler=f"dask {scheduler}" if scheduler else "process pool", cores=cores,
        labeller=labeller)
