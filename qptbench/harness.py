"""``qptbench run``: both routes on one molecule, same hardware, same level of theory.

1. sample conformations (GFN2-xTB MD at 500 K) into ``data/dataset.h5`` with a train/val split;
2. label the baseline's training set with PySCF (booked as its data creation) and the validation
   set (booked as ``reference``: evaluation cost, in no method's total);
3. train the supervised baseline on the labels, and QPT on the same training geometries with the
   implicit DFT loss (no labels), each evaluated on the validation references as it trains;
4. time inference, then write tables and plots (``report.write_run_outputs``).

Every phase goes into one ledger (``ledger.jsonl``, entries tagged ``method``); rerunning with
``--resume`` continues: finished labels, checkpoints and ledger entries are kept.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from qptbench.errors import InputError
from qptbench.geometry import Molecule
from qptbench.ledger import Ledger, environment, read_ledger
from qptbench.level import LevelOfTheory

METHODS = ("qpt", "qhnet")


@dataclass(frozen=True)
class HarnessConfig:
    molecule: str = "water"
    preset: str = "smoke"
    methods: tuple[str, ...] = METHODS
    n_train: int = 8             # labelled training conformations (the baseline's data)
    n_val: int = 2               # validation conformations (PySCF references)
    md_interval: int = 50        # MD steps between kept frames (0.5 fs steps)
    md_equilibration: int = 1000
    qpt_preset: str = "smoke"    # train_qpt preset
    qpt_steps: int | None = None
    qhnet_preset: str = "tiny"
    qhnet_steps: int = 30
    eval_every: int = 0          # 0: evaluate at the end only
    budget_hours: float | None = None
    label_workers: int = 1
    xc: str = "b3lyp5"
    basis: str = "def2-svp"
    grid_level: int = 1
    seed: int = 0

    def level(self) -> LevelOfTheory:
        return LevelOfTheory(basis=self.basis, xc=self.xc, grid_level=self.grid_level)


PRESETS: dict[str, dict[str, Any]] = {
    # CI: minutes on 2 cores; numbers are meaningless, the plumbing is what is tested.
    "smoke": dict(n_train=6, n_val=2, md_interval=20, md_equilibration=200, qpt_preset="smoke",
                  qpt_steps=20, qhnet_preset="tiny", qhnet_steps=20, grid_level=1),
    # About an hour on a 2-core CPU.
    "small": dict(n_train=100, n_val=10, qpt_preset="tiny", qpt_steps=1500, qhnet_preset="tiny",
                  qhnet_steps=1500, eval_every=250, grid_level=3, label_workers=2),
    # The paper: 500 (water) / 25k labelled conformations, GPT-medium for 200k steps.
    "paper": dict(n_train=25_000, n_val=500, qpt_preset="paper", qhnet_preset="qhnet",
                  qhnet_steps=200_000, eval_every=5000, grid_level=3, label_workers=16),
}


def make_config(preset: str, **overrides: Any) -> HarnessConfig:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if preset == "paper" and values.get("molecule", "water") == "water" and "n_train" not in (
            {k for k, v in overrides.items() if v is not None}):
        values["n_train"] = 500  # MD17 convention: 500 water, 25k for the others
    cfg = replace(HarnessConfig(preset=preset), **values)
    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown or not cfg.methods:
        raise InputError(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(METHODS)}")
    return cfg


def _dataset(cfg: HarnessConfig, out: Path, ledger: Ledger, progress: bool) -> Path:
    from qptbench.data.md import md_settings, sample_md
    from qptbench.data.splits import make_splits
    from qptbench.data.store import create_dataset

    path = out / "data" / "dataset.h5"
    if path.exists():
        return path
    n = cfg.n_train + cfg.n_val
    settings = dict(interval=cfg.md_interval, equilibration_steps=cfg.md_equilibration)
    with ledger.phase("sample", method="shared", n=n, sampler="md") as extra:
        frames = sample_md(Molecule.builtin(cfg.molecule), n, seed=cfg.seed, progress=progress,
                           **settings)
        splits = make_splits(n, cfg.n_train, cfg.n_val, 0, seed=cfg.seed)
        create_dataset(path, frames, name=cfg.molecule, sampler=md_settings(cfg.seed, **settings),
                       splits=splits, split_seed=cfg.seed, split_rule="harness")
        extra["file"] = str(path)
    return path


def _label(cfg: HarnessConfig, path: Path, ledger: Ledger, progress: bool) -> None:
    """Training labels first (the baseline's data creation), then the validation references."""
    from qptbench.data.labelling import label_dataset
    from qptbench.data.store import NOT_ATTEMPTED, Dataset

    with Dataset.open(path) as ds:
        status = ds.status()
        n_train_todo = int((status[ds.split("train")] == NOT_ATTEMPTED).sum())
    if "qhnet" in cfg.methods and n_train_todo:
        with ledger.phase("label", method="qhnet", what="training labels") as extra:
            s = label_dataset(path, cfg.level(), workers=cfg.label_workers, limit=n_train_todo,
                              progress=progress)
            extra.update(n_labels=s.n_labels, n_failed=s.n_failed,
                         scf_cpu_seconds=s.cpu_seconds, summary=s.line())
    with ledger.phase("reference", method="shared", what="validation labels") as extra:
        s = label_dataset(path, cfg.level(), workers=cfg.label_workers, progress=progress)
        extra.update(n_labels=s.n_labels, n_failed=s.n_failed, summary=s.line())


def _run_qpt(cfg: HarnessConfig, dataset: Path, out: Path, device: torch.device, resume: bool,
             progress: bool, budget_s: float | None) -> dict[str, Any]:
    from qptbench import train_qpt as tq

    qcfg = tq.make_config(cfg.qpt_preset, molecule=cfg.molecule, steps=cfg.qpt_steps,
                          sampler="dataset", dataset=str(dataset), n_val=cfg.n_val, xc=cfg.xc,
                          basis=cfg.basis, grid_level=cfg.grid_level, seed=cfg.seed,
                          eval_every=cfg.eval_every)
    ledger = Ledger(out / "ledger.jsonl", str(device), method="qpt")
    return tq.run(qcfg, out / "qpt", device, resume=resume, progress=progress, ledger=ledger,
                  time_limit_s=budget_s)


def _run_qhnet(cfg: HarnessConfig, dataset: Path, out: Path, device: torch.device,
               resume: bool, progress: bool, budget_s: float | None) -> dict[str, Any]:
    from qptbench.baselines.qhnet_run import RunOptions, run

    ledger = Ledger(out / "ledger.jsonl", str(device), method="qhnet")
    options = RunOptions(labels=str(dataset), out=str(out / "qhnet"), preset=cfg.qhnet_preset,
                         steps=cfg.qhnet_steps, device=str(device), resume=resume,
                         n_val=cfg.n_val, energy_molecules=cfg.n_val,
                         eval_every=cfg.eval_every, seed=cfg.seed, progress=progress)
    return run(options, ledger=ledger, time_limit_s=budget_s)


def _label_seconds(out: Path, method: str) -> float:
    return sum(e["wall_seconds"] for e in read_ledger(out / "ledger.jsonl")
               if e["phase"] == "label" and e.get("method") == method)


def run(cfg: HarnessConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
        progress: bool = True) -> str:
    """Run the comparison; returns the tables as markdown text."""
    from qptbench.report import write_run_outputs

    out = Path(out_dir)
    run_json = out / "run.json"
    if out.exists() and any(out.iterdir()) and not resume:
        raise InputError(f"{out} is not empty; use --resume to continue it or choose another --out")
    if resume and run_json.exists():
        saved = json.loads(run_json.read_text())["config"]
        saved["methods"] = tuple(saved["methods"])
        if HarnessConfig(**saved) != cfg:
            raise InputError(f"--resume: {run_json} was written with other settings; rerun "
                             "with the same options (see its 'config')")
    out.mkdir(parents=True, exist_ok=True)
    run_json.write_text(json.dumps({
        "molecule": cfg.molecule, "preset": cfg.preset, "methods": list(cfg.methods),
        "level_of_theory": cfg.level().as_dict(), "environment": environment(str(device)),
        "config": asdict(cfg), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    ledger = Ledger(out / "ledger.jsonl", str(device), method="shared")
    dataset = _dataset(cfg, out, ledger, progress)
    _label(cfg, dataset, ledger, progress)
    budget = None if cfg.budget_hours is None else cfg.budget_hours * 3600.0
    if "qhnet" in cfg.methods:
        remaining = None if budget is None else budget - _label_seconds(out, "qhnet")
        if remaining is not None and remaining <= 0:
            raise InputError(f"the budget of {cfg.budget_hours} h is used up by labelling alone")
        _run_qhnet(cfg, dataset, out, device, resume, progress, remaining)
    if "qpt" in cfg.methods:
        _run_qpt(cfg, dataset, out, device, resume, progress, budget)
    _, text = write_run_outputs(out)
    return text
