"""Is a run directory consistent?  ``check_run`` (``qptbench tables --check``, the harness's
tests): every method's and seed's files, every ledger entry booked exactly once, units in every
column, measured rows traced to the run, and the written tables, plots and CSVs matching the
ledger."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from qptbench.ledger import PHASES
from qptbench.report.rundir import (
    BUCKETS,
    OUTPUT_FILES,
    SECONDS_PER_HOUR,
    TABLES_DIR,
    final_metrics,
    load_run,
)
from qptbench.report.tables import (
    DATA_H,
    METRIC_COLUMNS,
    REPORTED,
    TENSORS_H,
    TEXT_COLUMNS,
    TOTAL_H,
    TRAIN_H,
    make_tables,
    split,
)


def _hours(seconds: float) -> float:
    return seconds / SECONDS_PER_HOUR


_UNIT = re.compile(r"\(([^()]+)\)$")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _check_frame(name: str, frame: pd.DataFrame, run_path: str) -> list[str]:
    problems = [f"{name}: column {col!r} has no unit in parentheses" for col in frame.columns
                if col not in TEXT_COLUMNS and not _UNIT.search(col)]
    sources = list(frame.get("source", []))
    measured = [s for s in sources if s != REPORTED]
    if sources[: len(measured)] != measured:
        problems.append(f"{name}: paper rows are mixed among measured rows")
    problems += [f"{name}: measured row traces to {s!r}, not the run directory {run_path!r}"
                 for s in measured if s != run_path]
    if not measured:
        problems.append(f"{name}: no measured row")
    return problems


def check_run(run_dir: str | Path, outputs: bool = True) -> list[str]:
    """Problems with a run directory (empty list: consistent).  Checks every method's and seed's
    files exist, every ledger entry is booked exactly once (per-phase hours add up to the totals
    and to the whole ledger), units are in every numeric column, every measured row traces to
    this directory and, with ``outputs``, that the written tables and plots exist and the CSVs
    (table1_cost.csv, results.csv: a row and the ledger's hours per method and seed) match the
    ledger."""
    root = Path(run_dir)
    try:
        run = load_run(root)
    except Exception as exc:  # any unreadable run is a problem to report, not a crash
        return [f"cannot read {root}: {exc}"]
    problems = []
    for (method, seed), mrun in run.seed_runs.items():  # every seed, not only the first
        where = f"{method}/seed{seed}"
        for fname in ("metrics.jsonl", "train.jsonl", "model.json", "inference.json",
                      "scores.csv"):
            if not (mrun.path / fname).exists():
                problems.append(f"{where}/{fname} is missing")
        if not mrun.metrics:
            problems.append(f"{where}: no evaluation in metrics.jsonl")
        missing = [f"{k}_k1" for k in METRIC_COLUMNS if f"{k}_k1" not in final_metrics(mrun)]
        if mrun.metrics and missing:
            problems.append(f"{where}: final metrics lack {', '.join(missing)}")
    allowed = {*run.methods, "shared"}
    for i, e in enumerate(run.ledger):
        wall = e.get("wall_seconds")
        if e.get("phase") not in PHASES:
            problems.append(f"ledger line {i + 1}: unknown phase {e.get('phase')!r}")
        if e.get("method") not in allowed:
            problems.append(f"ledger line {i + 1}: method {e.get('method')!r} not in "
                            f"{sorted(allowed)}")
        if not isinstance(wall, (int, float)) or not math.isfinite(wall) or wall < 0:
            problems.append(f"ledger line {i + 1}: bad wall_seconds {wall!r}")
    if problems:
        return problems

    tables = make_tables([run])
    cost, _ = split(tables["table1_cost"])
    for row in cost.to_dict("records"):
        parts = row[DATA_H] + row[TENSORS_H] + row[TRAIN_H]
        if not _close(row[TOTAL_H], parts):
            problems.append(f"table1: {row['method']} total {row[TOTAL_H]:.6g} h != data "
                            f"creation + tensors + training {parts:.6g} h")
    # preparation booked inside the training loop's wall-clock is in the ledger twice
    ledger_h = _hours(sum(float(e["wall_seconds"]) for e in run.ledger
                          if e.get("included_in") != "train"))
    every = run.seconds(None)
    booked = _hours(sum(every[b] for b in BUCKETS))
    if not _close(ledger_h, booked) or every["unbooked"]:
        problems.append(f"table1: the ledger holds {ledger_h:.6g} h but the table books "
                        f"{booked:.6g} h (entries of a method not in run.json?)")
    for name, frame in tables.items():
        problems += _check_frame(name, frame, str(run.path))

    if outputs:
        for rel in OUTPUT_FILES:
            path = root / rel
            if not path.exists() or path.stat().st_size == 0:
                problems.append(f"{rel} is missing or empty")
        written = root / TABLES_DIR / "table1_cost.csv"
        if written.exists():
            on_disk, _ = split(pd.read_csv(written))
            if len(on_disk) != len(cost):
                problems.append(f"{written}: {len(on_disk)} measured rows, the ledger gives "
                                f"{len(cost)}")
            for col in (TOTAL_H, DATA_H, TRAIN_H):
                if col in on_disk and len(on_disk) == len(cost) and not all(
                        _close(a, b) for a, b in zip(on_disk[col], cost[col], strict=True)):
                    problems.append(f"{written}: {col} differs from the ledger")
        results = root / "results.csv"
        if results.exists() and results.stat().st_size:
            frame = pd.read_csv(results)
            for method, seed in run.seed_runs:
                own = frame[(frame["method"] == method) & (frame["seed"] == seed)]
                hours = _hours(run.total_seconds(method, seed=seed))
                if own.empty:
                    problems.append(f"results.csv: no row for {method} seed {seed}")
                elif not all(_close(h, hours) for h in own["wall_hours"]):
                    problems.append(f"results.csv: {method} seed {seed} wall_hours differ from "
                                    f"the ledger ({hours:.6g} h)")
    return problems
