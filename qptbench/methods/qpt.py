"""The run of a network trained on prepared molecules: QPT with any signal (the implicit DFT
loss, self-consistency, labels) and H_init + QHNet with a label-free one.  Validation curves and
the zero model go through the shared evaluator; inference timing; ``summary.json``.
``qptbench train-qpt`` and the harness's methods call :func:`run`; the training specifics are in
``qptbench.training.qpt`` and ``qptbench.training.signals``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from qptbench.errors import InputError
from qptbench.evaluation import references
from qptbench.evaluation.evaluator import Evaluator
from qptbench.evaluation.references import Reference
from qptbench.ledger import Ledger
from qptbench.models.qpt import count_parameters
from qptbench.training import distributed
from qptbench.training.loop import train
from qptbench.training.qpt import (
    Predictor,
    Preparer,
    QPTRunConfig,
    build_model,
    measure_inference,
)
from qptbench.training.qpt_sources import make_source
from qptbench.training.signals import SignalLoss


def fixes_h(signal: str) -> bool:
    """Whether a signal fixes H itself (then H's k = 0 metrics are scored): labels and
    self-consistency do; the energy fixes only the occupied subspace."""
    return signal != "energy"


def describe(model: torch.nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "cfg", None)
    if cfg is None:  # H_init + QHNet
        return {"arch": "qhnet", **model.net.describe()}
    return {"arch": "qpt", **asdict(cfg), "parameters": count_parameters(model)}


def make_references(cfg: QPTRunConfig, out_dir: Path, ledger: Ledger) -> list[Reference]:
    """The held-out references: the val split of ``cfg.val`` (``--val``) or else of
    ``cfg.dataset`` (``--dataset``) when one is given, else PySCF labels made here for
    ``n_val`` geometries of the validation stream.
    Cached in the run directory as plain arrays (``references.npz``, no pickles)."""
    cache = out_dir / "references.npz"
    if cache.exists():
        return references.load(cache)
    source_file = cfg.val or cfg.dataset
    if source_file is not None:
        with ledger.phase("reference", source=source_file) as extra:
            refs = references.from_dataset(source_file, "val", cfg.n_val, level=cfg.level())
            extra["n"] = len(refs)
    else:
        source = make_source(cfg, stream=1)
        with ledger.phase("reference", n=cfg.n_val) as extra:
            refs = references.from_pyscf([source(i) for i in range(cfg.n_val)], cfg.level())
            extra["n_converged"] = len(refs)
    if not refs:
        raise InputError("no converged validation reference to score against")
    references.save(refs, cache)
    return refs


def held_out_inputs(evaluator: Evaluator, preparer: Preparer, device: torch.device,
                    ledger: Ledger, progress: bool = False) -> Predictor:
    """QPT's inputs for the evaluator's molecules (they do not depend on the weights, so one set
    serves every seed and head of a run); booked as evaluation."""
    with ledger.phase("tensors", what="validation samples (QPT inputs)", n=len(evaluator)):
        return Predictor(evaluator.molecules(), preparer, device, keep=evaluator.tensors.keep,
                         progress=progress)


def curve_evaluator(evaluator: Evaluator, predictor: Predictor, fixes: bool = False
                    ) -> Callable[[torch.nn.Module, int], dict]:
    """``evaluate(model, step)`` for the training loop: the shared evaluator's curve point."""

    def evaluate(model: torch.nn.Module, step: int) -> dict[str, float]:
        return evaluator.curve_point(predictor(model), fixes_h=fixes)

    return evaluate


def run(cfg: QPTRunConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
        progress: bool = True, ledger: Ledger | None = None,
        time_limit_s: float | None = None, evaluator: Evaluator | None = None,
        desc: str = "QPT training", predictor: Predictor | None = None) -> dict[str, Any]:
    """Train QPT as configured; returns the summary (last curve point of the shared evaluator).

    ``ledger``: book into this (a harness's run ledger) instead of ``out_dir/ledger.jsonl``;
    ``time_limit_s``: the wall-clock budget of tensor preparation + training;
    ``evaluator``: the harness's shared evaluator (default: one built here on the references);
    ``predictor``: QPT's inputs for the evaluator's molecules, if already prepared.
    The trained model is in ``out_dir/checkpoint.pt`` (``load_model``).

    Under torchrun (``training.distributed``; the process group already joined) every rank
    trains on its own conformations (seed + rank x ``RANK_SEED_STRIDE``); rank 0 alone writes
    the run directory, books the ledger (each entry with ``world_size``), evaluates and returns
    the summary; the other ranks return ``{}``.
    """
    from qptbench.data.stream import WindowedStream

    world = distributed.current()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    if resume and saved.exists():
        cfg = replace(QPTRunConfig(**json.loads(saved.read_text())), steps=cfg.steps)
    if world.parallel:
        distributed.barrier()  # every rank has read config.json before rank 0 rewrites it
    model, vocab = build_model(cfg, device)
    preparer = Preparer(vocab, cfg.level())
    own = replace(cfg, seed=distributed.rank_seed(cfg.seed, world))  # this rank's draws
    if cfg.signal == "labels":
        from qptbench.training.labelled import LabelledPreparer, LabelledSource

        stream = WindowedStream(LabelledSource(cfg.dataset, own.seed),
                                LabelledPreparer(preparer), cfg.window, 0)
    else:
        stream = WindowedStream(make_source(own, stream=0), preparer, cfg.window, cfg.workers)
    loss = SignalLoss(cfg.signal, device, cfg.mix_at, cfg.steps, cfg.explode_ha,
                      cfg.energy_backend)
    if not world.main:  # trains, and leaves the run directory and the scoring to rank 0
        train(model, loss, stream, cfg.train_config(), out, resume=resume, progress=False,
              time_limit_s=time_limit_s)
        return {}
    saved.write_text(json.dumps(asdict(cfg), indent=1))
    name = "qpt" if (cfg.arch, cfg.signal) == ("qpt", "energy") else f"{cfg.arch}:{cfg.signal}"
    ranks = {"world_size": world.size} if world.parallel else {}
    ledger = ledger or Ledger(out / "ledger.jsonl", device=str(device), method=name,
                              energy_backend=cfg.energy_backend, **ranks)
    (out / "model.json").write_text(json.dumps(describe(model), indent=1))
    if evaluator is None:
        refs = make_references(cfg, out, ledger)
        with ledger.phase("tensors", what="validation tensors (evaluator)", n=len(refs)):
            evaluator = Evaluator(refs, cfg.level(), device)
    if predictor is None:
        predictor = held_out_inputs(evaluator, preparer, device, ledger, progress)
    result = train(model, loss, stream, cfg.train_config(), out, resume=resume,
                   evaluate=curve_evaluator(evaluator, predictor, fixes_h(cfg.signal)),
                   ledger=ledger,
                   progress=progress, time_limit_s=time_limit_s, desc=desc)
    loss.book(ledger, 0 if cfg.signal == "labels" else cfg.workers)
    (out / "inference.json").write_text(json.dumps(measure_inference(
        model, evaluator.molecules(), preparer, device,
        [r.seconds for r in evaluator.refs]), indent=1))
    final = result.evaluations[-1] if result.evaluations else {}
    with ledger.phase("eval", what="zero model (control)", n=len(evaluator)):
        zero = evaluator.control_curve("zero")
    summary = {**{f"zero_{k}": v for k, v in zero.items() if k != "n_val"},
               "step": result.step, "skipped": result.skipped,
               "parameters": count_parameters(model),
               "molecules_prepared_this_run": stream.prepared, **final}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
