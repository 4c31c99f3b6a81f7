"""The method interface the harness loops over, and the two routes that implement it.

A method trains under a wall-clock budget, booking every phase in the run's ledger, and predicts
Hamiltonians for geometries in their own frame (PySCF AO order, Ha).  It never scores itself: the
harness hands its predictions to the one evaluator (``qptbench.evaluation``).  Adding a route means
adding a class here and a name in ``METHODS``; the harness knows none by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from qptbench.dft.geometry import Molecule
from qptbench.evaluation.evaluator import Evaluator
from qptbench.ledger import Ledger


@dataclass(frozen=True)
class MethodContext:
    """What the harness gives a method: where to write, the shared data, the budget."""

    out: Path                  # the method's own folder for this seed
    dataset: Path              # the run's dataset file (train split = training geometries)
    molecule: str
    seed: int
    device: torch.device
    ledger: Ledger             # the run's ledger, entries tagged with this method and seed
    evaluator: Evaluator       # the shared evaluator (training curves go through it too)
    settings: dict[str, Any]   # the harness config as a dict (level of theory, steps, ...)
    resume: bool = False
    progress: bool = True
    cache: dict[Any, Any] = field(default_factory=dict)  # shared by a run's methods and seeds


class Method(Protocol):
    name: str          # short id used in files and results.csv ("qpt", "qhnet")
    title: str         # what tables print
    fixes_h: bool      # True when trained on labelled H (k = 0 Hamiltonian metrics are scored)
    uses_labels: bool  # True when its training labels are its data creation

    def train(self, ctx: MethodContext, budget_s: float | None) -> None: ...

    def predict(self, ctx: MethodContext, molecules: list[Molecule]) -> list[np.ndarray]: ...


class QPTMethod:
    name, title = "qpt", "QPT (implicit DFT loss, no labels)"
    fixes_h, uses_labels = False, False
    head = "psd"  # the paper's output head A = QQᵀ/√d (models/qpt.py)

    def _config(self, ctx: MethodContext):
        from qptbench.training import qpt as tq

        s = ctx.settings
        return tq.make_config(s["qpt_preset"], molecule=ctx.molecule, steps=s["qpt_steps"],
                              sampler="dataset", dataset=str(ctx.dataset), n_val=s["n_val"],
                              xc=s["xc"], basis=s["basis"], grid_level=s["grid_level"],
                              seed=ctx.seed, eval_every=s["eval_every"],
                              eval_points=s["eval_points"], workers=0, head=self.head)

    def _predictor(self, ctx: MethodContext, cfg):
        """QPT's inputs for the held-out molecules, prepared once per run (not per seed or
        head: they do not depend on the weights); booked as evaluation."""
        from qptbench.methods.qpt import held_out_inputs
        from qptbench.models.qpt_inputs import Vocabulary
        from qptbench.training import qpt as tq

        key = ("qpt-inputs", cfg.basis, cfg.xc, cfg.grid_level)
        if key not in ctx.cache:
            preparer = tq.Preparer(Vocabulary.from_basis(cfg.basis), cfg.level())
            ctx.cache[key] = held_out_inputs(ctx.evaluator, preparer, ctx.device, ctx.ledger,
                                             ctx.progress)
        return ctx.cache[key]

    def train(self, ctx: MethodContext, budget_s: float | None) -> None:
        from qptbench.methods.qpt import run

        cfg = self._config(ctx)
        run(cfg, ctx.out, ctx.device, resume=ctx.resume, progress=ctx.progress,
            ledger=ctx.ledger, time_limit_s=budget_s, evaluator=ctx.evaluator,
            desc=f"QPT training ({self.head} head, seed {ctx.seed})",
            predictor=self._predictor(ctx, cfg))

    def predict(self, ctx: MethodContext, molecules: list[Molecule]) -> list[np.ndarray]:
        from qptbench.training import qpt as tq

        if molecules != ctx.evaluator.molecules():
            return tq.predict(ctx.out, molecules, ctx.device)
        model, cfg = tq.load_model(ctx.out, ctx.device)
        return self._predictor(ctx, cfg)(model)


class QPTSignedMethod(QPTMethod):
    name, title = "qpt-signed", "QPT, signed output head (implicit DFT loss)"
    head = "signed"  # A = Q diag(s) Qᵀ/√d: can lower orbital energies too


class QHNetMethod:
    name, title = "qhnet", "QHNet-style baseline (PySCF labels)"
    fixes_h, uses_labels = True, True

    def train(self, ctx: MethodContext, budget_s: float | None) -> None:
        from qptbench.baselines.qhnet_run import RunOptions
        from qptbench.methods.qhnet import run

        s = ctx.settings
        options = RunOptions(labels=str(ctx.dataset), out=str(ctx.out), preset=s["qhnet_preset"],
                             steps=s["qhnet_steps"], device=str(ctx.device), resume=ctx.resume,
                             n_val=s["n_val"], energy_molecules=s["n_val"],
                             eval_every=s["eval_every"], eval_points=s["eval_points"],
                             seed=ctx.seed, progress=ctx.progress, molecule=ctx.molecule)
        run(options, ledger=ctx.ledger, time_limit_s=budget_s, evaluator=ctx.evaluator,
            desc=f"QHNet training (seed {ctx.seed})")

    def predict(self, ctx: MethodContext, molecules: list[Molecule]) -> list[np.ndarray]:
        from qptbench.baselines.qhnet_data import LabelledSet, open_store
        from qptbench.baselines.qhnet_run import predict_molecules

        with open_store(ctx.dataset) as ds:
            like = LabelledSet.from_store(ds, "train", 1)
        return predict_molecules(ctx.out, molecules, like, ctx.device)


METHODS: dict[str, type] = {"qpt": QPTMethod, "qhnet": QHNetMethod,
                            "qpt-signed": QPTSignedMethod}
DEFAULT_METHODS = ("qpt", "qhnet")


def make_method(name: str) -> Method:
    return METHODS[name]()
