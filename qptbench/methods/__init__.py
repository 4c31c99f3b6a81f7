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
    name: str          # id used in results.csv: "architecture:signal" ("qpt:energy")
    title: str         # what tables print
    fixes_h: bool      # True when trained on labelled H (k = 0 Hamiltonian metrics are scored)
    uses_labels: bool  # True when its training labels are its data creation

    def train(self, ctx: MethodContext, budget_s: float | None) -> None: ...

    def predict(self, ctx: MethodContext, molecules: list[Molecule]) -> list[np.ndarray]: ...


class QPTMethod:
    """A network trained on prepared molecules (``methods.qpt.run``): QPT, or H_init + QHNet,
    with one training signal (``training.signals``).  ``qpt:energy`` is the paper's QPT."""

    name, title = "qpt:energy", "QPT (implicit DFT loss, no labels)"
    arch, signal = "qpt", "energy"
    fixes_h, uses_labels = False, False
    head = "psd"  # the paper's output head A = QQᵀ/√d (models/qpt.py)

    def _config(self, ctx: MethodContext):
        from qptbench.training import qpt as tq

        s = ctx.settings
        qhnet = self.arch == "qhnet"
        return tq.make_config(s["qpt_preset"], molecule=ctx.molecule, steps=s["qpt_steps"],
                              sampler="dataset" if self.signal == "labels"
                              else (s.get("qpt_sampler") or "dataset"),  # labels: the store
                              train_region=s.get("train_region"),
                              dataset=str(ctx.dataset), n_val=s["n_val"],
                              xc=s["xc"], basis=s["basis"], grid_level=s["grid_level"],
                              eri=s.get("eri"), auxbasis=s.get("auxbasis"),
                              energy_backend=s.get("energy_backend"),
                              seed=ctx.seed, eval_every=s["eval_every"],
                              eval_points=s["eval_points"], workers=0, head=self.head,
                              arch=self.arch, signal=self.signal,
                              model=s["qhnet_preset"] if qhnet else None,
                              # labels need no tensors after the first preparation: a fresh
                              # labelled molecule every step, not a window of reused ones
                              window=1 if self.signal == "labels" else None)

    def _predictor(self, ctx: MethodContext, cfg):
        """The inputs for the held-out molecules, prepared once per run (not per seed, head or
        signal: they do not depend on the weights); booked as evaluation."""
        from qptbench.methods.qpt import held_out_inputs
        from qptbench.models.qpt_inputs import Vocabulary
        from qptbench.training import qpt as tq

        key = ("qpt-inputs", cfg.level())
        if key not in ctx.cache:
            preparer = tq.Preparer(Vocabulary.from_basis(cfg.basis), cfg.level())
            ctx.cache[key] = held_out_inputs(ctx.evaluator, preparer, ctx.device, ctx.ledger,
                                             ctx.progress)
        return ctx.cache[key]

    def prepare(self, ctx: MethodContext) -> None:
        """Before training on several processes (``methods.parallel``): the held-out inputs,
        made once here and handed to rank 0 (and kept for the scoring) in ``ctx.cache``."""
        self._predictor(ctx, self._config(ctx))

    def train(self, ctx: MethodContext, budget_s: float | None) -> None:
        from qptbench.methods.qpt import run
        from qptbench.training import distributed

        cfg = self._config(ctx)
        net = "QPT" if self.arch == "qpt" else "QHNet on H_init"
        head = f", {self.head} head" if self.arch == "qpt" and self.signal == "energy" else ""
        run(cfg, ctx.out, ctx.device, resume=ctx.resume, progress=ctx.progress,
            ledger=ctx.ledger, time_limit_s=budget_s, evaluator=ctx.evaluator,
            desc=f"{net} training ({self.signal}{head}, seed {ctx.seed})",
            # under several processes rank 0 alone evaluates: the others need no inputs
            predictor=self._predictor(ctx, cfg) if distributed.current().main else None)

    def predict(self, ctx: MethodContext, molecules: list[Molecule]) -> list[np.ndarray]:
        from qptbench.training import qpt as tq

        if molecules != ctx.evaluator.molecules():
            return tq.predict(ctx.out, molecules, ctx.device)
        model, cfg = tq.load_model(ctx.out, ctx.device)
        return self._predictor(ctx, cfg)(model)


