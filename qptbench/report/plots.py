"""Figures of a run directory, PNG + SVG (matplotlib lives only here).

- ``error_vs_wallclock``: held-out ΔE (k = 3) and ΔH (k = 1) of the shared evaluator against the
  wall-clock hours each route has spent of its own (data creation + tensor preparation +
  training, from the ledger), one line per seed, log-log; data creation is shaded, the zero
  model (scored by the same evaluator, ``results.csv``) is a horizontal line.
- ``training_curves``: like the paper's Fig. 5, over optimiser steps: |ΔE| at k = 1 and 3 (meV),
  ΔH at k = 1 (µHa), Δε at k = 1 (µHa, all orbitals solid, occupied dashed).

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg/SVG canvases, so
importing this module never changes pyplot's global backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from qptbench.report.rundir import (
    PLOT_NAMES,
    PLOT_SUFFIXES,
    PLOTS_DIR,
    RunDir,
    display_name,
    finite,
    load_run,
)

COLORS = {"qpt": "tab:blue", "qhnet": "tab:orange", "qpt:energy": "tab:blue",
          "qhnet:labels": "tab:orange"}
ZERO_COLOR = "0.4"


def _color(method: str, i: int) -> str:
    return COLORS.get(method, f"C{(i + 2) % 10}")


def _save(fig: Figure, out_dir: Path, name: str,
          suffixes: Sequence[str] = PLOT_SUFFIXES) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in suffixes:
        path = out_dir / f"{name}.{suffix}"
        fig.savefig(path, dpi=120)  # constrained layout already fits the labels
        paths.append(path)
    return paths


def _series(rows: list[dict], key: str, x_of) -> tuple[list[float], list[float]]:
    """(x, y) of rows where both are finite and y > 0 (log axes)."""
    xs, ys = [], []
    for row in rows:
        x, y = x_of(row), row.get(key)
        if finite(x) and finite(y) and x > 0 and y > 0:
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def _empty_note(ax, text: str = "no evaluations recorded") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _control(run: RunDir, key: str, k: int, name: str = "zero") -> float | None:
    """A control's mean from results.csv (read with the csv module: no pandas here): over its
    rows, one per k in the harness's file, one per k and molecule in an experiment's."""
    import csv

    path = run.path / "results.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        values = [float(row[key]) for row in csv.DictReader(f)
                  if row["method"] == name and int(row["dft_iterations"]) == k and row.get(key)]
    return sum(values) / len(values) if values else None


PANELS = (("delta_e_mev", 3, "held-out ΔE, k = 3 (meV)"),
          ("delta_h_uha", 1, "held-out ΔH, k = 1 (µHa)"))


def error_vs_wallclock_figure(run: RunDir) -> Figure:
    """Held-out ΔE and ΔH vs the route's own wall-clock hours, log-log, one line per seed."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    plotted, xs_all = [False, False], []
    for i, method in enumerate(run.methods):
        for seed in run.seeds:
            mrun = run.seed_runs.get((method, seed))
            if mrun is None:
                continue
            hours = run.hours_at_step(method, seed)
            xs_all += [h for h in hours.values() if h > 0]
            for j, (key, k, _) in enumerate(PANELS):
                x, y = _series(mrun.metrics, f"{key}_k{k}",
                               lambda r, h=hours: h.get(int(r["step"])))
                if x:
                    label = display_name(method) if seed == run.seeds[0] else None
                    axes[j].plot(x, y, "o-", color=_color(method, i), label=label, ms=4,
                                 alpha=1.0 if seed == run.seeds[0] else 0.6)
                    plotted[j] = True
        dc = run.pre_training_hours(method)
        if dc > 0:
            xs_all.append(dc)
    left = min(xs_all) / 3 if xs_all else 1e-3
    for i, method in enumerate(run.methods):
        dc = run.pre_training_hours(method)
        if dc > 0:
            for ax in axes:
                ax.axvspan(left, dc, color=_color(method, i), alpha=0.15,
                           label=f"{display_name(method)} data creation")
    for j, (key, k, label) in enumerate(PANELS):
        ax = axes[j]
        zero = _control(run, key, k)
        if finite(zero) and zero > 0:
            ax.axhline(zero, color=ZERO_COLOR, ls="--", lw=1, label="zero model (same k)")
            plotted[j] = True
        if plotted[j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            _empty_note(ax)
        ax.set_xlim(left=left)
        ax.set_xlabel("wall-clock hours of the route's own costs (h)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{run.molecule}: held-out error vs wall-clock, one evaluator "
                 f"({run.info.get('preset', '?')} preset; {run.path})", fontsize=10)
    return fig


def training_curves_figure(run: RunDir) -> Figure:
    """Like the paper's Fig. 5 over steps: |ΔE| (k = 1, 3), ΔH and Δε (k = 1), first seed."""
    fig = Figure(figsize=(15, 3.8), layout="constrained")
    axes = fig.subplots(1, 4)
    step = lambda r: r.get("step")  # noqa: E731
    specs = ((axes[0], "delta_e_mev_k1", "o-", ""), (axes[1], "delta_e_mev_k3", "o-", ""),
             (axes[2], "delta_h_uha_k1", "o-", ""),
             (axes[3], "delta_eps_all_uha_k1", "o-", " (all)"),
             (axes[3], "delta_eps_occ_uha_k1", "s--", " (occupied)"))
    for i, (method, mrun) in enumerate(run.methods.items()):
        color, name = _color(method, i), display_name(method)
        rows = [r for r in mrun.metrics if finite(r.get("step"))]
        for ax, key, style, suffix in specs:
            xs, ys = _series(rows, key, step)
            if xs:
                ax.plot(xs, ys, style, color=color, label=name + suffix, ms=3)
    for ax, key, k in ((axes[0], "delta_e_mev", 1), (axes[1], "delta_e_mev", 3),
                       (axes[2], "delta_h_uha", 1), (axes[3], "delta_eps_all_uha", 1)):
        zero = _control(run, key, k)
        if finite(zero) and zero > 0:
            ax.axhline(zero, color=ZERO_COLOR, ls=":", lw=1, label="zero model")
    titles = ("|ΔE|, k = 1 (meV)", "|ΔE|, k = 3 (meV)", "ΔH, k = 1 (µHa)", "Δε, k = 1 (µHa)")
    for ax, title in zip(axes, titles, strict=True):
        if ax.lines:
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        else:
            _empty_note(ax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimiser step (count)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{run.molecule}: held-out error during training, first seed ({run.path})",
                 fontsize=10)
    return fig


FIGURES = {"error_vs_wallclock": error_vs_wallclock_figure,
           "training_curves": training_curves_figure}


def make_plots(run_dir: str | Path | RunDir, out_dir: str | Path | None = None) -> list[Path]:
    """Both figures of one run, PNG + SVG, into ``out_dir`` (default RUN_DIR/plots)."""
    run = run_dir if isinstance(run_dir, RunDir) else load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / PLOTS_DIR
    assert tuple(FIGURES) == PLOT_NAMES  # check_run looks for exactly these files
    return [path for name, build in FIGURES.items() for path in _save(build(run), out, name)]
