"""The QHNet baseline's run: labels from the store -> QHNet -> shared loop -> shared evaluator.

Files in ``out_dir`` (besides the loop's checkpoint.pt, train.jsonl, metrics.jsonl, tb/):
``model.json`` (preset, config, element shells: enough to rebuild the model), ``ledger.jsonl``
(the labelling cost read from the label store, tensor building, training, evaluation) and
``result.json`` (final validation and test metrics with units in the names, and the hours spent).

The model, its recipe and the deviations from QHNet's are in ``qptbench.baselines`` (``qhnet.py``,
``qhnet_run.py``); nothing there scores: validation and test metrics come from
``qptbench.evaluation``.

Under torchrun (``qptbench.training.distributed``; the process group already joined) every rank
reads the finished label store and trains on its own shard of the training labels: rank r takes
the training split's labelled conformations r, r + N, r + 2N, ... (:func:`distributed.shard`,
in store order, after ``n_train``), so the shards are disjoint, cover the split and depend on
nothing but N.  Each rank draws mini-batches of the preset's batch size from its shard (the
global batch is N times that), the gradients are averaged (``training.loop``), and rank 0 alone
writes the run directory, books the ledger (entries with ``world_size``; the training entry with
each rank's wall seconds) and evaluates.  The per-element reference blocks are fitted on the
whole training split on every rank, as in one process.  No rank labels anything here: labels
are made once, by ``qptbench label`` (or the harness) before training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from qptbench.baselines.qhnet import QHNetConfig
from qptbench.baselines.qhnet_data import LabelledSet, batch_factory, open_store
from qptbench.baselines.qhnet_run import (
    DTYPES,
    FIXES_H,
    RunOptions,
    build_model,
    load_model,
    measure_inference,
    model_spec,
    positions_set,
    train_config,
)
from qptbench.baselines.qhnet_train import make_loss_fn, predict
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError
from qptbench.evaluation.evaluator import Evaluator
from qptbench.evaluation.references import Reference
from qptbench.ledger import Ledger, read_ledger, totals
from qptbench.training import distributed
from qptbench.training.loop import train


def as_references(data: LabelledSet) -> list[Reference]:
    """The shared evaluator's references for a labelled split (the store's own labels)."""
    return [Reference(data.molecule(k), float(data.energy[k]), data.fock[k], data.overlap[k],
                      data.n_occ, float("nan"), int(data.indices[k])) for k in range(len(data))]


def check_level(stored: LevelOfTheory | None, options: RunOptions, path: str
                ) -> LevelOfTheory | None:
    """The store's level, refused (one line) when ``options.eri`` / ``options.auxbasis`` ask
    for another: labels at dense ERIs are 1e-5 Ha from density-fitted ones, and the evaluator
    scores at the labels' level, so a run is at exactly one."""
    if options.eri is None and options.auxbasis is None:
        return stored
    have = stored or LevelOfTheory()
    want = LevelOfTheory(eri=options.eri or have.eri,
                         auxbasis=options.auxbasis or have.auxbasis)  # validates
    fitted = have.is_df and options.auxbasis is not None and want.auxbasis != have.auxbasis
    if want.eri != have.eri or fitted:
        what = f"df ({have.auxbasis})" if have.is_df else "dense"
        asked = f"df ({want.auxbasis})" if want.is_df else "dense"
        raise InputError(f"{path} is labelled with {what} ERIs, this run asks for {asked}: "
                         f"label a file with `qptbench label --eri {want.eri}` or drop --eri")
    return stored


