"""One QPT training step, one molecule per rank: run by tests/test_ddp.py under torchrun
(``torchrun --nproc-per-node 2 tests/ddp_one_step.py OUT``), and its pieces imported there for
the single-process reference.  Tiny QPT in float64 on water STO-3G: seconds.

``... OUT budget``: instead, train on a wall-clock budget while rank 1 skips its first molecule
and runs slower than rank 0: the ranks must still skip together and stop at the same step.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import torch

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.models.qpt import QPT, preset_config
from qptbench.models.qpt_inputs import Vocabulary
from qptbench.training.loop import SkipStep, TrainConfig, train
from qptbench.training.qpt import Preparer
from qptbench.training.signals import SignalLoss

LEVEL = LevelOfTheory(basis="sto-3g", grid_level=1)
# warmup 0: the first step has the full learning rate; clipping and weight decay stay on
CONFIG = TrainConfig(steps=1, lr=1e-3, min_lr=1e-3, warmup_steps=0, log_every=1,
                     checkpoint_every=1)
CPU = torch.device("cpu")


def make_model() -> QPT:
    torch.manual_seed(0)
    return QPT(preset_config("tiny", Vocabulary.from_basis(LEVEL.basis).size)).double()


def prepared(k: int):
    """Molecule k: water displaced with seed k, its QPT sample."""
    mol = Molecule.builtin("water").displaced(k, scale=0.05)
    return Preparer(Vocabulary.from_basis(LEVEL.basis), LEVEL)(mol)


def weights_and_grads(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    return {"params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()
                      if p.grad is not None}}


class SkipFirstSlowly:
    """Rank 1's loss: its first molecule is skipped, and every step is slower than rank 0's."""

    def __init__(self, loss: SignalLoss) -> None:
        self.loss, self.calls = loss, 0

    def __call__(self, model, item):
        self.calls += 1
        time.sleep(0.05)
        if self.calls == 1:
            raise SkipStep("rank 1 skips its first molecule")
        return self.loss(model, item)


def main(out: Path, budget: bool) -> None:
    from qptbench.training import distributed

    torch.set_num_threads(1)
    world, device = distributed.init_from_env(CPU)
    assert world.size == 2, world
    model = make_model()
    loss = SignalLoss("energy", device)
    if not budget:
        train(model, loss, [prepared(world.rank)], CONFIG, out / "run", progress=False)
        torch.save(weights_and_grads(model), out / f"rank{world.rank}.pt")
    else:
        result = train(model, SkipFirstSlowly(loss) if world.rank == 1 else loss,
                       itertools.repeat(prepared(world.rank)),
                       TrainConfig(steps=10**6, warmup_steps=0, log_every=1), out / "budget",
                       progress=False, time_limit_s=3.0)
        torch.save({"step": result.step, "skipped": result.skipped,
                    **weights_and_grads(model)}, out / f"budget{world.rank}.pt")
    distributed.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]), budget=sys.argv[2:] == ["budget"])
