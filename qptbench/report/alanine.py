"""The alanine-dipeptide map (the QPT paper's Fig. 4, for every route) and its region table.

Both are built from a run directory's ``results.csv`` as ``qptbench experiment alanine`` writes
it: one row per method (or control), seed, k and map point, with ``phi_deg``, ``psi_deg`` and
``region`` (``data.regions``: ``train``, ``band``, ``far``).

- ``alanine_map.{png,svg}``: per method, log10 of |ΔE| in eV (the paper's unit) at one k, the
  mean over seeds, on the (φ, ψ) grid; one colour scale for all panels, chemical accuracy
  (0.043 eV) marked on it; the training box outlined (solid) and the band around it (dashed).
- ``tables/alanine_regions.{md,tex,csv}``: ΔE, ΔH and Δε (occupied) at that k per method and
  region, "mean [95 % bootstrap interval]" over seeds and molecules (``evaluation.stats``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from qptbench.data.regions import REGIONS, Arc, Region
from qptbench.evaluation.stats import summarize
from qptbench.report.rundir import TABLES_DIR, display_name
from qptbench.report.tables import FORMATS, SUFFIX, render

MAP_NAME, MAP_SUFFIXES = "alanine_map", ("png", "svg")
REGION_TABLE = "alanine_regions"  # in tables/, one file per format
CHEMICAL_ACCURACY_EV = 0.043      # 1 kcal/mol, the line the paper draws
MEV_PER_EV = 1000.0
TABLE_METRICS = (("delta_e_mev", "ΔE", "meV"), ("delta_h_uha", "ΔH", "µHa"),
                 ("delta_eps_occ_uha", "Δε occupied", "µHa"))


def read_points(path: str | Path) -> list[dict[str, Any]]:
    """results.csv rows with numbers as floats (NaN where empty), k and molecule as ints."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        row: dict[str, Any] = dict(r)
        for key, value in r.items():
            if key in ("method", "region", "kind", "fixes_h"):
                continue
            if key == "seed":
                row[key] = "" if value == "" else int(value)
            elif key in ("dft_iterations", "molecule", "dataset_index"):
                row[key] = int(value)
            else:
                row[key] = float(value) if value not in ("", None) else math.nan
        out.append(row)
    return out


def _order(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[str]:
    """The run's methods in their order, then whatever else (the controls) as found."""
    found = list(dict.fromkeys(r["method"] for r in rows))
    return [m for m in methods if m in found] + [m for m in found if m not in methods]


def _cell(rows: Sequence[dict[str, Any]], key: str) -> str | None:
    groups: dict[Any, list[float]] = {}
    for r in rows:
        groups.setdefault(r["seed"], []).append(r[key])
    s = summarize(groups)
    if not math.isfinite(s["mean"]):
        return None  # n/a: an energy-trained H at k = 0 has no ΔH (the protocol's gauge rule)
    return f"{s['mean']:.3g} [{s['ci_low']:.3g}, {s['ci_high']:.3g}]"


def region_table(rows: Sequence[dict[str, Any]], methods: Sequence[str], k: int
                 ) -> pd.DataFrame:
    """One row per method (then control) and region: the map points it holds and the errors
    at k, "mean [95 % interval]" bootstrapped over seeds, then molecules."""
    table = []
    for method in _order(rows, methods):
        mine = [r for r in rows if r["method"] == method and r["dft_iterations"] == k]
        for region in REGIONS:
            part = [r for r in mine if r["region"] == region]
            seeds = {r["seed"] for r in part if r["seed"] != ""}
            row: dict[str, Any] = {"method": display_name(method), "region": region,
                                   "map points (count)": len({r["molecule"] for r in part}),
                                   "seeds (count)": len(seeds)}
            for key, label, unit in TABLE_METRICS:
                row[f"{label} k={k} ({unit})"] = _cell(part, key) if part else None
            table.append(row)
    return pd.DataFrame(table)


def table_title(region: Region, band_deg: float, k: int) -> str:
    return (f"Alanine dipeptide by region of the (φ, ψ) map, k = {k} DFT iterations after the "
            f"network: train = φ, ψ in {region}; band = within {band_deg:g}° outside it "
            "(wrapping); far = the rest. Mean [95 % bootstrap interval] over seeds and map points")


def write_region_table(run_dir: str | Path, frame: pd.DataFrame, title: str) -> list[Path]:
    folder = Path(run_dir) / TABLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in FORMATS:
        path = folder / f"{REGION_TABLE}.{SUFFIX[fmt]}"
        path.write_text(render(frame, fmt, title if fmt != "csv" else None))
        written.append(path)
    return written


def log_error_map(rows: Sequence[dict[str, Any]], method: str, k: int, grid: int
                  ) -> np.ndarray:
    """(ψ index, φ index) -> log10 of the seed-mean |ΔE| in eV; NaN where no point was scored
    (a reference whose PySCF SCF failed is not in the map)."""
    sums, counts = np.zeros((grid, grid)), np.zeros((grid, grid))
    cell = 360.0 / grid
    for r in rows:
        if r["method"] != method or r["dft_iterations"] != k or not math.isfinite(
                r["delta_e_mev"]):
            continue
        i, j = int(r["phi_deg"] % 360.0 // cell), int(r["psi_deg"] % 360.0 // cell)
        sums[j, i] += r["delta_e_mev"] / MEV_PER_EV
        counts[j, i] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sums / counts
        # |ΔE| = 0 exactly is below anything a log axis can show: clip to 1e-12 eV
        return np.where(counts > 0, np.log10(np.maximum(mean, 1e-12)), np.nan)


def _outline(ax, region: Region, band_deg: float) -> None:
    def grown(arc: Arc) -> Arc:
        return Arc((arc.start - band_deg) % 360.0, min(arc.width + 2 * band_deg, 360.0))

    boxes = [(region, dict(fill=False, edgecolor="black", linewidth=2.0))]
    if band_deg > 0:
        boxes.append((Region(grown(region.phi), grown(region.psi)),
                      dict(fill=False, edgecolor="black", linewidth=1.0, linestyle="--")))
    for box, style in boxes:
        for x0, x1 in box.phi.pieces():
            for y0, y1 in box.psi.pieces():
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, **style))


