"""``qptbench train-baseline``: the supervised QHNet-style baseline on labels from the store
(registered by cli/main.py)."""

from __future__ import annotations

import json

import typer

from qptbench.cli.common import device_option, friendly


def train_baseline(
    labels: str = typer.Option(..., "--labels", metavar="FILE",
                               help="Label store (.h5) made by `qptbench label`; its "
                               "train/val/test splits are used."),
    preset: str = typer.Option("tiny", "--preset", metavar="tiny|small|qhnet",
                               help="tiny: CPU minutes (16 channels); small: 64 channels; qhnet: "
                               "the released MD17 model (~20M parameters)."),
    steps: int = typer.Option(2000, "--steps", metavar="N",
                              help="Optimiser updates (batch size from the preset)."),
    device: str = device_option(),
    dtype: str = typer.Option("float32", "--dtype", metavar="float32|float64",
                              help="Network precision: float32 as QHNet's released config and "
                              "its best MD17 numbers (and QPT's network), or float64."),
    out: str = typer.Option("runs/qhnet", "--out", metavar="DIR",
                            help="Run directory: checkpoint, logs, ledger.jsonl, result.json."),
    resume: bool = typer.Option(False, "--resume/--no-resume", show_default=False,
                                help="Continue from OUT/checkpoint.pt exactly where it "
                                "stopped.  [default: off]"),
    n_train: int = typer.Option(0, "--n-train", metavar="N",
                                help="Use at most this many training labels (0: all)."),
    n_val: int = typer.Option(50, "--n-val", metavar="N",
                              help="Validation conformations per evaluation (0: all)."),
    n_test: int = typer.Option(0, "--n-test", metavar="N", help="Test conformations evaluated "
                               "at the end (0: all labelled)."),
    energy_molecules: int = typer.Option(20, "--energy-molecules", metavar="N",
                                         help="Conformations per evaluation that also get ΔE "
                                         "through E(·) (0: none)."),
    eval_every: int = typer.Option(500, "--eval-every", metavar="N",
                                   help="Steps between validations (0: only at the end)."),
    seed: int = typer.Option(0, "--seed", metavar="S",
                             help="Initialisation and shuffling seed."),
    eri: str = typer.Option(None, "--eri", metavar="dense|df",
                            help="Two-electron integrals the labels must be at (dense, or df = "
                            "density fitting); a label store made at the other is refused.  "
                            "[default: the store's]"),
    auxbasis: str = typer.Option(None, "--auxbasis", metavar="NAME",
                                 help="Fitting basis the labels must be at with --eri df "
                                 "(PySCF name).  [default: the store's]"),
    progress: bool = typer.Option(True, "--progress/--quiet", show_default=False,
                                  help="Show a progress bar.  [default: on]"),
) -> None:
    """Train the QHNet-style baseline on PySCF labels.

    The e3nn model learns the PySCF Fock matrices (loss: MAE + MSE on H).  Prints one JSON
    object (also kept in OUT/result.json): validation and test ΔH, Δε (all and occupied) in
    µHa, ψ, ΔE in meV (energy of the predicted H after one DFT iteration), the level of theory
    (the store's: dense or density-fitted ERIs), and the hours of labelling (read from the label
    store) and training.

    Data-parallel on N processes (one per GPU, or CPU with gloo): rank r trains on the
    training labels r, r + N, r + 2N, ... (mini-batches of the preset's size from its
    share), gradients are averaged, rank 0 alone evaluates and writes --out, and --resume
    needs the same N:

    \b
      torchrun --nproc-per-node N -m qptbench train-baseline ...
    """
    from qptbench.baselines.qhnet_run import RunOptions
    from qptbench.methods.qhnet import run
    from qptbench.runtime import resolve_device
    from qptbench.training import distributed

    # under torchrun (WORLD_SIZE > 1): join the process group; else nothing changes
    world, where = distributed.init_from_env(resolve_device(device))
    try:
        summary = run(RunOptions(
            labels=labels, out=out, preset=preset, steps=steps,
            device=str(where) if world.parallel else device, dtype=dtype,
            resume=resume, n_train=n_train or None, n_val=n_val or None, n_test=n_test or None,
            energy_molecules=energy_molecules, eval_every=eval_every, seed=seed,
            progress=progress and world.main, eri=eri, auxbasis=auxbasis))
    finally:
        distributed.finish()
    if world.main:
        typer.echo(json.dumps(summary, indent=1))


def register(app: typer.Typer) -> None:
    app.command("train-baseline")(friendly(train_baseline))
