"""Read a run directory (what ``qptbench run`` writes) and book its ledger into cost buckets.

Shared by tables.py (pandas) and plots.py (matplotlib), so neither reads files the other way.
Layout: ``run.json``, ``ledger.jsonl`` (one ledger for the run, entries tagged ``method``) and
one folder per method with ``metrics.jsonl``, ``train.jsonl``, ``model.json``,
``inference.json``.

Booking rules (the one place they live):
- ``label`` of a method = that method's data creation (the baseline's training labels);
- ``tensors`` of a method = its tensor preparation, except tensors prepared for validation
  (``what`` mentions "validation"), which are evaluation cost;
- ``train`` = training; total = data creation + tensor preparation + training;
- ``eval`` and ``reference`` (PySCF labels of the validation set) = evaluation, in no total;
- ``sample`` = drawing conformations, shared by all methods, in no method's total (the budget
  ``--budget-hours`` is also labelling/tensors + training).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qptbench.errors import InputError
from qptbench.ledger import read_jsonl, read_ledger

SECONDS_PER_HOUR = 3600.0
BUCKETS = ("data_creation", "tensors", "training", "evaluation", "reference", "sampling",
           "unbooked")
IN_TOTAL = ("data_creation", "tensors", "training")
METHOD_NAMES = {"qpt": "QPT", "qhnet": "QHNet"}

# What a finished run writes next to its data (tables.write_run_outputs, plots.make_plots).
TABLES_DIR, PLOTS_DIR = "tables", "plots"
TABLE_NAMES = ("table1_cost", "table2_accuracy", "table3_inference")
TABLE_SUFFIXES = ("md", "tex", "csv")
PLOT_NAMES = ("error_vs_wallclock", "training_curves")
PLOT_SUFFIXES = ("png", "svg")
OUTPUT_FILES = (
    *[f"{TABLES_DIR}/{t}.{s}" for t in TABLE_NAMES for s in TABLE_SUFFIXES],
    *[f"{PLOTS_DIR}/{p}.{s}" for p in PLOT_NAMES for s in PLOT_SUFFIXES],
)


def display_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


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
    return "unbooked"


@dataclass
class MethodRun:
    name: str
    path: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] | None = None
    inference: dict[str, Any] | None = None


@dataclass
class RunDir:
    path: Path
    info: dict[str, Any]
    ledger: list[dict[str, Any]]
    methods: dict[str, MethodRun]

    @property
    def molecule(self) -> str:
        return str(self.info.get("molecule", "?"))

    def seconds(self, method: str | None = None, clock: str = "wall") -> dict[str, float]:
        """Seconds per bucket (``clock`` "wall" or "cpu") for one method (``None``: every entry
        of the run).  A bucket with an entry lacking CPU time is NaN, never an undercount."""
        out = dict.fromkeys(BUCKETS, 0.0)
        for e in self.ledger:
            if method is None or e.get("method") == method:
                value = e.get(f"{clock}_seconds")
                out[bucket(e)] += float("nan") if value is None else float(value)
        return out

    def total_seconds(self, method: str, clock: str = "wall") -> float:
        s = self.seconds(method, clock)
        return sum(s[b] for b in IN_TOTAL)

    def shared_seconds(self, phase_bucket: str) -> float:
        """A bucket summed over entries of every method (sampling, reference are shared)."""
        return self.seconds(None)[phase_bucket]

    def hours_at_step(self, method: str) -> dict[int, float]:
        """Cumulative wall hours of the method's own costs when each evaluation step was reached:
        data creation + tensor preparation (all before training) + training segments that ended
        at or before that step."""
        pre, segments = 0.0, []
        for e in self.ledger:
            if e.get("method") != method:
                continue
            b = bucket(e)
            if b in ("data_creation", "tensors"):
                pre += float(e["wall_seconds"])
            elif b == "training":
                segments.append((int(e.get("step", 0)), float(e["wall_seconds"])))
        out = {}
        for row in self.methods[method].metrics:
            step = int(row["step"])
            trained = sum(w for s, w in segments if s <= step)
            out[step] = (pre + trained) / SECONDS_PER_HOUR
        return out

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
    methods = {}
    for name in info.get("methods", []):
        mdir = root / name
        methods[name] = MethodRun(
            name, mdir, metrics=_read_jsonl(mdir / "metrics.jsonl"),
            train=[r for r in _read_jsonl(mdir / "train.jsonl") if not r.get("skipped")],
            model=_read_json(mdir / "model.json"), inference=_read_json(mdir / "inference.json"))
    return RunDir(root, info, ledger, methods)


def final_metrics(method: MethodRun) -> dict[str, Any]:
    """The last evaluation row (the model at the end of its training)."""
    return method.metrics[-1] if method.metrics else {}


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
