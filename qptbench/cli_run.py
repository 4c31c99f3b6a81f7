"""``qptbench run``: the whole comparison on one molecule (registered on cli.app)."""

from __future__ import annotations

from pathlib import Path

import typer

from qptbench.cli import _friendly, app


@app.command("run")
@_friendly
def run_command(
    molecule: str = typer.Option("water", "--molecule", "-m", help="Built-in molecule."),
    preset: str = typer.Option("smoke", "--preset", help="smoke (< 5 min on 2 CPU cores, plumbing"
                               " only) | small (about an hour on CPU) | paper (the paper's sizes:"
                               " 500/25k labels, GPT-medium, 200k steps; a GPU cluster job)."),
    methods: str = typer.Option("qpt,qhnet", "--methods", help="Comma-separated: qpt, qhnet."),
    budget_hours: float = typer.Option(None, "--budget-hours", help="Same wall-clock budget for "
                                       "both routes: labelling + training for the baseline, "
                                       "tensor preparation + training for QPT."),
    n_train: int = typer.Option(None, "--n-train", help="Labelled training conformations."),
    n_val: int = typer.Option(None, "--n-val", help="Validation conformations (references)."),
    label_workers: int = typer.Option(None, "--label-workers", help="PySCF processes."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    out: str = typer.Option("runs/run", "--out", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Compare QPT (implicit DFT loss, no labels) with a supervised QHNet-style baseline
    (PySCF labels) on one molecule: sample MD conformations, label, train both, evaluate against
    PySCF on held-out conformations, and write run.json, ledger.jsonl (wall/CPU seconds per
    phase and method), per-method metrics, tables/ (markdown, LaTeX, CSV) and plots/ (PNG, SVG)."""
    from qptbench import harness
    from qptbench.geometry import Molecule
    from qptbench.runtime import resolve_device

    Molecule.builtin(molecule)
    cfg = harness.make_config(preset, molecule=molecule, n_train=n_train, n_val=n_val,
                              label_workers=label_workers, budget_hours=budget_hours,
                              methods=tuple(m.strip() for m in methods.split(",") if m.strip()))
    text = harness.run(cfg, Path(out), resolve_device(device), resume=resume)
    typer.echo(text)
    typer.echo(f"run directory: {out}")
