"""Data-parallel training under ``torchrun``: the process group, per-rank seeds, gradient means.

``torchrun --nproc-per-node N -m qptbench train-qpt ...`` starts N copies of the command; torchrun
sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
:func:`init_from_env` joins the process group (gloo on CPU, NCCL on CUDA, one GPU per local
rank) only when ``WORLD_SIZE > 1``; a plain run never touches ``torch.distributed`` and trains
exactly as before.

Each rank draws its own conformations: the training source of rank r uses the seed
``seed + r * RANK_SEED_STRIDE`` (rank 0 keeps the run's seed, so its molecules are a
single-process run's), and prepares its own tensors.  All ranks start from the same weights
(built from the run's seed; rank 0's are broadcast anyway) and take the same optimiser step:
one molecule per rank per micro-batch, gradients averaged over the ranks, so one step on N ranks
is one step on the mean loss of N molecules.

Why an explicit all-reduce after ``backward`` and not ``DistributedDataParallel``: the loop
must decide *together* whether a step is taken (a rank whose molecule exploded raises
``SkipStep``; a non-finite loss or gradient skips the step), which DDP's backward hooks cannot
express: a rank that skipped would leave the others waiting in their hooks.  Here each rank
backpropagates alone, then one small all-reduce agrees on "skip" and on which parameters have a
gradient, and one all-reduce per dtype averages the gradients; clipping, AdamW and EMA then run
identically on every rank.  The cost DDP would hide (overlapping communication with backward)
is small next to QPT's per-molecule DFT iterations.  It also keeps the model unwrapped, so
checkpoints keep their parameter names.

Rank 0 alone writes checkpoints, logs, metrics and the ledger, and alone evaluates; every
rank's decisions that depend on its own clock (the wall-clock budget, the schedule's fraction)
are taken from rank 0's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import distributed as dist

from qptbench.errors import InputError

# Seed offset between ranks' training conformations: rank r draws with seed + r * stride, so a
# run with seed s on rank r draws what a run with seed s + r * stride draws on rank 0.
RANK_SEED_STRIDE = 1_000_003
# How long a rank waits in a collective: the others wait while rank 0 alone makes the PySCF
# references and evaluates, which can take long on a big preset.  A rank that crashes does not
# leave the others waiting this long: torchrun then ends them all.
TIMEOUT = timedelta(hours=4)


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes (1: no process group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not an integer (set by torchrun)") from None


def current() -> World:
    """This process's world: the process group's when one is running, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return World()


def init_from_env(device: torch.device) -> tuple[World, torch.device]:
    """Join torchrun's process group when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA); the
    world and the device this rank trains on (``cuda:LOCAL_RANK`` for CUDA)."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World(), device
    if dist.is_initialized():
        world = current()
    else:
        for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise InputError(f"WORLD_SIZE={size} but {name} is not set: start with "
                                 "torchrun --nproc-per-node N -m qptbench ...")
        world = World(_env_int("RANK", 0), size, _env_int("LOCAL_RANK", 0))
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise InputError(f"local rank {world.local_rank} has no GPU: "
                             f"{torch.cuda.device_count()} visible; use --nproc-per-node "
                             f"<= {torch.cuda.device_count()}")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=world.rank, world_size=size, timeout=TIMEOUT)
    return world, device


def finish() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank is here."""
    dist.barrier()


def rank_seed(seed: int, world: World) -> int:
    """The seed of this rank's training conformations (module docstring)."""
    return seed + world.rank * RANK_SEED_STRIDE


def shard(n: int, world: World) -> list[int]:
    """This rank's share of ``n`` items: positions rank, rank + size, rank + 2 size, ...
    Disjoint across ranks, together all ``n``, fixed by (n, size) alone; sizes differ by at
    most one (equal when size divides n)."""
    return list(range(world.rank, n, world.size))


def _device_of(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def broadcast_model(model: torch.nn.Module) -> None:
    """Every rank takes rank 0's weights and buffers (they are built identically; this makes
    sure, as DDP does at construction)."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def from_main(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank (decisions taken on rank 0's clock)."""
    box = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(box, src=0)
    return box.tolist()


def average_gradients(model: torch.nn.Module, ok: bool, world: World) -> bool:
    """Agree on the step and average the gradients over the ranks, in place.

    Returns whether every rank's micro-batches were fine (``ok``); when one was not, the
    gradients are left alone and every rank skips.  A parameter gets the mean of its gradients
    over the ranks where it has one (zero elsewhere, as a loss not depending on it gives); one
    with no gradient on any rank keeps none, as in a single process.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    device = _device_of(model)
    flags = torch.tensor([0.0 if ok else 1.0] + [float(p.grad is not None) for p in params],
                         dtype=torch.float64, device=device)
    dist.all_reduce(flags)
    if flags[0].item() > 0:
        return False
    used = [p for p, n in zip(params, flags[1:].tolist(), strict=True) if n > 0]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p in used:
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        flat /= world.size
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n
    return True


def gather_floats(values: list[float], world: World, device: torch.device) -> list[list[float]]:
    """Every rank's ``values`` (same length on each), in rank order."""
    box = torch.tensor(values, dtype=torch.float64, device=device)
    out = [torch.empty_like(box) for _ in range(world.size)]
    dist.all_gather(out, box)
    return [t.tolist() for t in out]


def check_resume(saved: int | None, world: World, path: object) -> None:
    """A checkpoint trained on ``saved`` processes resumes only on as many (one line)."""
    saved = 1 if saved is None else int(saved)  # checkpoints from before torchrun: 1
    if saved != world.size:
        how = "without torchrun" if saved == 1 else f"torchrun --nproc-per-node {saved}"
        raise InputError(f"{path} was trained on {saved} process(es); resume it with the same "
                         f"number ({how}), not {world.size}")
