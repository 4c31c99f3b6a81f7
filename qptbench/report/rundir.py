"""Read a run directory (what ``qptbench run`` writes) and book its ledger into cost buckets.

Shared by tables.py (pandas) and plots.py (matplotlib), so neither reads files the other way.
Layout: ``run.json``, ``ledger.jsonl`` (one ledger for the run, entries tagged ``method`` and,
for a method's own phases, ``seed``), ``scores.csv`` / ``results.csv`` (the shared evaluator's
scores) and one folder per method and seed (``qpt/seed0/``, ...) with ``metrics.jsonl``,
``train.jsonl``, ``model.json``, ``inference.json``.

Booking rules (the one place they live):
- ``label`` of a method = that method's data creation (the baseline's training labels);
- ``tensors`` of a method = its tensor preparation, except tensors prepared for validation
  (``what`` mentions "validation"), which are evaluation cost; preparation done inside the
  training loop (``included_in: "train"``) is moved out of training into tensor preparation;
- ``train`` = training; total = data creation + tensor preparation + training;
- ``eval`` and ``reference`` (PySCF labels of the validation set) = evaluation, in no total;
- ``sample`` = drawing conformations, shared by all methods, in no method's total (the budget
  ``--budget-hours`` is also labelling/tensors + training).
- An entry of a method without a ``seed`` (its labels) belongs to every seed of that method.
- One set of training labels serves every label route of a run: its ``label`` entry is booked
  once, under the first of them, and lists them all in ``charged_to``; each of them is charged
  the whole of it (a route's wall-clock includes the labels it needed, whoever made them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qptbench.errors import InputError
from qptbench.ledger import read_jsonl, read_ledger
from qptbench.methods import folder

SECONDS_PER_HOUR = 3600.0
BUCKETS = ("data_creation", "tensors", "training", "evaluation", "reference", "sampling",
           "unbooked")
IN_TOTAL = ("data_creation", "tensors", "training")
METHOD_NAMES = {"qpt": "QPT", "qhnet": "QHNet", "qpt-signed": "QPT (signed head)",
                "qpt:energy": "QPT", "qhnet:labels": "QHNet", "qpt:sc": "QPT (sc)",
                "qpt:labels": "QPT (labels)", "qhnet:energy": "QHNet (energy)",
                "qhnet:sc": "QHNet (sc)"}

# What a finished run writes next to its data (tables.write_run_outputs, plots.make_plots).
TABLES_DIR, PLOTS_DIR = "tables", "plots"
TABLE_NAMES = ("table1_cost", "table2_accuracy", "table3_inference", "table4_protocol")
TABLE_SUFFIXES = ("md", "tex", "csv")
PLOT_NAMES = ("error_vs_wallclock", "training_curves")
PLOT_SUFFIXES = ("png", "svg")
OUTPUT_FILES = (
    "results.csv", "scores.csv",
    *[f"{TABLES_DIR}/{t}.{s}" for t in TABLE_NAMES for s in TABLE_SUFFIXES],
    *[f"{PLOTS_DIR}/{p}.{s}" for p in PLOT_NAMES for s in PLOT_SUFFIXES],
)


def display_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def label_sharers(ledger: list[dict[str, Any]]) -> set[str]:
    """Label routes added to a run (``--resume``) after its training labels were made: each has
    a ``label-share`` entry (no seconds of its own) and is charged those labels too."""
    return {e.get("method") for e in ledger if e.get("phase") == "label-share"}


def charged(entry: dict[str, Any], method: str, sharers: set[str] | None = None) -> bool:
    """Whether a ledger entry is charged to ``method``: its own entries, and the run's training
    labels where it is one of their label routes (``charged_to``, or a later sharer)."""
    if entry.get("method") == method:
        return True
    return entry.get("phase") == "label" and (method in entry.get("charged_to", ())
                                              or method in (sharers or ()))


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path) if path.exists() else []


def bucket(entry: dict[str, Any]) -> str:
    """Which cost bucket a ledger entry belongs to (see the module docstring)."""
    phase = entry.get("phase")
    if phase == "label":
        return "data_creation"
    if phase == "tensors":
        return "evaluation" if "validation" in str(entry.get("what", "")) else "tensors"
    if phase == "train":
        return "training"
    if phase == "eval":
        return "evaluation"
    if phase == "reference":
        return "reference"
    if phase == "sample":
        return "sampling"
    return "unbooked"  # also "label-share": a marker, no seconds of its own


@dataclass
class MethodRun:
    name: str
    path: Path
    seed: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] | None = None
    inference: dict[str, Any] | None = None


@dataclass
class RunDir:
    path: Path
    info: dict[str, Any]
    ledger: list[dict[str, Any]]
    methods: dict[str, MethodRun]          # each method's first seed
    seed_runs: dict[tuple[str, int], MethodRun] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.info.get("seeds", [0])]

    @property
    def molecule(self) -> str:
        return str(self.info.get("molecule", "?"))

    def _entries(self, method: str | None, seed: int | None) -> list[dict[str, Any]]:
        sharers = label_sharers(self.ledger)
        return [e for e in self.ledger
                if (method is None or charged(e, method, sharers))
                and (seed is None or e.get("seed") is None or int(e["seed"]) == seed)]

    def seconds(self, method: str | None = None, clock: str = "wall",
                seed: int | None = None) -> dict[str, float]:
        """Seconds per bucket (``clock`` "wall" or "cpu") for one method (``None``: every entry
        of the run) and seed (``None``: all of them, each entry once).  A bucket with an entry
        lacking CPU time is NaN, never an undercount."""
        out = dict.fromkeys(BUCKETS, 0.0)
        for e in self._entries(method, seed):
            value = e.get(f"{clock}_seconds")
            value = float("nan") if value is None else float(value)
            out[bucket(e)] += value
            if e.get("included_in") == "train":  # prepared inside the loop: not training time
                out["training"] -= value
        return out

    def total_seconds(self, method: str, clock: str = "wall", seed: int | None = None) -> float:
        s = self.seconds(method, clock, seed)
        return sum(s[b] for b in IN_TOTAL)

    def cost_hours(self, method: str, seed: int) -> dict[str, float]:
        """One route's costs for one seed, in hours (results.csv's cost columns)."""
        s = self.seconds(method, seed=seed)
        steps = [int(e["step"]) for e in self._entries(method, seed)
                 if e.get("phase") == "train" and "step" in e and e.get("seed") is not None]
        return {"wall_hours": self.total_seconds(method, seed=seed) / SECONDS_PER_HOUR,
                "data_creation_hours": s["data_creation"] / SECONDS_PER_HOUR,
                "tensor_hours": s["tensors"] / SECONDS_PER_HOUR,
                "training_hours": s["training"] / SECONDS_PER_HOUR,
                "cpu_hours": self.total_seconds(method, "cpu", seed) / SECONDS_PER_HOUR,
                "steps": max(steps) if steps else float("nan")}

    def shared_seconds(self, phase_bucket: str) -> float:
        """A bucket summed over entries of every method (sampling, reference are shared)."""
        return self.seconds(None)[phase_bucket]

    def hours_at_step(self, method: str, seed: int | None = None) -> dict[int, float]:
        """Cumulative wall hours of the route's own costs at each evaluation: data creation +
        tensor preparation done before training + the wall time trained so far (the loop's
        ``trained_seconds``, which includes preparation done inside it)."""
        seed = self.seeds[0] if seed is None else seed
        pre = sum(float(e["wall_seconds"]) for e in self._entries(method, seed)
                  if bucket(e) in ("data_creation", "tensors")
                  and e.get("included_in") != "train")
        mrun = self.seed_runs.get((method, seed)) or self.methods[method]
        return {int(r["step"]): (pre + float(r.get("trained_seconds", 0.0))) / SECONDS_PER_HOUR
                for r in mrun.metrics}

    def pre_training_hours(self, method: str) -> float:
        """Data creation (labels) of the method, in hours: the interval plots shade."""
        return self.seconds(method)["data_creation"] / SECONDS_PER_HOUR


def load_run(path: str | Path) -> RunDir:
    """Read a run directory; a missing run.json or ledger is an InputError."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"run directory {root} does not exist")
    info = _read_json(root / "run.json")
    if info is None:
        raise InputError(f"{root} is not a run directory (no run.json)")
    if not (root / "ledger.jsonl").exists():
        raise InputError(f"{root} has no ledger.jsonl")
    ledger = read_ledger(root / "ledger.jsonl")
    methods, seed_runs = {}, {}
    for name in info.get("methods", []):
        for seed in info.get("seeds", [0]):
            mdir = root / folder(name) / f"seed{seed}"
            if not mdir.exists():  # runs written before methods were named arch:signal
                mdir = root / name / f"seed{seed}"
            seed_runs[(name, int(seed))] = MethodRun(
                name, mdir, int(seed), metrics=_read_jsonl(mdir / "metrics.jsonl"),
                train=[r for r in _read_jsonl(mdir / "train.jsonl") if not r.get("skipped")],
                model=_read_json(mdir / "model.json"),
                inference=_read_json(mdir / "inference.json"))
            methods.setdefault(name, seed_runs[(name, int(seed))])
    return RunDir(root, info, ledger, methods, seed_runs)


def final_metrics(method: MethodRun) -> dict[str, Any]:
    """The last evaluation row (the model at the end of its training)."""
    return method.metrics[-1] if method.metrics else {}


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