def map_figure(rows: Sequence[dict[str, Any]], methods: Sequence[str], grid: int,
               region: Region, k: int, band_deg: float, subtitle: str = "") -> Figure:
    """Side-by-side heatmaps of log10 |ΔE| (eV), one per method, one shared colour scale."""
    maps = {m: log_error_map(rows, m, k, grid) for m in methods}
    finite = np.concatenate([z[np.isfinite(z)] for z in maps.values()] + [np.zeros(0)])
    line = math.log10(CHEMICAL_ACCURACY_EV)
    # the colour bar always spans chemical accuracy, so its mark is on the bar
    low = min(float(finite.min()) if finite.size else line, line) - 0.25
    high = max(float(finite.max()) if finite.size else line, line) + 0.25
    fig = Figure(figsize=(4.0 * len(methods) + 1.4, 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(methods), sharey=True))
    edges = np.linspace(0.0, 360.0, grid + 1)
    mesh = None
    for ax, method in zip(axes, methods, strict=True):
        seeds = {r["seed"] for r in rows if r["method"] == method}
        mesh = ax.pcolormesh(edges, edges, np.ma.masked_invalid(maps[method]), cmap="viridis",
                             vmin=low, vmax=high)
        _outline(ax, region, band_deg)
        ax.set(xlim=(0, 360), ylim=(0, 360), xticks=range(0, 361, 90),
               yticks=range(0, 361, 90), xlabel="φ (degrees)", aspect="equal",
               title=f"{display_name(method)} ({len(seeds)} seed{'s' * (len(seeds) != 1)})")
    axes[0].set_ylabel("ψ (degrees)")
    bar = fig.colorbar(mesh, ax=list(axes), shrink=0.9, label=f"log10 |ΔE| (eV), k = {k}")
    bar.ax.axhline(line, color="white", linewidth=2.0)
    bar.ax.axhline(line, color="red", linewidth=1.0)
    bar.ax.text(1.6, line, "chemical accuracy\n0.043 eV", transform=bar.ax.get_yaxis_transform(),
                va="center", fontsize=7, color="red")
    fig.suptitle(f"alanine dipeptide: |E − E_PySCF| over the (φ, ψ) map; solid: training box "
                 f"{region}, dashed: ±{band_deg:g}° band" + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=9)
    return fig


def write_map(run_dir: str | Path, fig: Figure) -> list[Path]:
    paths = []
    for suffix in MAP_SUFFIXES:
        path = Path(run_dir) / f"{MAP_NAME}.{suffix}"
        fig.savefig(path, dpi=120)
        paths.append(path)
    return paths
