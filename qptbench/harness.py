"""``qptbench run``: every route on one molecule, same hardware, same level of theory, one
evaluator.

1. sample conformations (GFN2-xTB MD at 500 K) into ``data/dataset.h5`` with a train/val split;
2. label the training set with PySCF (the label routes' data creation) and the validation set
   (the references: evaluation cost, in no route's total);
3. build the shared evaluator on the references (each in its own frame and grid);
4. for each seed and each method (``methods.METHODS``): train under the budget (on ``nproc``
   processes when more than 1: ``methods/parallel.py``), predict H for the
   references, and hand the predictions to the evaluator; then score the controls (zero model,
   early-stopped DIIS SCF, the label itself) with the same code;
5. write ``scores.csv`` (per molecule), ``results.csv`` (per method, seed and k), tables, plots,
   and print a compact summary.

Every phase goes into one ledger (``ledger.jsonl``, entries tagged ``method`` and ``seed``);
rerunning with ``--resume`` continues: finished labels, checkpoints, scores and ledger entries
are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from qptbench.data.labelling import available_cores
from qptbench.dft.geometry import Molecule
from qptbench.dft.labels_gpu import check_labeller
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError
from qptbench.evaluation import references
from qptbench.evaluation.evaluator import CONTROL_NAMES, Evaluator
from qptbench.evaluation.results import (
    RESULT_COLUMNS,
    SCORE_COLUMNS,
    aggregate,
    read_csv,
    typed_score,
    write_csv,
)
from qptbench.ledger import Ledger, environment, read_ledger
from qptbench.methods import (
    ALIASES,
    DEFAULT_METHODS,
    METHODS,
    MethodContext,
    canonical,
    folder,
    make_method,
)

SCORES, RESULTS = "scores.csv", "results.csv"


@dataclass(frozen=True)
class HarnessConfig:
    molecule: str = "water"
    preset: str = "smoke"
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: int = 1               # independent training seeds per method
    n_train: int = 8             # labelled training conformations (the baseline's data)
    n_val: int = 2               # held-out conformations (PySCF references)
    md_interval: int = 50        # MD steps between kept frames (0.5 fs steps)
    md_equilibration: int = 1000
    qpt_preset: str = "smoke"    # training/qpt.py preset
    qpt_steps: int | None = None
    qhnet_preset: str = "tiny"
    qhnet_steps: int = 30
    eval_every: int = 0          # 0: evaluate at the end only (unless eval_points)
    eval_points: int = 0         # > 0: evaluate at k/eval_points of the budget (or the steps)
    scf_molecules: int = 1       # references that also get the PySCF SCF-acceleration runs
    budget_hours: float | None = None
    label_workers: int | None = None  # None: all cores
    xc: str = "b3lyp5"
    basis: str = "def2-svp"
    grid_level: int = 1
    eri: str = "dense"           # two-electron integrals: dense | df (labels and QPT alike)
    auxbasis: str = "def2-universal-jkfit"
    labeller: str = "pyscf"      # SCF code of the labels: pyscf | gpu4pyscf (same level)
    nproc: int = 1               # training processes per route (methods/parallel.py)
    # engine of the network methods' energy signal: torch | jax (not a level of theory)
    energy_backend: str = "torch"
    seed: int = 0                # sampling and split seed; training seeds are 0..seeds-1
    # QPT's training conformations (training/qpt_sources.py): None = the dataset's train split;
    # "dihedral" = fresh alanine-dipeptide draws from train_region each step (experiments/)
    qpt_sampler: str | None = None
    train_region: str | None = None  # (φ, ψ) box, "0:180" or "0:180,0:90" (data/regions.py)

    def level(self) -> LevelOfTheory:
        return LevelOfTheory(basis=self.basis, xc=self.xc, grid_level=self.grid_level,
                             eri=self.eri, auxbasis=self.auxbasis)


PRESETS: dict[str, dict[str, Any]] = {
    # CI: a few minutes on 2 cores; numbers are meaningless, the plumbing is what is tested.
    # Density-fitted, so that it fits any laptop at any built-in size: dense ERIs held by the
    # training window, the evaluator and the next build came to 11 GB resident at uracil.
    "smoke": dict(n_train=6, n_val=2, md_interval=20, md_equilibration=200, qpt_preset="smoke",
                  qpt_steps=20, qhnet_preset="tiny", qhnet_steps=20, grid_level=1, seeds=1,
                  scf_molecules=1, eri="df"),
    # About 35 minutes for two methods on a 2-core CPU: every route gets the same wall-clock
    # (3.6 min, labelling included for the baseline), 3 seeds, 50 held-out molecules, 10 of them
    # with SCF-acceleration runs.
    "small": dict(n_train=100, n_val=50, qpt_preset="tiny", qpt_steps=100_000,
                  qhnet_preset="tiny", qhnet_steps=100_000, budget_hours=0.06, eval_points=6,
                  grid_level=3, seeds=3, scf_molecules=10),
    # The paper: 500 (water) / 25k labelled conformations, GPT-medium for 200k steps.
    "paper": dict(n_train=25_000, n_val=500, qpt_preset="paper", qhnet_preset="qhnet",
                  qhnet_steps=200_000, eval_every=5000, grid_level=3, seeds=3,
                  scf_molecules=50),
}


def make_config(preset: str, **overrides: Any) -> HarnessConfig:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    given = {k for k, v in overrides.items() if v is not None}
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if preset == "paper" and values.get("molecule", "water") == "water" and "n_train" not in given:
        values["n_train"] = 500  # MD17 convention: 500 water, 25k for the others
    if values.get("methods") is not None:
        values["methods"] = tuple(dict.fromkeys(canonical(m) for m in values["methods"]))
    cfg = replace(HarnessConfig(preset=preset), **values)
    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown or not cfg.methods:
        raise InputError(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(METHODS)} (or the aliases {', '.join(ALIASES)})")
    for name in ("seeds", "n_train", "n_val"):
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.nproc < 1:
        raise InputError(f"--nproc must be at least 1, got {cfg.nproc}")
    if cfg.budget_hours is not None and not cfg.budget_hours > 0:
        raise InputError(f"--budget-hours must be > 0, got {cfg.budget_hours}")
    cfg.level()  # a bad --eri fails here, before any sampling or labelling
    check_labeller(cfg.labeller)  # likewise a labeller unusable here (no GPU4PySCF or CUDA)
    _check_backend(cfg)
    return cfg


def _check_backend(cfg: HarnessConfig) -> None:
    """Before any work: the backend exists and every network method's signal supports it (the
    supervised QHNet baseline computes no DFT energy and ignores it)."""
    from qptbench.methods import QPTMethod
    from qptbench.training.signals import check_backend_signal

    for name in cfg.methods:
        method = METHODS[name]
        signal = method.signal if issubclass(method, QPTMethod) else "energy"
        try:
            check_backend_signal(cfg.energy_backend, signal)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None


def _say(progress: bool) -> Callable[[str], None]:
    def say(text: str) -> None:
        if progress:
            print(f"[qptbench] {text}", flush=True)

    return say


def _dataset(cfg: HarnessConfig, out: Path, ledger: Ledger, say) -> Path:
    from qptbench.data.md import md_settings, sample_md
    from qptbench.data.splits import make_splits
    from qptbench.data.store import create_dataset

    path = out / "data" / "dataset.h5"
    if path.exists():
        return path
    n = cfg.n_train + cfg.n_val
    say(f"sampling {n} conformations of {cfg.molecule} (GFN2-xTB MD at 500 K)")
    settings = dict(interval=cfg.md_interval, equilibration_steps=cfg.md_equilibration)
    with ledger.phase("sample", method="shared", n=n, sampler="md") as extra:
        frames = sample_md(Molecule.builtin(cfg.molecule), n, seed=cfg.seed,
                           progress=say is not None, **settings)
        splits = make_splits(n, cfg.n_train, cfg.n_val, 0, seed=cfg.seed)
        create_dataset(path, frames, name=cfg.molecule, sampler=md_settings(cfg.seed, **settings),
                       splits=splits, split_seed=cfg.seed, split_rule="harness")
        extra["file"] = str(path)
    return path


def _label(cfg: HarnessConfig, path: Path, ledger: Ledger, progress: bool, say) -> None:
    """Training labels first (data creation of the label routes), then the references."""
    from qptbench.data.labelling import label_dataset
    from qptbench.data.store import NOT_ATTEMPTED, Dataset

    with Dataset.open(path) as ds:
        status = ds.status()
        n_train_todo = int((status[ds.split("train")] == NOT_ATTEMPTED).sum())
    label_routes = [name for name in cfg.methods if make_method(name).uses_labels]
    _share_labels(ledger, label_routes)
    if label_routes and n_train_todo:
        say(f"labelling {n_train_todo} training conformations with PySCF on "
            f"{available_cores()} cores: the data creation of {', '.join(label_routes)}")
        # one label set serves every label route; each is charged all of it (report/rundir.py)
        with ledger.phase("label", method=label_routes[0], charged_to=label_routes,
                          what="training labels") as extra:
            s = label_dataset(path, cfg.level(), workers=cfg.label_workers,
                              limit=n_train_todo, progress=progress, desc="labels: training",
                              labeller=cfg.labeller)
            extra.update(n_labels=s.n_labels, n_failed=s.n_failed, workers=s.workers,
                         threads_per_worker=s.threads_per_worker, cores=s.cores,
                         scf_cpu_seconds=s.cpu_seconds, labeller=s.labeller, summary=s.line())
    say("labelling the held-out references with PySCF (evaluation cost, in no route's total)")
    with ledger.phase("reference", method="shared", what="validation labels") as extra:
        s = label_dataset(path, cfg.level(), workers=cfg.label_workers, progress=progress,
                          desc="labels: validation", labeller=cfg.labeller)
        extra.update(n_labels=s.n_labels, n_failed=s.n_failed, workers=s.workers,
                     threads_per_worker=s.threads_per_worker, cores=s.cores,
                     labeller=s.labeller, summary=s.line())


def _share_labels(ledger: Ledger, label_routes: list[str]) -> None:
    """On ``--resume`` with a label route added after the labels were made: mark it as charged
    those labels too (a ``label-share`` entry; ``report.rundir.charged``)."""
    from qptbench.report.rundir import charged, label_sharers

    entries = read_ledger(ledger.path) if ledger.path.exists() else []
    made = [e for e in entries if e.get("phase") == "label"]
    sharers = label_sharers(entries)
    for name in label_routes:
        if made and not any(charged(e, name, sharers) for e in made):
            ledger.record("label-share", 0.0, 0.0, method=name,
                          what="charged the run's training labels")


def _evaluator(cfg: HarnessConfig, path: Path, ledger: Ledger, device: torch.device,
               say) -> Evaluator:
    refs = references.from_dataset(path, "val", cfg.n_val)
    say(f"building the evaluator's tensors for {len(refs)} references (their own frames)")
    with ledger.phase("tensors", method="shared", what="validation tensors (evaluator)",
                      n=len(refs)):
        return Evaluator(refs, cfg.level(), device, scf_molecules=cfg.scf_molecules)


def _spent(out: Path, method: str, phase: str) -> float:
    """Wall seconds of a phase charged to a method (its own entries and the shared labels it
    is charged, as ``report.rundir`` books them)."""
    from qptbench.report.rundir import charged, label_sharers

    entries = read_ledger(out / "ledger.jsonl")
    sharers = label_sharers(entries)
    return sum(e["wall_seconds"] for e in entries
               if e["phase"] == phase and charged(e, method, sharers))


def _check_resume(cfg: HarnessConfig, out: Path, resume: bool) -> None:
    run_json = out / "run.json"
    if out.exists() and any(out.iterdir()) and not resume:
        raise InputError(f"{out} is not empty; use --resume to continue it or choose another --out")
    if resume and run_json.exists():
        saved = json.loads(run_json.read_text())["config"]
        saved = HarnessConfig(**{k: (tuple(canonical(m) for m in v) if k == "methods" else v)
                                 for k, v in saved.items()
                                 if k in HarnessConfig.__dataclass_fields__})
        # a resume may add methods (scored on the same references), never drop or change any
        if replace(saved, methods=cfg.methods) != cfg or not set(saved.methods) <= set(
                cfg.methods):
            raise InputError(f"--resume: {run_json} was written with other settings; rerun "
                             "with the same options (see its 'config'; --methods may only "
                             "add methods)")


DatasetHook = Callable[[HarnessConfig, Path, Ledger, Callable[[str], None]], Path]


def run(cfg: HarnessConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
        progress: bool = True, *, make_dataset: DatasetHook | None = None,
        results: Callable[[Path], Path] | None = None) -> str:
    """Run the comparison; returns the compact summary (≤ 100 columns) for printing.

    ``make_dataset(cfg, out, ledger, say)`` writes the run's dataset file (train split: the
    training conformations, val split: the references) and returns its path; default: MD
    conformations of ``cfg.molecule``.  ``results(out)`` writes ``scores.csv`` and
    ``results.csv`` from the finished parts; default :func:`write_results`.  An experiment
    (``qptbench.experiments``) passes its own, and everything between is this comparison.
    """
    from qptbench.report.outputs import summary_text, write_run_outputs

    out = Path(out_dir)
    say = _say(progress)
    _check_resume(cfg, out, resume)
    if cfg.nproc > 1:  # before any work: a count this machine cannot run
        from qptbench.methods.parallel import check_nproc

        check_nproc(cfg.nproc, device, available_cores())
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({
        "molecule": cfg.molecule, "preset": cfg.preset, "methods": list(cfg.methods),
        "seeds": list(range(cfg.seeds)), "level_of_theory": cfg.level().as_dict(),
        "energy_backend": cfg.energy_backend,
        "environment": {**environment(str(device)), "cores": available_cores()},
        "config": asdict(cfg), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    ledger = Ledger(out / "ledger.jsonl", str(device), method="shared")
    dataset = (make_dataset or _dataset)(cfg, out, ledger, say)
    _label(cfg, dataset, ledger, progress, say)
    evaluator = _evaluator(cfg, dataset, ledger, device, say)
    budget = None if cfg.budget_hours is None else cfg.budget_hours * 3600.0
    cache: dict = {}  # what methods may share across seeds (QPT's held-out inputs)
    for seed in range(cfg.seeds):
        for name in cfg.methods:
            _run_method(cfg, name, seed, out, dataset, device, evaluator, budget, resume,
                        progress, say, cache)
    _score_controls(out, evaluator, ledger, say)
    say("writing results.csv, tables and plots")
    (results or write_results)(out)
    write_run_outputs(out)
    text = summary_text(out)
    (out / "summary.txt").write_text(text)
    return text


def _run_method(cfg: HarnessConfig, name: str, seed: int, out: Path, dataset: Path,
                device: torch.device, evaluator: Evaluator, budget: float | None,
                resume: bool, progress: bool, say, cache: dict) -> None:
    method = make_method(name)
    where = out / folder(name) / f"seed{seed}"
    scores_path = where / SCORES
    if resume and scores_path.exists():
        say(f"{name} seed {seed}: finished before, kept")
        return
    ledger = Ledger(out / "ledger.jsonl", str(device), method=name, seed=seed,
                    energy_backend=cfg.energy_backend)
    ctx = MethodContext(where, dataset, cfg.molecule, seed, device, ledger, evaluator,
                        asdict(cfg), resume=resume, progress=progress, cache=cache)
    remaining = budget
    if budget is not None and method.uses_labels:
        remaining = budget - _spent(out, name, "label")
        if remaining <= 0:
            raise InputError(f"the budget of {cfg.budget_hours} h is used up by {name}'s "
                             "labelling alone")
    say(f"{method.title}, seed {seed}: training"
        + ("" if remaining is None else f" for {remaining / 60:.1f} min of wall-clock")
        + ("" if cfg.nproc == 1 else f" on {cfg.nproc} processes"))
    if cfg.nproc == 1:
        method.train(ctx, remaining)
    else:
        from qptbench.methods.parallel import train_parallel

        ranks = Ledger(ledger.path, str(device), method=name, seed=seed,
                       energy_backend=cfg.energy_backend, world_size=cfg.nproc)
        train_parallel(method, replace(ctx, ledger=ranks), remaining, cfg.nproc,
                       available_cores())
    say(f"{name} seed {seed}: scoring {len(evaluator)} held-out molecules (k = 0, 1, 3; "
        f"SCF acceleration on {evaluator.scf_molecules})")
    with ledger.phase("eval", what="final scores (shared evaluator)", n=len(evaluator)):
        preds = method.predict(ctx, evaluator.molecules())
        rows = evaluator.score(preds, name, seed=seed, fixes_h=method.fixes_h, scf=True,
                               progress=say)
    write_csv(scores_path, rows, SCORE_COLUMNS)


def _score_controls(out: Path, evaluator: Evaluator, ledger: Ledger, say) -> None:
    path = out / "controls" / SCORES
    if path.exists():
        return
    say("scoring the controls: " + "; ".join(CONTROL_NAMES.values()))
    with ledger.phase("eval", what="controls (shared evaluator)", n=len(evaluator)):
        rows = evaluator.controls(scf=True, progress=say)
    write_csv(path, rows, SCORE_COLUMNS)


def collect_scores(out: Path) -> list[dict[str, Any]]:
    """Write ``scores.csv`` (every method's and seed's, then the controls', as each part wrote
    them) and return its rows typed (``typed_score``)."""
    raw = []
    for path in [*sorted(out.glob(f"*/seed*/{SCORES}")), out / "controls" / SCORES]:
        if path.exists():
            raw += read_csv(path)
    write_csv(out / SCORES, raw, SCORE_COLUMNS)
    return [typed_score(r) for r in raw]


def route_costs(out: Path) -> dict[tuple[str, int], dict[str, float]]:
    """Each (method, seed)'s costs in hours from the ledger (results.csv's cost columns)."""
    from qptbench.report.rundir import load_run

    run = load_run(out)
    return {(name, seed): run.cost_hours(name, seed) for name in run.info.get("methods", [])
            for seed in run.info.get("seeds", [0])}


KINDS = dict.fromkeys(CONTROL_NAMES, "control")  # results.csv's "kind"; methods: "method"


def write_results(out: Path) -> Path:
    """``scores.csv`` (all methods, seeds, controls) and ``results.csv`` of a run directory."""
    rows = collect_scores(out)
    return write_csv(out / RESULTS, aggregate(rows, route_costs(out), KINDS), RESULT_COLUMNS)
