"""One method's training on N processes for ``qptbench run --nproc N``.

The harness stays one process: it samples, labels, builds the evaluator and scores.  Only the
training phase of each (method, seed) is spread: ``torch.multiprocessing`` spawns N workers,
each joins a process group on 127.0.0.1 (gloo on CPU, NCCL on CUDA, one GPU per rank: the same
``training.distributed`` that ``torchrun`` uses) and calls the method's ``train`` with the same
context and budget, so each route trains exactly as under ``torchrun --nproc-per-node N``:
QPT-style methods draw their own conformations per rank, the label baseline trains each rank on
its shard of the labels, gradients are averaged, rank 0 evaluates and books.  The workers get
the harness's evaluator and cache by pickling (CPU tensors travel through shared memory), so
nothing the harness made is made again.

Why spawn and not fork: a forked child inherits the parent's OpenMP and CUDA state, which is
not safe to use again; why not re-invoking the command under torchrun: the evaluator's tensors
and the held-out inputs would then be rebuilt (and booked) once more.

Time.  The budget governs each rank's training loop as in one process (rank 0's clock).  What
the ranks' own entries do not cover (starting N Python processes, imports, building the model
on each, the process group, what rank 0 does unbooked in one process too, such as timing
inference, and the other ranks' CPU) is booked as one more ``train`` entry,
``what="parallel start-up and other ranks"``: the route's ledger then sums to the wall-clock of
the whole parallel phase, and its CPU to every rank's.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from qptbench.errors import InputError
from qptbench.ledger import cpu_seconds, read_ledger
from qptbench.methods import Method, MethodContext
from qptbench.training import distributed

BOOKED_AS = "parallel start-up and other ranks"


def check_nproc(nproc: int, device: torch.device, cores: int) -> None:
    """At least 1; on CUDA at most the visible GPUs (one per rank); on CPU at most the cores:
    more ranks than cores would time-share them, and the wall-clock the comparison is about
    would measure the oversubscription, not the method."""
    if nproc < 1:
        raise InputError(f"--nproc must be at least 1, got {nproc}")
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise InputError(f"--nproc {nproc} needs one GPU per process; {gpus} visible")
    elif nproc > cores:
        raise InputError(f"--nproc {nproc} is more than the {cores} cores available: the "
                         f"processes would share cores and the wall-clock would measure that; "
                         f"use --nproc <= {cores}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, method: Method, ctx: MethodContext, budget_s: float | None, nproc: int,
            port: int, threads: int, errors: str) -> None:
    """One rank: torchrun's environment, the process group, the method's own ``train``.  A
    bad input is left in ``errors`` for the harness to say in one line (the other ranks then
    fail too, on the closed connection, and torch may report theirs first)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    try:
        world, device = distributed.init_from_env(ctx.device)
        try:
            method.train(replace(ctx, device=device, progress=ctx.progress and world.main),
                         budget_s)
        finally:
            distributed.finish()
    except InputError as exc:
        Path(errors, f"rank{rank}").write_text(str(exc))
        raise


def train_parallel(method: Method, ctx: MethodContext, budget_s: float | None, nproc: int,
                   cores: int) -> None:
    """Train ``method`` on ``nproc`` processes (module docstring; its class must be
    importable: the workers unpickle it); returns when every rank has finished.  ``ctx.ledger``
    should carry ``world_size`` (every entry of the phase then says so); ``cores`` are shared
    out as threads per rank."""
    from torch import multiprocessing as mp

    prepare = getattr(method, "prepare", None)
    if prepare is not None:  # what a method can make once for all ranks (and the scoring)
        prepare(ctx)
    path = ctx.ledger.path
    before = len(read_ledger(path)) if path.exists() else 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="qptbench-ranks-") as errors:
        try:
            mp.start_processes(_worker, args=(method, ctx, budget_s, nproc, _free_port(),
                                              max(1, cores // nproc), errors),
                               nprocs=nproc, join=True, start_method="spawn")
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            said = sorted(Path(errors).iterdir())
            if said:  # a rank's bad input: its one line, not the others' broken connections
                raise InputError(said[0].read_text()) from None
            raise
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu  # the ranks are reaped: all
    new = read_ledger(path)[before:] if path.exists() else []
    booked_wall = sum(e["wall_seconds"] for e in new)
    booked_cpu = sum(e.get("cpu_seconds") or 0.0 for e in new)
    ctx.ledger.record("train", max(0.0, wall - booked_wall), max(0.0, cpu - booked_cpu),
                      what=BOOKED_AS, world_size=nproc)
