"""Figures of a run directory, PNG + SVG (matplotlib lives only here).

- ``error_vs_wallclock``: validation ΔE and ΔH against the wall-clock hours each method has
  spent of its own (data creation + tensor preparation + training, from the ledger), log-log;
  data creation is shaded, the QPT zero model (A = 0) is a horizontal line.
- ``training_curves``: like the paper's Fig. 5, over optimiser steps: E_pred − E_ref (meV),
  |ΔE| (meV), ΔH (µHa), Δε (µHa, all orbitals solid, occupied dashed).

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg/SVG canvases, so
importing this module never changes pyplot's global backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from qptbench.rundir import (
    PLOT_NAMES,
    PLOT_SUFFIXES,
    PLOTS_DIR,
    RunDir,
    display_name,
    final_metrics,
    finite,
    load_run,
)

COLORS = {"qpt": "tab:blue", "qhnet": "tab:orange"}
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


def error_vs_wallclock_figure(run: RunDir) -> Figure:
    """Validation ΔE (meV) and ΔH (µHa) vs the method's own wall-clock hours, log-log."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (("delta_e_mev", "validation ΔE (meV)"), ("delta_h_uha", "validation ΔH (µHa)"))
    plotted, xs_all = [False, False], []
    for i, (method, mrun) in enumerate(run.methods.items()):
        hours = run.hours_at_step(method)
        xs_all += [h for h in hours.values() if h > 0]
        dc = run.pre_training_hours(method)
        if dc > 0:
            xs_all.append(dc)
        for j, (key, _) in enumerate(panels):
            x, y = _series(mrun.metrics, key, lambda r, h=hours: h.get(int(r["step"])))
            if x:
                axes[j].plot(x, y, "o-", color=_color(method, i), label=display_name(method),
                             ms=4)
                plotted[j] = True
    left = min(xs_all) / 3 if xs_all else 1e-3
    for i, method in enumerate(run.methods):
        dc = run.pre_training_hours(method)
        if dc > 0:
            for ax in axes:
                ax.axvspan(left, dc, color=_color(method, i), alpha=0.15,
                           label=f"{display_name(method)} data creation")
    qpt = final_metrics(run.methods["qpt"]) if "qpt" in run.methods else {}
    for j, (key, label) in enumerate(panels):
        ax = axes[j]
        zero = qpt.get(f"zero_{key}")
        if finite(zero) and zero > 0:
            ax.axhline(zero, color=ZERO_COLOR, ls="--", lw=1, label="QPT zero model (A = 0)")
            plotted[j] = True
        if plotted[j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            _empty_note(ax)
        ax.set_xlim(left=left)
        ax.set_xlabel("wall-clock hours of the method's own costs (h)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{run.molecule}: validation error vs wall-clock "
                 f"({run.info.get('preset', '?')} preset; {run.path})", fontsize=10)
    return fig


def training_curves_figure(run: RunDir) -> Figure:
    """The paper's Fig. 5 over steps: E_pred − E_ref, |ΔE|, ΔH, Δε (validation means)."""
    fig = Figure(figsize=(15, 3.8), layout="constrained")
    axes = fig.subplots(1, 4)
    step = lambda r: r.get("step")  # noqa: E731
    signed = False
    for i, (method, mrun) in enumerate(run.methods.items()):
        color, name = _color(method, i), display_name(method)
        rows = [r for r in mrun.metrics if finite(r.get("step"))]
        x = [r["step"] for r in rows if finite(r.get("e_pred_minus_ref_mev"))]
        if x:
            y = [r["e_pred_minus_ref_mev"] for r in rows if finite(r.get("e_pred_minus_ref_mev"))]
            axes[0].plot(x, y, "o-", color=color, label=name, ms=3)
            signed = True
        for ax, key, style in ((axes[1], "delta_e_mev", "o-"), (axes[2], "delta_h_uha", "o-"),
                               (axes[3], "delta_eps_all_uha", "o-"),
                               (axes[3], "delta_eps_occ_uha", "s--")):
            xs, ys = _series(rows, key, step)
            label = name if key != "delta_eps_occ_uha" else f"{name} (occupied)"
            if key == "delta_eps_all_uha":
                label = f"{name} (all)"
            if xs:
                ax.plot(xs, ys, style, color=color, label=label, ms=3)
    qpt = final_metrics(run.methods["qpt"]) if "qpt" in run.methods else {}
    zero_keys = (("zero_e_pred_minus_ref_mev", 0), ("zero_delta_e_mev", 1),
                 ("zero_delta_h_uha", 2), ("zero_delta_eps_all_uha", 3))
    for key, j in zero_keys:
        if finite(qpt.get(key)) and (j == 0 or qpt[key] > 0):
            axes[j].axhline(qpt[key], color=ZERO_COLOR, ls=":", lw=1,
                            label="QPT zero model (A = 0)")
    axes[0].axhline(0.0, color="k", lw=1, label="E_ref (PySCF)")
    axes[0].set_yscale("symlog", linthresh=1.0)
    if not signed:
        _empty_note(axes[0], "E_pred − E_ref not recorded")
    titles = ("E_pred − E_ref (meV)", "|ΔE| (meV)", "ΔH (µHa)", "Δε (µHa)")
    for j, (ax, title) in enumerate(zip(axes, titles, strict=True)):
        if j > 0:
            if ax.lines:
                ax.set_yscale("log")
            else:
                _empty_note(ax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimiser step (count)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(f"{run.molecule}: validation during training ({run.path})", fontsize=10)
    return fig


FIGURES = {"error_vs_wallclock": error_vs_wallclock_figure,
           "training_curves": training_curves_figure}


def make_plots(run_dir: str | Path | RunDir, out_dir: str | Path | None = None) -> list[Path]:
    """Both figures of one run, PNG + SVG, into ``out_dir`` (default RUN_DIR/plots)."""
    run = run_dir if isinstance(run_dir, RunDir) else load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / PLOTS_DIR
    assert tuple(FIGURES) == PLOT_NAMES  # check_run looks for exactly these files
    return [path for name, build in FIGURES.items() for path in _save(build(run), out, name)]
