"""The paper's three tables, measured from run directories (pandas + tabulate, as everywhere
in ``qptbench.report``).

Every function takes run directories and returns one DataFrame: measured rows first (``source`` =
the run directory), then, sorted apart, the paper's rows for the same molecules (``source`` =
"reported (paper)").  Units are in every numeric column name.  ``render`` prints the two blocks
as separate tables so they are never read as one comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from qptbench.report import paper_rows
from qptbench.report.rundir import (
    SECONDS_PER_HOUR,
    RunDir,
    display_name,
    load_run,
)

FORMATS = ("markdown", "latex", "csv")
SUFFIX = {"markdown": "md", "latex": "tex", "csv": "csv"}
TEXT_COLUMNS = ("source", "molecule", "method", "seed", "level of theory", "hardware", "note")
REPORTED = paper_rows.REPORTED

# Table 1 columns, kept as names because check_run recomputes them from the ledger.
DATA_H, TENSORS_H, TRAIN_H, TOTAL_H = ("data creation (h)", "tensor preparation (h)",
                                       "training (h)", "total (h)")
CPU_H = "total CPU time, all cores (h)"
EVAL_H, REF_H, SAMPLE_H = ("evaluation (h)", "validation labels, shared (h)",
                           "sampling, shared (h)")
METRIC_COLUMNS = {
    "delta_e_mev": "ΔE (meV)",
    "delta_h_uha": "ΔH (µHa)",
    "delta_eps_all_uha": "Δε all orbitals (µHa)",
    "delta_eps_occ_uha": "Δε occupied (µHa)",
    "psi_occ": "ψ occupied (cos)",
}
K_COLUMN = "k (DFT iterations after the network)"
FLOOR = "energy floor (meV)"
SCF_RATIO = "SCF cycles vs minao, effective (ratio)"
ROUTE_H = "route wall-clock (h)"
PSEC = "(s/molecule)"


def _runs(run_dirs: Sequence[str | Path | RunDir]) -> list[RunDir]:
    return [r if isinstance(r, RunDir) else load_run(r) for r in run_dirs]


def _hours(seconds: float) -> float:
    return seconds / SECONDS_PER_HOUR


def _last_step(run: RunDir, method: str, seed: int | None = None) -> int | None:
    steps = [int(e["step"]) for e in run.ledger
             if e.get("method") == method and e.get("phase") == "train" and "step" in e
             and (seed is None or e.get("seed") is None or int(e["seed"]) == seed)]
    return max(steps) if steps else None


def level_of_theory(run: RunDir) -> str:
    lot = run.info.get("level_of_theory") or {}
    if not lot:
        return "?"
    text = f"{lot.get('xc', '?')}/{lot.get('basis', '?')}, grid {lot.get('grid_level', '?')}"
    if lot.get("eri_threshold"):
        text += f", ERI > {lot['eri_threshold']:g}"
    if lot.get("eri") == "df":  # a level of its own (~1e-5 Ha from exact): never unlabelled
        text += f", density fitting ({lot.get('auxbasis', '?')})"
    return text


def hardware(run: RunDir) -> str:
    env = run.info.get("environment") or {}
    cpu = f"{env.get('processor', '?')}, {env.get('cpu_count', '?')} cores, " \
          f"{env.get('torch_threads', '?')} torch threads"
    device = env.get("gpu") or env.get("device", "cpu")
    return f"{device}; {cpu}" if device != "cpu" else f"cpu: {cpu}"


def _paper_block(rows: list[dict[str, Any]], molecules: set[str], columns: dict[str, str],
                 table: int) -> pd.DataFrame:
    keep = [r for r in rows if not molecules or r["molecule"] in molecules]
    out = pd.DataFrame([{"source": REPORTED, "molecule": r["molecule"],
                         **({"method": r["method"]} if "method" in r else {}),
                         **{name: r[key] for key, name in columns.items()}} for r in keep])
    if not out.empty:
        out["note"] = paper_rows.CITATION.format(n=table)
    return out


def _join(measured: list[dict[str, Any]], paper: pd.DataFrame | None) -> pd.DataFrame:
    frame = pd.DataFrame(measured)
    if paper is None or paper.empty:
        return frame.reset_index(drop=True)
    return pd.concat([frame, paper], ignore_index=True)


def cost_table(run_dirs: Sequence[str | Path | RunDir], paper: bool = True) -> pd.DataFrame:
    """Table 1 form: wall-clock hours per method and molecule, from the ledger alone."""
    runs, rows = _runs(run_dirs), []
    for run in runs:
        shared = run.seconds(None)
        for method in run.methods:
            for seed in run.seeds:
                s = run.seconds(method, seed=seed)
                rows.append({
                    "source": str(run.path), "molecule": run.molecule,
                    "method": display_name(method), "seed": str(seed),
                    DATA_H: _hours(s["data_creation"]), TENSORS_H: _hours(s["tensors"]),
                    TRAIN_H: _hours(s["training"]),
                    TOTAL_H: _hours(run.total_seconds(method, seed=seed)),
                    CPU_H: _hours(run.total_seconds(method, "cpu", seed)),
                    EVAL_H: _hours(s["evaluation"]), REF_H: _hours(shared["reference"]),
                    SAMPLE_H: _hours(shared["sampling"]),
                    "steps (count)": _last_step(run, method, seed),
                })
    block = None
    if paper:
        block = _paper_block(paper_rows.TABLE1, {r.molecule for r in runs},
                             {"data_creation_h": DATA_H, "training_h": TRAIN_H,
                              "total_h": TOTAL_H}, 1)
    return _join(rows, block)


def _interval(part: pd.DataFrame, key: str) -> str | None:
    """"mean [95 % interval]" of one metric over a block of scores.csv (one method, one k),
    bootstrapped over seeds (controls have none) and molecules; None when n/a."""
    from qptbench.evaluation.stats import summarize

    stats = summarize({s: g[key].to_numpy() for s, g in part.groupby(part["seed"].fillna(-1))})
    if not math.isfinite(stats["mean"]):
        return None
    return f"{stats['mean']:.3g} [{stats['ci_low']:.3g}, {stats['ci_high']:.3g}]"


def accuracy_table(run_dirs: Sequence[str | Path | RunDir], paper: bool = True) -> pd.DataFrame:
    """Table 2 form: every method and control scored by the one evaluator, one row per method
    and k (DFT iterations after the network).  Cells are "mean [95 % bootstrap interval]" over
    molecules and seeds (``scores.csv``); "–" where a metric is n/a (energy-trained H at k = 0)."""
    runs, rows = _runs(run_dirs), []
    for run in runs:
        path = run.path / "scores.csv"
        if not path.exists():
            continue
        scores = pd.read_csv(path)
        results = pd.read_csv(run.path / "results.csv") if (
            run.path / "results.csv").exists() else pd.DataFrame()
        order = [*run.methods, *[m for m in scores["method"].unique() if m not in run.methods]]
        for method in order:
            for k in sorted(scores.loc[scores["method"] == method, "dft_iterations"].unique()):
                part = scores[(scores["method"] == method) & (scores["dft_iterations"] == k)]
                row: dict[str, Any] = {"source": str(run.path), "molecule": run.molecule,
                                       "method": display_name(method), K_COLUMN: int(k)}
                for key, name in METRIC_COLUMNS.items():
                    row[name] = _interval(part, key)
                row[FLOOR] = float(part["floor_mev"].mean())
                scf = part.dropna(subset=["scf_effective_cycles"])
                row[SCF_RATIO] = (float(scf["scf_effective_cycles"].mean()
                                        / scf["scf_cycles_minao"].mean()) if len(scf) else None)
                if not results.empty and "wall_hours" in results:
                    own = results[(results["method"] == method)
                                  & (results["dft_iterations"] == k)]["wall_hours"]
                    row[ROUTE_H] = float(own.mean()) if own.notna().any() else None
                row["seeds (count)"] = (part["seed"].nunique() if method in run.methods
                                        else 0)
                row["molecules (count)"] = int(part["molecule"].nunique())
                rows.append(row)
    block = None
    if paper:
        block = _paper_block(paper_rows.TABLE2, {r.molecule for r in runs},
                             {"delta_e_mev": "ΔE (meV)", "delta_h_uha": "ΔH (µHa)",
                              "delta_eps_reported_uha": "Δε as reported (µHa)",
                              "parameters": "parameters (count)", "xc": "level of theory"}, 2)
        if not block.empty:
            block["level of theory"] = "def2-SVP/" + block["level of theory"]
    frame = _join(rows, block)
    for col in ("seeds (count)", "molecules (count)", "parameters (count)", K_COLUMN):
        if col in frame:
            frame[col] = frame[col].astype("Int64")
    return frame


BY_K = (("delta_e_mev", "ΔE", "meV", (1, 3)), ("delta_h_uha", "ΔH", "µHa", (0, 1, 3)),
        ("delta_eps_occ_uha", "Δε occupied", "µHa", (1, 3)))


def protocol_table(run_dirs: Sequence[str | Path | RunDir], paper: bool = False
                   ) -> pd.DataFrame:
    """The comparison at a glance: one row per method and control, the k of every number in its
    column header, cells "mean [95 % bootstrap interval]" over molecules and seeds, and each
    route's wall-clock hours (data creation + tensor preparation + training, mean over seeds)."""
    rows = []
    for run in _runs(run_dirs):
        if not (run.path / "scores.csv").exists():
            continue
        scores = pd.read_csv(run.path / "scores.csv")
        names = [*run.methods, *[m for m in scores["method"].unique() if m not in run.methods]]
        for method in names:
            mine = scores[scores["method"] == method]
            row: dict[str, Any] = {"source": str(run.path), "molecule": run.molecule,
                                   "method": display_name(method)}
            hours = [run.total_seconds(method, seed=s) / SECONDS_PER_HOUR for s in run.seeds
                     ] if method in run.methods else []
            row[ROUTE_H] = sum(hours) / len(hours) if hours else None
            for key, label, unit, ks in BY_K:
                for k in ks:
                    row[f"{label} k={k} ({unit})"] = _interval(
                        mine[mine["dft_iterations"] == k], key)
            scf = mine[mine["dft_iterations"] == 1].dropna(subset=["scf_effective_cycles"])
            row["SCF cycles k=1 vs minao (ratio)"] = (
                float(scf["scf_effective_cycles"].mean() / scf["scf_cycles_minao"].mean())
                if len(scf) else None)
            rows.append(row)
    return pd.DataFrame(rows)