class QPTSignedMethod(QPTMethod):
    name, title = "qpt-signed", "QPT, signed output head (implicit DFT loss)"
    head = "signed"  # A = Q diag(s) Qᵀ/√d: can lower orbital energies too


class QPTSCMethod(QPTMethod):
    # H* − H_init has eigenvalues of both signs: a PSD correction could not reach a fixed H,
    # so the signals that fix H use the signed head.
    name, title = "qpt:sc", "QPT, self-consistency (no labels)"
    signal, head, fixes_h = "sc", "signed", True


class QPTLabelsMethod(QPTMethod):
    name, title = "qpt:labels", "QPT, supervised on PySCF labels"
    signal, head, fixes_h, uses_labels = "labels", "signed", True, True


class QHNetEnergyMethod(QPTMethod):
    name, title = "qhnet:energy", "QHNet on H_init, implicit DFT loss (no labels)"
    arch = "qhnet"


class QHNetSCMethod(QPTMethod):
    name, title = "qhnet:sc", "QHNet on H_init, self-consistency (no labels)"
    arch, signal, fixes_h = "qhnet", "sc", True


class QHNetMethod:
    """The QHNet-style baseline on its own recipe (batched PySCF labels, reference blocks)."""

    name, title = "qhnet:labels", "QHNet-style baseline (PySCF labels)"
    arch, signal = "qhnet", "labels"
    fixes_h, uses_labels = True, True

    def train(self, ctx: MethodContext, budget_s: float | None) -> None:
        from qptbench.baselines.qhnet_run import RunOptions
        from qptbench.methods.qhnet import run

        s = ctx.settings
        options = RunOptions(labels=str(ctx.dataset), out=str(ctx.out), preset=s["qhnet_preset"],
                             steps=s["qhnet_steps"], device=str(ctx.device), resume=ctx.resume,
                             n_val=s["n_val"], energy_molecules=s["n_val"],
                             eval_every=s["eval_every"], eval_points=s["eval_points"],
                             seed=ctx.seed, progress=ctx.progress, molecule=ctx.molecule,
                             # its validation molecules are the scored ones: no selection on
                             # them; scored at the end of its budget like every route
                             select_best=False)
        run(options, ledger=ctx.ledger, time_limit_s=budget_s, evaluator=ctx.evaluator,
            desc=f"QHNet training (seed {ctx.seed})")

    def predict(self, ctx: MethodContext, molecules: list[Molecule]) -> list[np.ndarray]:
        from qptbench.baselines.qhnet_data import LabelledSet, open_store
        from qptbench.baselines.qhnet_run import predict_molecules

        with open_store(ctx.dataset) as ds:
            like = LabelledSet.from_store(ds, "train", 1)
        return predict_molecules(ctx.out, molecules, like, ctx.device)


METHODS: dict[str, type] = {m.name: m for m in (
    QPTMethod, QPTSCMethod, QPTLabelsMethod, QHNetMethod, QHNetEnergyMethod, QHNetSCMethod,
    QPTSignedMethod)}
ALIASES = {"qpt": "qpt:energy", "qhnet": "qhnet:labels"}  # the names of earlier releases
DEFAULT_METHODS = ("qpt:energy", "qhnet:labels")
GRID = tuple(name for name in METHODS if ":" in name)  # architecture × signal


def canonical(name: str) -> str:
    """A method's name, aliases resolved (``qpt`` -> ``qpt:energy``); unknown names unchanged."""
    return ALIASES.get(name, name)


def folder(name: str) -> str:
    """A method's folder in a run directory (``qpt:energy`` -> ``qpt-energy``): no colons in
    paths, which some file systems and tools refuse."""
    return canonical(name).replace(":", "-")


def make_method(name: str) -> Method:
    return METHODS[canonical(name)]()
