"""``qptbench train-baseline``: the supervised QHNet-style baseline on labels from the store
(registered on cli.app)."""

from __future__ import annotations

import json

import typer

from qptbench.cli import _friendly, app


@app.command("train-baseline")
@_friendly
def train_baseline(
    labels: str = typer.Option(..., "--labels", help="Label store file (.h5) made by "
                               "`qptbench label`; uses its train/val/test splits."),
    preset: str = typer.Option("tiny", "--preset", help="tiny (CPU minutes) | small | qhnet "
                               "(the released MD17 model: ~20M parameters)."),
    steps: int = typer.Option(2000, "--steps", help="Optimiser updates (batch size from the "
                              "preset)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    dtype: str = typer.Option("float64", "--dtype", help="float64 (QHNet's paper runs) | "
                              "float32."),
    out: str = typer.Option("runs/qhnet", "--out", help="Run directory: checkpoint, logs, "
                            "ledger.jsonl, result.json."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt "
                                "exactly where it stopped."),
    n_train: int = typer.Option(0, "--n-train", help="Use at most this many training labels "
                                "(0: all)."),
    n_val: int = typer.Option(50, "--n-val", help="Validation conformations per evaluation "
                              "(0: all)."),
    n_test: int = typer.Option(0, "--n-test", help="Test conformations evaluated at the end "
                               "(0: all labelled)."),
    energy_molecules: int = typer.Option(20, "--energy-molecules", help="Conformations per "
                                         "evaluation that also get ΔE through E(·) (0: none)."),
    eval_every: int = typer.Option(500, "--eval-every", help="Steps between validations "
                                   "(0: only at the end)."),
    seed: int = typer.Option(0, "--seed", help="Initialisation and shuffling seed."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train the QHNet-style e3nn baseline on PySCF Fock matrices (loss: MAE + MSE on H).

    Prints one JSON object (also kept in OUT/result.json): validation and test ΔH, Δε (all and
    occupied) in µHa, ψ, ΔE in meV (energy of the predicted H after one DFT iteration), and the
    hours of labelling (read from the label store) and training.
    """
    from qptbench.baselines.qhnet_run import RunOptions, run

    summary = run(RunOptions(
        labels=labels, out=out, preset=preset, steps=steps, device=device, dtype=dtype,
        resume=resume, n_train=n_train or None, n_val=n_val or None, n_test=n_test or None,
        energy_molecules=energy_molecules, eval_every=eval_every, seed=seed,
        progress=not quiet))
    typer.echo(json.dumps(summary, indent=1))