def inference_table(run_dirs: Sequence[str | Path | RunDir], paper: bool = True) -> pd.DataFrame:
    """Table 3 form: seconds per molecule at inference, one row per run (molecule)."""
    runs, rows = _runs(run_dirs), []
    for run in runs:
        row: dict[str, Any] = {"source": str(run.path), "molecule": run.molecule}
        pyscf, counts = None, []
        for method, mrun in run.methods.items():
            inf = mrun.inference or {}
            if pyscf is None and inf.get("pyscf_scf_seconds") is not None:
                pyscf = inf["pyscf_scf_seconds"]
            if inf.get("n") is not None:
                counts.append(int(inf["n"]))
            net = inf.get("network_seconds")
            if "dft_seconds" in inf:  # a route that runs DFT iterations on prepared tensors
                name = display_name(method)
                dft, tens = inf.get("dft_seconds"), inf.get("tensor_seconds")
                both = None if net is None or dft is None else net + dft
                row[f"{name} network + DFT iterations {PSEC}"] = both
                row[f"{name} incl. tensor preparation {PSEC}"] = (
                    None if both is None or tens is None else both + tens)
            else:
                row[f"{display_name(method)} network {PSEC}"] = net
        row = {"source": row.pop("source"), "molecule": row.pop("molecule"),
               f"PySCF SCF {PSEC}": pyscf, **row,
               "molecules timed (count)": min(counts) if counts else None}
        rows.append(row)
    block = None
    if paper:
        block = _paper_block(paper_rows.TABLE3, {r.molecule for r in runs}, {
            "pyscf_scf_s": f"PySCF SCF {PSEC}",
            "qpt_network_dft_s": f"QPT network + DFT iterations {PSEC}",
            "qpt_with_tensors_s": f"QPT incl. tensor preparation {PSEC}",
            "qhnet_network_s": f"QHNet network {PSEC}",
            "schnorb_network_s": f"SchNOrb network {PSEC}",
            "phisnet_network_s": f"PhiSNet network {PSEC}",
            "schnorb_dft_s": f"SchNOrb's DFT labelling {PSEC}",
            "phisnet_dft_s": f"PhiSNet's DFT labelling {PSEC}",
            "qhnet_dft_s": f"QHNet's DFT labelling {PSEC}"}, 3)
    frame = _join(rows, block)
    if "molecules timed (count)" in frame:
        frame["molecules timed (count)"] = frame["molecules timed (count)"].astype("Int64")
    return frame


