"""``qptbench run``: the whole comparison on one molecule (registered by cli/main.py)."""

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
    labeller_option,
)
from qptbench.cli.memory import guard, memory_limit_option


def run_command(
    molecule: str = typer.Option("water", "--molecule", "-m", metavar="NAME",
                                 help=f"Built-in molecule: {MOLECULES}."),
    preset: str = typer.Option("smoke", "--preset", metavar="smoke|small|paper",
                               help="smoke: < 5 min on 2 CPU cores, plumbing only; small: about "
                               "an hour on CPU; paper: the paper's sizes (500/25k labels, "
                               "GPT-medium, 200k steps), a GPU cluster job."),
    methods: str = typer.Option("qpt,qhnet", "--methods", metavar="LIST",
                                help="Comma-separated methods, named architecture:signal: "
                                "qpt:energy (alias qpt, the paper's QPT), qpt:sc, qpt:labels, "
                                "qhnet:labels (alias qhnet, the supervised baseline), "
                                "qhnet:energy, qhnet:sc; and qpt-signed (qpt:energy with a "
                                "signed output head).  Two or more architecture:signal "
                                "methods also write tables/grid (markdown, CSV) and its plot."),
    budget_hours: float = typer.Option(None, "--budget-hours", metavar="H",
                                       help="Same wall-clock budget for both routes: labelling "
                                       "+ training for the baseline, tensor preparation + "
                                       "training for QPT.  [default: none, the preset's steps]"),
    n_train: int = typer.Option(None, "--n-train", metavar="N",
                                help="Labelled training conformations.  [default: from "
                                "--preset: smoke 6, small 100, paper 500 water or 25,000]"),
    n_val: int = typer.Option(None, "--n-val", metavar="N",
                              help="Validation conformations (PySCF references).  [default: "
                              "from --preset: smoke 2, small 50, paper 500]"),
    seeds: int = typer.Option(None, "--seeds", metavar="N",
                              help="Independent training seeds per method.  [default: from "
                              "--preset: smoke 1, small 3]"),
    eval_points: int = typer.Option(None, "--eval-points", metavar="N",
                                    help="Evaluations along training, at k/N of each route's "
                                    "budget (error-vs-wall-clock curves).  [default: from "
                                    "--preset: smoke 0 (end only), small 6]"),
    scf_molecules: int = typer.Option(None, "--scf-molecules", metavar="N",
                                      help="Held-out molecules on which PySCF's SCF "
                                      "is also run from each prediction (SCF acceleration; "
                                      "every method, seed and k).  [default: from --preset: "
                                      "smoke 1, small 10, paper 50]"),
    label_workers: int = typer.Option(None, "--label-workers", metavar="N",
                                      help="PySCF labelling processes.  [default: all cores "
                                      "(os.sched_getaffinity)]"),
    labeller: str = labeller_option("  Labels are data creation, booked to the label "
                                    "routes whichever code makes them."),
    nproc: int = typer.Option(1, "--nproc", metavar="N",
                              help="Train each route on N processes (data-parallel, as "
                              "torchrun --nproc-per-node N: gloo on CPU, one GPU each on "
                              "CUDA) under the same budget; sampling, labelling and scoring "
                              "stay in this process.  At most the cores (CPU) or GPUs."),
    eri: str = eri_option(None, "  [default: from --preset: smoke df (it must fit a laptop: "
                          "uracil's dense ERIs are 2.4 GB per geometry), small and paper "
                          "dense]"),
    auxbasis: str = auxbasis_option(),
    energy_backend: str = energy_backend_option(),
    device: str = device_option(),
    out: str = typer.Option("runs/run", "--out", metavar="DIR", help="Run directory."),
    resume: bool = typer.Option(False, "--resume/--no-resume", show_default=False,
                                help="Continue the run in --out where it stopped.  [default: off]"),
    memory_limit_gb: float = memory_limit_option(),
) -> None:
    """Compare QPT and the QHNet baseline on one molecule.

    QPT learns from DFT's own energy (no labels); the supervised QHNet-style baseline learns
    from PySCF labels.  Samples MD conformations, labels them, trains both, evaluates against
    PySCF on held-out conformations, and writes to --out: run.json, ledger.jsonl (wall/CPU
    seconds per phase and method), metrics for each method, tables/ (markdown, LaTeX, CSV)
    and plots/ (PNG, SVG).
    """
    from qptbench import harness
    from qptbench.dft.geometry import Molecule
    from qptbench.runtime import resolve_device

    Molecule.builtin(molecule)
    cfg = harness.make_config(preset, molecule=molecule, n_train=n_train, n_val=n_val,
                              seeds=seeds, label_workers=label_workers, budget_hours=budget_hours,
                              eval_points=eval_points, scf_molecules=scf_molecules,
                              eri=eri, auxbasis=auxbasis, energy_backend=energy_backend,
                              labeller=labeller, nproc=nproc,
                              methods=tuple(m.strip() for m in methods.split(",") if m.strip()))
    from qptbench.methods.memory import harness_need

    dev = resolve_device(device)
    if cfg.nproc > 1:  # a count this machine cannot run is named as such, not as memory
        from qptbench.data.labelling import available_cores
        from qptbench.methods.parallel import check_nproc

        check_nproc(cfg.nproc, dev, available_cores())
    guard("qptbench run", harness_need(cfg), memory_limit_gb)
    text = harness.run(cfg, Path(out), dev, resume=resume)
    typer.echo(text)
    typer.echo(f"run directory: {out}")


def register(app: typer.Typer) -> None:
    app.command("run")(friendly(run_command))
