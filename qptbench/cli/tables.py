"""``qptbench tables``: the paper's three tables (and optionally figures) from run directories
(registered by cli/main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qptbench.cli.common import friendly
from qptbench.errors import InputError


def tables_command(
    run_dirs: Annotated[list[str], typer.Argument(
        metavar="RUN_DIR",
        help="Run directories written by `qptbench run` (several: one row per method per run).")],
    fmt: str = typer.Option("markdown", "--format", "-f", metavar="FORMAT",
                            help="markdown, latex or csv."),
    out: str = typer.Option(None, "--out", metavar="DIR",
                            help="Also write table1_cost ... table4_protocol in "
                            "this format to this directory.  [default: print only]"),
    paper: bool = typer.Option(True, "--paper/--no-paper", show_default=False,
                               help="Add the paper's reported numbers for the same molecules, "
                               "as a separate block.  [default: on]"),
    plots: bool = typer.Option(False, "--plots/--no-plots", show_default=False,
                               help="Also draw each run's figures (PNG + SVG) into "
                               "RUN_DIR/plots, or OUT/plots/<run name> with --out.  "
                               "[default: off]"),
    check: bool = typer.Option(False, "--check/--no-check", show_default=False,
                               help="Check each run directory's consistency (files, ledger "
                               "sums, units); exit 1 on any problem.  [default: off]"),
) -> None:
    """Print Tables 1-4 (cost, accuracy, inference, protocol).

    Table 1: data creation + tensor preparation + training hours per method and seed, from the
    ledger.  Table 2: every method and control scored by the one evaluator, per k (DFT
    iterations after the network): ΔE meV, ΔH µHa, Δε µHa, ψ, floor, SCF acceleration, as
    mean [95 % bootstrap interval].  Table 3: inference seconds per molecule (medians after a
    warm-up).  Table 4: the same scores with k in every column header.  Rows from the paper
    are marked "reported (paper)" and printed apart; every measured row names its run
    directory in `source`.
    """
    from qptbench.report import tables

    if fmt not in tables.FORMATS:
        raise InputError(f"unknown --format {fmt!r}; choose one of {', '.join(tables.FORMATS)}")
    from qptbench.report.rundir import load_run

    runs = [load_run(p) for p in run_dirs]
    frames = tables.make_tables(runs, paper=paper)
    for name, frame in frames.items():
        typer.echo(tables.render(frame, fmt, tables.TITLES[name]))
    if out is not None:
        for path in tables.write_tables(runs, out, formats=(fmt,), paper=paper):
            typer.echo(f"wrote {path}")
    if plots:
        from qptbench.report.plots import make_plots

        for run in runs:
            target = None if out is None else Path(out) / "plots" / run.path.resolve().name
            for path in make_plots(run, target):
                typer.echo(f"wrote {path}")
    if check:
        from qptbench.report.checks import check_run

        problems = [f"{p}: {msg}" for p in run_dirs
                    for msg in check_run(p, outputs=False)]
        for msg in problems:
            typer.echo(f"problem: {msg}", err=True)
        if problems:
            raise typer.Exit(code=1)
        typer.echo(f"consistent: {', '.join(run_dirs)}")


def publish_command(
    run_dir: Annotated[str, typer.Argument(metavar="RUN_DIR",
                                           help="A finished `qptbench run` directory.")],
    out: str = typer.Option(..., "--out", metavar="DIR",
                            help="Where to put the small evidence (e.g. results/water-small)."),
) -> None:
    """Copy a run's small evidence to a folder worth committing.

    Copies run.json, ledger.jsonl, scores.csv, results.csv and each method's logs (never
    checkpoints, caches or the HDF5 dataset), then rebuilds tables/, plots/ and summary.txt
    there: the copy is itself a run directory (`qptbench tables DIR --check`). An
    `experiment alanine` directory keeps its per-point results.csv and gets its map and region
    table drawn again.
    """
    from qptbench.experiments import alanine
    from qptbench.harness import write_results
    from qptbench.report.outputs import publish_run

    if alanine.is_experiment(run_dir):
        written = alanine.publish(run_dir, out)
    else:
        written = publish_run(run_dir, out, rebuild_results=write_results)
    typer.echo(f"wrote {len(written)} files to {out}")


def register(app: typer.Typer) -> None:
    app.command("tables")(friendly(tables_command))
    app.command("publish")(friendly(publish_command))