TABLES: dict[str, Callable[..., pd.DataFrame]] = {
    "table1_cost": cost_table,
    "table2_accuracy": accuracy_table,
    "table3_inference": inference_table,
    "table4_protocol": protocol_table,
}
TITLES = {
    "table1_cost": "Table 1: data creation and training, wall-clock hours",
    "table2_accuracy": "Table 2: error vs PySCF on held-out molecules, one evaluator for every "
                       "row: mean [95 % bootstrap interval] over molecules and seeds",
    "table3_inference": "Table 3: inference, seconds per molecule",
    "table4_protocol": "Table 4: every method and control through one evaluator, by k (DFT "
                       "iterations after the network): mean [95 % bootstrap interval]",
}


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(measured rows, paper rows), each without the columns it leaves empty."""
    paper = frame["source"] == REPORTED if "source" in frame else pd.Series(False, frame.index)
    blocks = (frame[~paper], frame[paper])
    return tuple(b.dropna(axis=1, how="all").reset_index(drop=True) for b in blocks)


def _cell(x: Any, digits: int) -> Any:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return None
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return x


def _tabulate(frame: pd.DataFrame, tablefmt: str, digits: int) -> str:
    """Measured numbers to 4 significant digits (they are noisy); reported ones as printed."""
    cells = [[_cell(x, digits) for x in row] for row in frame.itertuples(index=False)]
    return tabulate(cells, headers=list(frame.columns), tablefmt=tablefmt, missingval="–",
                    disable_numparse=True)


def render(frame: pd.DataFrame, fmt: str = "markdown", title: str | None = None) -> str:
    """Text of one table.  markdown/latex: the measured block, then the paper block under its
    own heading; csv: one file, measured rows first, the ``source`` column tells them apart."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return frame.to_csv(index=False)
    tablefmt = "github" if fmt == "markdown" else "latex_booktabs"
    measured, reported = split(frame)
    parts = []
    heading = (lambda t: f"**{t}**") if fmt == "markdown" else (lambda t: f"% {t}")
    if title:
        parts.append(heading(title))
    if not measured.empty:
        parts.append(_tabulate(measured, tablefmt, 4))
    if not reported.empty:
        parts.append(heading("Reported in the paper (not measured here; other hardware, "
                             "other level of theory for the baselines)"))
        parts.append(_tabulate(reported, tablefmt, 6))
    return "\n\n".join(parts) + "\n"


def make_tables(run_dirs: Sequence[str | Path | RunDir],
                paper: bool = True) -> dict[str, pd.DataFrame]:
    runs = _runs(run_dirs)
    return {name: fn(runs, paper=paper) for name, fn in TABLES.items()}


def write_tables(run_dirs: Sequence[str | Path | RunDir], out_dir: str | Path,
                 formats: Sequence[str] = FORMATS, paper: bool = True) -> list[Path]:
    """Write every table in every format to ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in make_tables(run_dirs, paper=paper).items():
        for fmt in formats:
            path = out / f"{name}.{SUFFIX[fmt]}"
            path.write_text(render(frame, fmt, TITLES[name] if fmt != "csv" else None))
            written.append(path)
    return written
