"""What a finished run writes next to its data (tables and figures), and the compact summary
printed at its end.

``qptbench run`` calls :func:`write_run_outputs`, then prints :func:`summary_text`;
``checks.check_run`` then finds the files at ``rundir.OUTPUT_FILES``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from qptbench.report.rundir import PLOTS_DIR, TABLES_DIR, load_run

SUMMARY_WIDTH = 100
MAIN_K = 1  # one Fock build after the network: the same for every route (README explains)
SUMMARY_COLUMNS = (("ΔE k=1 (meV)", "delta_e_mev", 1), ("ΔE k=3 (meV)", "delta_e_mev", 3),
                   ("ΔH k=1 (µHa)", "delta_h_uha", 1), ("SCF k=1 (ratio)", "scf_cycle_ratio", 1))


def write_run_outputs(run_dir: str | Path, paper: bool = True) -> tuple[list[Path], str]:
    """Write RUN_DIR/tables/* (markdown, LaTeX, CSV) and RUN_DIR/plots/* (PNG, SVG); returns the
    paths written and the markdown text of the tables."""
    from qptbench.report import plots, tables
    from qptbench.report.grid import write_grid

    run = load_run(run_dir)
    written = tables.write_tables([run], run.path / TABLES_DIR, paper=paper)
    written += plots.make_plots(run, run.path / PLOTS_DIR)
    written += write_grid(run)  # only for runs of two or more architecture:signal methods
    text = "\n".join(tables.render(frame, "markdown", tables.TITLES[name])
                     for name, frame in tables.make_tables([run], paper=paper).items())
    return written, text


def _number(x: str) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}g}"


def summary_text(run_dir: str | Path) -> str:
    """A ≤ 100-column summary of ``results.csv``: per method and control, seeds, the route's
    wall-clock hours and the errors at k = 1 and 3 (means over seeds); the wide tables stay in
    the files it names."""
    run = load_run(run_dir)
    with open(run.path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found = list(dict.fromkeys(r["method"] for r in rows))
    names = [m for m in run.methods if m in found] + [m for m in found if m not in run.methods]
    header = ["method", "seeds", "route (h)", *[c[0] for c in SUMMARY_COLUMNS]]
    lines = []
    for name in names:
        mine = [r for r in rows if r["method"] == name]
        control = mine[0].get("kind") == "control"
        seeds = {r["seed"] for r in mine}
        cells = [f"{name} (control)" if control else name,
                 "–" if control else str(len(seeds)),
                 "–" if control else _fmt(_mean(r["wall_hours"] for r in mine))]
        for _, key, k in SUMMARY_COLUMNS:
            cells.append(_fmt(_mean(r[key] for r in mine if int(r["dft_iterations"]) == k)))
        lines.append(cells)
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    floor = _mean(r["floor_mev"] for r in rows)
    # an experiment's results.csv has a row per molecule (qptbench.experiments): count them
    per_molecule = bool(rows) and "molecule" in rows[0]
    n_mol = (len({r["molecule"] for r in rows}) if per_molecule
             else max((int(r["n_molecules"]) for r in rows), default=0))
    out = [f"{run.molecule}, {run.info.get('preset', '?')} preset: {n_mol} held-out molecules; "
           f"energy floor {_fmt(floor, 2)} meV",
           fmt.format(*header).rstrip(), *[fmt.format(*c).rstrip() for c in lines],
           "k = DFT iterations after the network; SCF ratio = effective PySCF cycles / minao's.",
           *verdict_lines(run),
           f"tables: {run.path / TABLES_DIR}/ (table1_cost ... table4_protocol)",
           f"results: {run.path / 'results.csv'} (one row per method, seed, k"
           + (", molecule)" if per_molecule else ")")]
    return "\n".join(_clip(line) for line in out) + "\n"


def _mean(values) -> float:
    xs = [v for v in (_number(x) for x in values) if math.isfinite(v)]
    return sum(xs) / len(xs) if xs else float("nan")


def _clip(line: str) -> str:
    """Paths can be long: keep every line within the summary width."""
    return line if len(line) <= SUMMARY_WIDTH else line[: SUMMARY_WIDTH - 1] + "…"


def verdict_lines(run) -> list[str]:
    """Which route wins, per k, on ΔE and ΔH: "lower" only when the two 95 % bootstrap
    intervals (over molecules and seeds) do not overlap; and whether the wall-clock was equal."""
    qpt = next((m for m in ("qpt:energy", "qpt") if m in run.methods), None)
    qhnet = next((m for m in ("qhnet:labels", "qhnet") if m in run.methods), None)
    if qpt is None or qhnet is None or not (run.path / "scores.csv").exists():
        return []
    from qptbench.evaluation.results import read_scores, score_stats

    rows, lines = read_scores(run.path / "scores.csv"), []
    for k in (0, 1, 3):
        parts = []
        for key, label, unit in (("delta_e_mev", "ΔE", "meV"), ("delta_h_uha", "ΔH", "µHa")):
            a, b = score_stats(rows, qpt, k, key), score_stats(rows, qhnet, k, key)
            if not (math.isfinite(a["mean"]) and math.isfinite(b["mean"])):
                parts.append(f"{label} n/a for QPT")
                continue
            word = ("QPT lower" if a["ci_high"] < b["ci_low"] else
                    "QHNet lower" if b["ci_high"] < a["ci_low"] else "intervals overlap")
            parts.append(f"{label} {_fmt(a['mean'])} vs {_fmt(b['mean'])} {unit}: {word}")
        lines.append(f"k={k} (QPT vs QHNet): " + "; ".join(parts))
    budget = (run.info.get("config") or {}).get("budget_hours")
    if budget:
        lines.append(f"equal wall-clock: each route had {budget:g} h per seed (the baseline's "
                     "labelling included)")
    else:
        lines.append("no --budget-hours: route wall-clocks differ; compare at equal hours in "
                     "plots/error_vs_wallclock")
    return lines


PUBLISHED = ("run.json", "ledger.jsonl", "scores.csv", "results.csv", "controls/scores.csv")
PUBLISHED_PER_SEED = ("metrics.jsonl", "train.jsonl", "model.json", "inference.json",
                      "scores.csv", "summary.json", "result.json", "config.json",
                      "train_config.json")


def publish_run(run_dir: str | Path, out_dir: str | Path,
                rebuild_results=None) -> list[Path]:
    """Copy a run's small evidence (ledger, scores, results, per-seed logs; never checkpoints,
    caches or the HDF5 dataset) to ``out_dir`` and rebuild its tables, plots and summary.txt
    there, so a results folder committed to a repository is itself a run directory that
    ``qptbench tables`` can check and rebuild."""
    import shutil

    src, dst = Path(run_dir), Path(out_dir)
    run = load_run(src)
    names = list(PUBLISHED) + [f"{mrun.path.relative_to(src)}/{f}"
                               for mrun in run.seed_runs.values() for f in PUBLISHED_PER_SEED]
    copied = []
    for rel in names:
        if (src / rel).exists():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dst / rel)
            copied.append(dst / rel)
    if rebuild_results is not None:  # results.csv again from the copied scores and ledger
        rebuild_results(dst)
    written, _ = write_run_outputs(dst)
    (dst / "summary.txt").write_text(summary_text(dst))
    return [*copied, *written, dst / "summary.txt"]
