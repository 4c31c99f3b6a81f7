"""``qptbench train-qpt``: QPT trained with the implicit DFT loss (registered by cli/main.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from qptbench.cli.common import (
    MOLECULES,
    auxbasis_option,
    device_option,
    energy_backend_option,
    eri_option,
    friendly,
)
from qptbench.cli.memory import guard, memory_limit_option
from qptbench.errors import InputError


def train_qpt(
    molecule: str = typer.Option("water", "--molecule", "-m", metavar="NAME",
                                 help=f"Built-in molecule: {MOLECULES}."),
    preset: str = typer.Option("tiny", "--preset", metavar="smoke|tiny|small|paper",
                               help="smoke: seconds, CI; tiny: CPU minutes; small: GPU-hour "
                               "scale; paper: GPT-medium, 200k steps."),
    steps: int = typer.Option(None, "--steps", metavar="N", help="Optimiser updates.  [default: "
                              "from --preset: smoke 30, tiny 1500, small 20,000, paper 200,000]"),
    sampler: str = typer.Option(None, "--sampler", metavar="displaced|md|dataset",
                                help="displaced: Gaussian 0.05 Å moves of the --molecule geometry;"
                                " md: GFN2-xTB MD at 500 K; dataset: the --dataset file.  "
                                "[default: dataset with --dataset, else md for paper, else "
                                "displaced]"),
    dataset: str = typer.Option(None, "--dataset", metavar="FILE",
                                help="Dataset file (qptbench sample/label): train split = "
                                "training geometries, val split = references."),
    val: str = typer.Option(None, "--val", metavar="FILE",
                            help="Labelled dataset file whose val split scores the model.  "
                            "[default: PySCF labels made here for --n-val geometries]"),
    n_val: int = typer.Option(None, "--n-val", metavar="N", help="Validation conformations.  "
                              "[default: from --preset: smoke 2, tiny 8, small 16, paper 100]"),
    window: int = typer.Option(None, "--window", metavar="K",
                               help="Updates per prepared molecule (paper 6-8); 1 = a fresh "
                               "molecule every step.  [default: 6; smoke 3, paper 7]"),
    fresh_every_step: bool = typer.Option(False, "--fresh-every-step",
                                          help="Same as --window 1."),
    workers: int = typer.Option(None, "--workers", metavar="N",
                                help="DataLoader processes preparing tensors.  [default: 1; "
                                "smoke 0, in the main process]"),
    lr: float = typer.Option(None, "--lr", metavar="LR", help="Peak learning rate.  [default: "
                             "from --preset: 3e-4 for smoke and tiny]"),
    xc: str = typer.Option(None, "--xc", metavar="NAME",
                           help="Functional (PySCF name).  [default: b3lyp5]"),
    basis: str = typer.Option(None, "--basis", metavar="NAME",
                              help="Basis set (PySCF name).  [default: def2-svp]"),
    grid_level: int = typer.Option(None, "--grid-level", metavar="0-9",
                                   help="DFT grid level.  [default: 3; smoke 1]"),
    eri: str = eri_option(),
    auxbasis: str = auxbasis_option(),
    energy_backend: str = energy_backend_option(),
    eval_every: int = typer.Option(None, "--eval-every", metavar="N",
                                   help="Steps between validations (0: only at the end).  "
                                   "[default: from --preset: smoke 0, tiny 250, small 1000, "
                                   "paper 5000]"),
    head: str = typer.Option(None, "--head", metavar="psd|signed",
                             help="Output head: psd = the paper's A = QQᵀ/√d (can only raise "
                             "orbital energies), signed = A = Q diag(s) Qᵀ/√d.  [default: psd]"),
    signal: str = typer.Option("energy", "--signal", metavar="energy|sc|labels",
                               help="Training signal: energy = the implicit DFT loss (no "
                               "labels); sc = self-consistency |H - F(D(H))| (no labels); "
                               "labels = MAE + MSE against PySCF's H* (needs --dataset with "
                               "labels; their cost is the store's)."),
    arch: str = typer.Option("qpt", "--arch", metavar="qpt|qhnet",
                             help="Network: qpt = the transformer; qhnet = H_init + the "
                             "QHNet-style e3nn model (QHNet's tiny/small preset for --preset "
                             "tiny/small, its MD17 size for paper; its optimiser recipe).  "
                             "`train-baseline` is QHNet on labels with its own recipe."),
    seed: int = typer.Option(None, "--seed", metavar="S",
                             help="Initialisation and sampling seed.  [default: 0]"),
    device: str = device_option(),
    out: str = typer.Option("runs/qpt", "--out", metavar="DIR", help="Run directory."),
    resume: bool = typer.Option(False, "--resume/--no-resume", show_default=False,
                                help="Continue the run in --out where it stopped.  [default: off]"),
    memory_limit_gb: float = memory_limit_option(),
) -> None:
    """Train QPT on DFT's own energy (no labels) and score it.

    Other signals and networks: --signal sc|labels, --arch qhnet (the grid of `qptbench run
    --methods arch:signal`).  Scores the model, and the zero model (A = 0), against PySCF on
    held-out conformations.  Writes
    to --out: config.json, model.json, checkpoint.pt, train.jsonl, metrics.jsonl (ΔE meV,
    ΔH µHa, Δε µHa all/occupied, ψ), ledger.jsonl (wall/CPU seconds per phase), summary.json
    and TensorBoard scalars (tb/).

    Data-parallel on N processes (one per GPU, or CPU with gloo): each rank trains on its
    own conformations (seed + rank x 1,000,003), gradients are averaged, rank 0 alone
    writes --out, and --resume needs the same N:

    \b
      torchrun --nproc-per-node N -m qptbench train-qpt ...
    """
    from qptbench.dft.geometry import Molecule
    from qptbench.methods.qpt import run
    from qptbench.runtime import resolve_device
    from qptbench.training import distributed
    from qptbench.training import qpt as tq

    Molecule.builtin(molecule)  # unknown names fail here with the list of built-ins
    if val is not None and not Path(val).exists():
        raise InputError(f"validation file {val} does not exist")
    if dataset is not None and not Path(dataset).exists():
        raise InputError(f"dataset file {dataset} does not exist")
    try:
        cfg = tq.make_config(
            preset, molecule=molecule, steps=steps, sampler=sampler or ("dataset" if dataset
            else None), dataset=dataset, val=val, n_val=n_val,
            window=1 if fresh_every_step else window, workers=workers, lr=lr, xc=xc,
            basis=basis, grid_level=grid_level, eval_every=eval_every, seed=seed, head=head,
            signal=signal, arch=arch, eri=eri, auxbasis=auxbasis,
            energy_backend=energy_backend)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    from qptbench.methods.memory import qpt_need

    guard("qptbench train-qpt", qpt_need(cfg), memory_limit_gb)
    # under torchrun (WORLD_SIZE > 1): join the process group; else nothing changes
    world, where = distributed.init_from_env(resolve_device(device))
    try:
        final = run(cfg, Path(out), where, resume=resume, progress=world.main)
    finally:
        distributed.finish()
    if world.main:
        _print_summary(final, Path(out))


def _print_summary(final: dict, out: Path) -> None:
    if "delta_e_mev_k3" not in final:
        typer.echo(f"no evaluation recorded; see {out}")
        return
    rows = [("ΔE (meV)", "delta_e_mev"), ("ΔH (µHa)", "delta_h_uha"),
            ("Δε all orbitals (µHa)", "delta_eps_all_uha"),
            ("Δε occupied (µHa)", "delta_eps_occ_uha"), ("ψ cos, occupied", "psi_occ")]
    typer.echo(f"validation after {final['step']} steps on {final['n_val']} held-out "
               f"conformations, vs PySCF (k = DFT iterations after the network; energy floor "
               f"{final['floor_mev']:.1e} meV):")
    typer.echo(f"{'':24s}" + "".join(f"{f'{who} k={k}':>12s}" for who in ("model", "zero")
                                      for k in (1, 3)))
    for name, key in rows:
        typer.echo(f"{name:24s}" + "".join(
            f"{final[f'{p}{key}_k{k}']:12.4g}" for p in ("", "zero_") for k in (1, 3)))
    typer.echo(f"run directory: {out}  (metrics.jsonl, ledger.jsonl, summary.json)")


def register(app: typer.Typer) -> None:
    app.command("train-qpt")(friendly(train_qpt))
