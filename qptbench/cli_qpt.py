"""``qptbench train-qpt``: QPT trained with the implicit DFT loss (registered on cli.app)."""

from __future__ import annotations

from pathlib import Path

import typer

from qptbench.cli import _friendly, app
from qptbench.errors import InputError


@app.command("train-qpt")
@_friendly
def train_qpt(
    molecule: str = typer.Option("water", "--molecule", "-m", help="Built-in molecule."),
    preset: str = typer.Option("tiny", "--preset", help="smoke (seconds, CI) | tiny (CPU "
                               "minutes) | small (GPU-hour scale) | paper (GPT-medium, 200k)."),
    steps: int = typer.Option(None, "--steps", help="Optimiser updates (overrides the preset)."),
    sampler: str = typer.Option(None, "--sampler", help="displaced (Gaussian 0.05 Å moves of the "
                                "built-in geometry) | md (GFN2-xTB MD at 500 K) | dataset."),
    dataset: str = typer.Option(None, "--dataset", help="Dataset file (qptbench sample/label): "
                                "train split = training geometries, val split = references."),
    val: str = typer.Option(None, "--val", help="Labelled dataset file whose val split scores "
                            "the model (default: PySCF labels made here for --n-val geometries)."),
    n_val: int = typer.Option(None, "--n-val", help="Validation conformations."),
    window: int = typer.Option(None, "--window", help="Updates per prepared molecule (paper 6-8);"
                               " 1 = a fresh molecule every step."),
    fresh_every_step: bool = typer.Option(False, "--fresh-every-step", help="Same as --window 1."),
    workers: int = typer.Option(None, "--workers", help="DataLoader processes preparing tensors."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    xc: str = typer.Option(None, "--xc", help="Functional (PySCF name), default b3lyp5."),
    basis: str = typer.Option(None, "--basis", help="Basis set, default def2-svp."),
    grid_level: int = typer.Option(None, "--grid-level", help="DFT grid level (default 3)."),
    eval_every: int = typer.Option(None, "--eval-every", help="Steps between validations."),
    seed: int = typer.Option(None, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    out: str = typer.Option("runs/qpt", "--out", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Train QPT on DFT's own energy (no labels) and score it, and the zero model (A = 0),
    against PySCF on held-out conformations.  Writes config.json, model.json, checkpoint.pt,
    train.jsonl, metrics.jsonl (ΔE meV, ΔH µHa, Δε µHa all/occupied, ψ), ledger.jsonl (wall/CPU
    seconds per phase), summary.json and TensorBoard scalars (tb/)."""
    from qptbench import train_qpt as tq
    from qptbench.geometry import Molecule
    from qptbench.runtime import resolve_device

    Molecule.builtin(molecule)  # unknown names fail here with the list of built-ins
    if val is not None and not Path(val).exists():
        raise InputError(f"validation file {val} does not exist")
    if dataset is not None and not Path(dataset).exists():
        raise InputError(f"dataset file {dataset} does not exist")
    try:
        cfg = tq.make_config(
            preset, molecule=molecule, steps=steps, sampler=sampler or ("dataset" if dataset
            else None), dataset=dataset or val, n_val=n_val,
            window=1 if fresh_every_step else window, workers=workers, lr=lr, xc=xc,
            basis=basis, grid_level=grid_level, eval_every=eval_every, seed=seed)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    final = tq.run(cfg, Path(out), resolve_device(device), resume=resume)
    _print_summary(final, Path(out))


def _print_summary(final: dict, out: Path) -> None:
    if not final:
        typer.echo(f"no evaluation recorded; see {out}")
        return
    rows = [("ΔE (meV)", "delta_e_mev"), ("ΔH (µHa)", "delta_h_uha"),
            ("Δε all orbitals (µHa)", "delta_eps_all_uha"),
            ("Δε occupied (µHa)", "delta_eps_occ_uha"), ("ψ cos, occupied", "psi_cos_occ")]
    typer.echo(f"validation after {final['step']} steps on {final['n_val']} held-out "
               "conformations (3 DFT iterations, vs PySCF):")
    typer.echo(f"{'':24s}{'QPT':>14s}{'zero model':>14s}")
    for name, key in rows:
        typer.echo(f"{name:24s}{final[key]:14.4g}{final['zero_' + key]:14.4g}")
    typer.echo(f"run directory: {out}  (metrics.jsonl, ledger.jsonl, summary.json)")
