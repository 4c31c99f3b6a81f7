"""The QHNet baseline's run: labels from the store -> QHNet -> shared loop -> shared evaluator.

Files in ``out_dir`` (besides the loop's checkpoint.pt, train.jsonl, metrics.jsonl, tb/):
``model.json`` (preset, config, element shells: enough to rebuild the model), ``ledger.jsonl``
(the labelling cost read from the label store, tensor building, training, evaluation) and
``result.json`` (final validation and test metrics with units in the names, and the hours spent).

The model, its recipe and the deviations from QHNet's are in ``qptbench.baselines`` (``qhnet.py``,
``qhnet_run.py``); nothing there scores: validation and test metrics come from
``qptbench.evaluation``.
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
    test metrics come from ``qptbench.evaluation``."""
    from qptbench.runtime import resolve_device

    if options.dtype not in DTYPES:
        raise InputError(f"unknown dtype {options.dtype!r}; choose float32 or float64")
    if options.steps < 1:
        raise InputError("--steps must be at least 1")
    device = resolve_device(options.device)
    dtype = DTYPES[options.dtype]
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    external_ledger = ledger is not None
    if ledger is None:
        if not options.resume:
            (out / "ledger.jsonl").unlink(missing_ok=True)
        ledger = Ledger(out / "ledger.jsonl", str(device), method="qhnet")

    with open_store(options.labels) as ds:
        train_set = LabelledSet.from_store(ds, "train", options.n_train)
        val_set = LabelledSet.from_store(ds, "val", options.n_val)
        try:
            test_set: LabelledSet | None = LabelledSet.from_store(ds, "test", options.n_test)
        except InputError:
            test_set = None
        cost = ds.label_cost()
        level = check_level(ds.level, options, str(options.labels))
    booked = read_ledger(ledger.path) if ledger.path.exists() else []
    if not external_ledger and not any(e["phase"] == "label" for e in booked):
        # the data creation, read from the store: every SCF run for this file, failures included
        ledger.record("label", cost.wall_seconds, cost.cpu_seconds, source=str(options.labels),
                      n_labels=cost.n_labels, n_failed=cost.n_failed,
                      n_train_used=len(train_set), note="read from the label store",
                      level_of_theory=None if level is None else level.as_dict())

    spec = model_spec(out, options, train_set)
    torch.manual_seed(options.seed)
    model = build_model(spec, device)
    model.fit_reference(train_set.numbers, torch.as_tensor(train_set.fock, device=device,
                                                           dtype=dtype))
    if evaluator is None:
        n_eval = max(1, min(options.energy_molecules, len(val_set)))
        with ledger.phase("tensors", what="validation tensors (evaluator)", n=n_eval):
            evaluator = Evaluator(as_references(val_set.subset(range(n_eval))), level, device)
    eval_set = positions_set(evaluator.molecules(), train_set)

    def evaluate(net: torch.nn.Module, step: int) -> dict[str, float]:
        return evaluator.curve_point(list(predict(net, eval_set)), fixes_h=FIXES_H)

    config = train_config(QHNetConfig(**spec["config"]), options)
    batches = batch_factory(train_set, model.config.batch_size, options.seed, dtype, device)
    result = train(model, make_loss_fn(train_set.numbers), batches, config, out,
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
               "n_train": len(train_set), "n_val": len(val_set),
               "n_test": 0 if test_set is None else len(test_set), "steps": result.step,
               "device": str(device), "dtype": options.dtype,
               "level_of_theory": None if level is None else level.as_dict(), **final, **hours}
    (out / "result.json").write_text(json.dumps(summary, indent=1))
    return summary
