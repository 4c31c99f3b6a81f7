"""One QHNet-baseline step, one labelled molecule per rank: run by tests/test_ddp_baseline.py
under torchrun (``torchrun --nproc-per-node 2 tests/ddp_baseline_step.py LABELS.npz OUT``), and
its pieces imported there for the single-process reference.  The tiny preset in float64 on two
water STO-3G labels, with the baseline's own recipe (``train_config``) and shards
(``distributed.shard``): seconds, most of them e3nn building the model.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from qptbench.baselines.qhnet import QHNetConfig, preset
from qptbench.baselines.qhnet_data import LabelledSet, batch_factory
from qptbench.baselines.qhnet_orbitals import element_shells
from qptbench.baselines.qhnet_run import RunOptions, build_model, train_config
from qptbench.baselines.qhnet_train import make_loss_fn
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.training.loop import TrainConfig, train

LEVEL = LevelOfTheory(basis="sto-3g", grid_level=1)
CPU = torch.device("cpu")
FIELDS = ("numbers", "positions", "fock", "overlap", "energy", "indices")
# the baseline's recipe for a 1-step run: warmup of one step, so the step has the full LR
CONFIG: TrainConfig = train_config(preset("tiny"), RunOptions(labels="-", out="-", steps=1,
                                                               eval_every=0, checkpoint_every=1))


def make_labels(path: Path, n: int = 2) -> LabelledSet:
    """PySCF labels of water displaced with seeds 0..n-1, saved to ``path`` (.npz)."""
    from qptbench.dft.labels import pyscf_rks

    molecules = [Molecule.builtin("water").displaced(k, scale=0.05) for k in range(n)]
    data = LabelledSet.from_labels(molecules, [pyscf_rks(m, LEVEL, conv_tol=1e-10)
                                               for m in molecules])
    np.savez(path, n_occ=data.n_occ, charge=data.charge,
             **{f: getattr(data, f) for f in FIELDS})
    return data


def load_labels(path: Path) -> LabelledSet:
    with np.load(path) as f:
        return LabelledSet(**{k: f[k] for k in FIELDS}, charge=int(f["charge"]),
                           n_occ=int(f["n_occ"]), level=LEVEL)


def make_model(data: LabelledSet) -> torch.nn.Module:
    """The tiny baseline in float64, seeded, reference blocks fitted on all the labels (as
    ``methods.qhnet.run`` does on every rank).  e3nn's einsum optimisation is off on both
    sides of the comparison: it makes building the model ~3x slower, not another function."""
    import e3nn

    e3nn.set_optimization_defaults(optimize_einsums=False)
    shells = element_shells([data.molecule(0)], LEVEL.basis)
    spec = {"config": asdict(QHNetConfig(**asdict(preset("tiny")))), "dtype": "float64",
            "element_shells": {str(z): list(ls) for z, ls in shells.items()}}
    torch.manual_seed(0)
    model = build_model(spec, CPU)
    model.fit_reference(data.numbers, torch.as_tensor(data.fock, dtype=torch.float64))
    return model


def step(model: torch.nn.Module, data: LabelledSet, out: Path) -> None:
    """One step of the baseline's loop on mini-batches drawn from ``data``."""
    batches = batch_factory(data, model.config.batch_size, 0, torch.float64, CPU)
    train(model, make_loss_fn(data.numbers), batches, CONFIG, out, progress=False)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def main(labels: Path, out: Path) -> None:
    from qptbench.training import distributed

    torch.set_num_threads(1)
    world, _ = distributed.init_from_env(CPU)
    assert world.size == 2, world
    data = load_labels(labels)
    model = make_model(data)
    step(model, data.subset(distributed.shard(len(data), world)), out / "run")
    torch.save(weights(model), out / f"rank{world.rank}.pt")
    distributed.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
