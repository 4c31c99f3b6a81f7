"""The training-signal × architecture grid of a run (methods named ``architecture:signal``).

- ``tables/grid.{md,csv}``: one row per architecture and signal: what it trained on,
  the route's wall-clock (data creation + tensor preparation + training, mean over seeds) and
  ΔE, ΔH, Δε (occupied) at the protocol's k, "mean [95 % interval]" over seeds and molecules
  (the shared evaluator's ``scores.csv``); then ΔE at k = 1 pivoted architectures × signals.
- ``plots/grid_error_vs_wallclock.{png,svg}``: held-out ΔE and ΔH at k = 1 against the route's
  own wall-clock, one curve per method (mean over seeds at each evaluation point), colour =
  architecture, line style = signal.

Written by ``write_grid`` when a run has at least two ``architecture:signal`` methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from qptbench.report.rundir import PLOTS_DIR, SECONDS_PER_HOUR, TABLES_DIR, RunDir, finite
from qptbench.report.tables import _interval, render

GRID_K = 1  # one Fock build after the network: the same for every route (README explains)
COLUMNS = (("delta_e_mev", 1, "ΔE k=1 (meV)"), ("delta_e_mev", 3, "ΔE k=3 (meV)"),
           ("delta_h_uha", 1, "ΔH k=1 (µHa)"), ("delta_eps_occ_uha", 1, "Δε occ k=1 (µHa)"))
TRAINED_ON = {"labels": "PySCF labels", "energy": "DFT energy (no labels)",
              "sc": "self-consistency (no labels)"}
ARCH_COLORS = {"qpt": "tab:blue", "qhnet": "tab:orange"}
SIGNAL_STYLES = {"energy": "-", "sc": "--", "labels": ":"}


def grid_methods(run: RunDir) -> list[str]:
    return [m for m in run.methods if ":" in m]


def grid_table(run: RunDir) -> pd.DataFrame:
    """One row per ``architecture:signal`` method of the run (module docstring)."""
    scores = pd.read_csv(run.path / "scores.csv")
    rows = []
    for method in grid_methods(run):
        arch, signal = method.split(":", 1)
        mine = scores[scores["method"] == method]
        hours = [run.total_seconds(method, seed=s) / SECONDS_PER_HOUR for s in run.seeds]
        row: dict[str, Any] = {"architecture": arch, "signal": signal,
                               "trained on": TRAINED_ON.get(signal, signal),
                               "route wall-clock (h)": float(np.mean(hours)),
                               "seeds (count)": int(mine["seed"].nunique())}
        for key, k, label in COLUMNS:
            row[label] = _interval(mine[mine["dft_iterations"] == k], key)
        rows.append(row)
    return pd.DataFrame(rows)


def grid_pivot(table: pd.DataFrame, column: str = "ΔE k=1 (meV)") -> pd.DataFrame:
    """``column`` of the grid table as architectures (rows) × signals (columns)."""
    if table.empty:
        return table
    pivot = table.pivot(index="architecture", columns="signal", values=column)
    pivot = pivot.reindex(list(dict.fromkeys(table["architecture"])))  # the run's order
    order = [s for s in TRAINED_ON if s in pivot.columns]
    return pivot[order].reset_index().rename_axis(columns=None)


def _curve(run: RunDir, method: str, key: str) -> tuple[list[float], list[float]]:
    """Mean over seeds of (route hours, metric) at each evaluation point (the i-th evaluation
    of every seed is at the same fraction of the budget)."""
    per_seed = []
    for seed in run.seeds:
        mrun = run.seed_runs.get((method, seed))
        if mrun is None:
            continue
        hours = run.hours_at_step(method, seed)
        points = [(hours.get(int(r["step"])), r.get(key)) for r in mrun.metrics]
        per_seed.append([(h, y) for h, y in points if finite(h) and finite(y) and y > 0])
    n = min((len(p) for p in per_seed), default=0)
    xs = [float(np.mean([p[i][0] for p in per_seed])) for i in range(n)]
    ys = [float(np.mean([p[i][1] for p in per_seed])) for i in range(n)]
    return xs, ys


def grid_figure(run: RunDir) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (key, label) in zip(axes, (("delta_e_mev_k1", "held-out ΔE, k = 1 (meV)"),
                                       ("delta_h_uha_k1", "held-out ΔH, k = 1 (µHa)")),
                                strict=True):
        for method in grid_methods(run):
            arch, signal = method.split(":", 1)
            x, y = _curve(run, method, key)
            if x:
                ax.plot(x, y, marker="o", ms=4, ls=SIGNAL_STYLES.get(signal, "-."),
                        color=ARCH_COLORS.get(arch, "tab:green"), label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall-clock hours of the route's own costs (h)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{run.molecule}: training signal × architecture, one evaluator, mean over "
                 f"{len(run.seeds)} seed(s) ({run.info.get('preset', '?')} preset)", fontsize=10)
    return fig


def write_grid(run: RunDir) -> list[Path]:
    """``tables/grid.{md,csv}`` and ``plots/grid_error_vs_wallclock.{png,svg}``; nothing when
    the run has fewer than two ``architecture:signal`` methods."""
    if len(grid_methods(run)) < 2 or not (run.path / "scores.csv").exists():
        return []
    table = grid_table(run)
    tables_dir, plots_dir = run.path / TABLES_DIR, run.path / PLOTS_DIR
    tables_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    md = (tables_dir / "grid").with_suffix(".md")
    md.write_text(render(table, "markdown", "Training signal × architecture: mean [95 % "
                         "bootstrap interval] over molecules and seeds, one evaluator")
                  + "\n" + render(grid_pivot(table), "markdown",
                                  "ΔE k=1 (meV): architectures × signals"))
    csv = tables_dir / "grid.csv"
    table.to_csv(csv, index=False)
    fig, written = grid_figure(run), [md, csv]
    for suffix in ("png", "svg"):
        path = plots_dir / f"grid_error_vs_wallclock.{suffix}"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written
