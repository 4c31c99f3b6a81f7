"""A stand-in method for tests/test_parallel.py: one optimiser step of a float64 linear model
on a rank-dependent input, through the shared loop; its workers unpickle it from here."""

from __future__ import annotations

import torch

from qptbench.errors import InputError
from qptbench.training.loop import TrainConfig, train

CONFIG = TrainConfig(steps=1, lr=1e-2, min_lr=1e-2, warmup_steps=0, log_every=1,
                     checkpoint_every=1)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1).double()


def item(rank: int) -> torch.Tensor:
    return torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64) * (rank + 1)


def loss(model: torch.nn.Module, x: torch.Tensor):
    return (model(x) - 1.0).square().mean(), {}


class OneStep:
    name, title = "one-step", "one optimiser step (test)"
    fixes_h, uses_labels = False, False

    def __init__(self, refuse_on: int | None = None) -> None:
        self.refuse_on = refuse_on

    def train(self, ctx, budget_s: float | None) -> None:
        from qptbench.training import distributed

        world = distributed.current()
        if world.rank == self.refuse_on:
            raise InputError(f"rank {world.rank} refuses")
        model = make_model()
        train(model, loss, [item(world.rank)], CONFIG, ctx.out, ledger=ctx.ledger,
              progress=False, time_limit_s=budget_s)
        torch.save({n: p.detach() for n, p in model.named_parameters()},
                   ctx.out / f"rank{world.rank}.pt")