def run(options: RunOptions, ledger: Ledger | None = None,
        time_limit_s: float | None = None, evaluator: Evaluator | None = None,
        desc: str = "QHNet training") -> dict[str, Any]:
    """Train and evaluate; ``ledger``: book into a harness's run ledger (which has booked the
    labelling itself); ``time_limit_s``: stop training after this much wall time;
    ``evaluator``: the harness's shared evaluator (default: one built here on the first
    ``energy_molecules`` validation labels).  The baseline scores nothing itself: validation and
    test metrics come from ``qptbench.evaluation``.

    Under torchrun each rank trains on its shard of the training labels; rank 0 alone returns
    the summary, the others ``{}`` (module docstring)."""
    from qptbench.runtime import resolve_device

    if options.dtype not in DTYPES:
        raise InputError(f"unknown dtype {options.dtype!r}; choose float32 or float64")
    if options.steps < 1:
        raise InputError("--steps must be at least 1")
    device = resolve_device(options.device)
    dtype = DTYPES[options.dtype]
    world = distributed.current()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)

    with open_store(options.labels) as ds:
        train_set = LabelledSet.from_store(ds, "train", options.n_train)
        val_set = LabelledSet.from_store(ds, "val", options.n_val)
        try:
            test_set: LabelledSet | None = LabelledSet.from_store(ds, "test", options.n_test)
        except InputError:
            test_set = None
        cost = ds.label_cost()
        level = check_level(ds.level, options, str(options.labels))
    if world.parallel and len(train_set) < world.size:
        raise InputError(f"{len(train_set)} training labels cannot be shared by {world.size} "
                         f"processes: use --nproc-per-node <= {len(train_set)} or more labels")
    spec = model_spec(out, options, train_set, write=not world.parallel)
    if world.parallel:
        distributed.barrier()  # every rank has checked model.json before rank 0 rewrites it
        if world.main:
            model_spec(out, options, train_set)
    torch.manual_seed(options.seed)
    model = build_model(spec, device)
    model.fit_reference(train_set.numbers, torch.as_tensor(train_set.fock, device=device,
                                                           dtype=dtype))
    config = train_config(QHNetConfig(**spec["config"]), options)
    own = train_set.subset(distributed.shard(len(train_set), world))  # this rank's labels
    batches = batch_factory(own, model.config.batch_size, options.seed, dtype, device)
    loss_fn = make_loss_fn(train_set.numbers)
    if not world.main:  # trains its shard; the run directory and the scoring are rank 0's
        train(model, loss_fn, batches, config, out, resume=options.resume, progress=False,
              time_limit_s=time_limit_s)
        return {}

    external_ledger = ledger is not None
    if ledger is None:
        if not options.resume:
            (out / "ledger.jsonl").unlink(missing_ok=True)
        ranks = {"world_size": world.size} if world.parallel else {}
        ledger = Ledger(out / "ledger.jsonl", str(device), method="qhnet", **ranks)
    booked = read_ledger(ledger.path) if ledger.path.exists() else []
    if not external_ledger and not any(e["phase"] == "label" for e in booked):
        # the data creation, read from the store: every SCF run for this file, failures included
        ledger.record("label", cost.wall_seconds, cost.cpu_seconds, source=str(options.labels),
                      n_labels=cost.n_labels, n_failed=cost.n_failed,
                      n_train_used=len(train_set), note="read from the label store",
                      level_of_theory=None if level is None else level.as_dict())

    if evaluator is None:
        n_eval = max(1, min(options.energy_molecules, len(val_set)))
        with ledger.phase("tensors", what="validation tensors (evaluator)", n=n_eval):
            evaluator = Evaluator(as_references(val_set.subset(range(n_eval))), level, device)
    eval_set = positions_set(evaluator.molecules(), train_set)

    def evaluate(net: torch.nn.Module, step: int) -> dict[str, float]:
        return evaluator.curve_point(list(predict(net, eval_set)), fixes_h=FIXES_H)

    result = train(model, loss_fn, batches, config, out,
                   resume=options.resume, evaluate=evaluate, ledger=ledger,
                   progress=options.progress, extra_state={"qhnet": spec},
                   time_limit_s=time_limit_s, desc=desc)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "model.json").write_text(json.dumps({**spec, "parameters": n_params}, indent=1))
    last = dict(result.evaluations[-1]) if result.evaluations else {}
    final: dict[str, Any] = {("val_" + k if k not in ("step", "eval_seconds") else k): v
                             for k, v in last.items()}
    model = load_model(out, device)
    per_label = cost.wall_seconds / max(cost.n_labels + cost.n_failed, 1)
    (out / "inference.json").write_text(json.dumps(
        measure_inference(model, eval_set, per_label, device), indent=1))
    if test_set is not None:
        with ledger.phase("tensors", what="validation tensors (test split)", n=len(test_set)):
            tester = Evaluator(as_references(test_set), level, device)
        with ledger.phase("eval", split="test", molecules=len(test_set)):
            scores = tester.curve_point(list(predict(model, test_set)), fixes_h=FIXES_H)
        final.update({f"test_{k}": v for k, v in scores.items()})
    hours = {f"{k}_hours": v / 3600 for k, v in totals(read_ledger(ledger.path)).items()}
    summary = {"preset": options.preset, "parameters": n_params,
               "n_train": len(train_set), "world_size": world.size, "n_val": len(val_set),
               "n_test": 0 if test_set is None else len(test_set), "steps": result.step,
               "device": str(device), "dtype": options.dtype,
               "level_of_theory": None if level is None else level.as_dict(), **final, **hours}
    (out / "result.json").write_text(json.dumps(summary, indent=1))
    return summary
