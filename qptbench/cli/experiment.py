"""``qptbench experiment ...``: experiments built on the comparison harness (registered by
cli/main.py).  ``alanine``: the QPT paper's Fig. 4 for both routes."""

from __future__ import annotations

from pathlib import Path

import typer

from qptbench.cli.common import (
    HELP_MODE,
    auxbasis_option,
    device_option,
    eri_option,
    friendly,
)
from qptbench.cli.memory import guard, memory_limit_option

experiment_app = typer.Typer(help="Experiments on the comparison harness: the alanine map.",
                             no_args_is_help=True, rich_markup_mode=HELP_MODE)


def alanine(
    preset: str = typer.Option("smoke", "--preset", metavar="smoke|small|paper",
                               help="smoke: a 4 x 4 map, 4 labels, a few steps, 1 seed (about "
                               "5 min on 2 CPU cores, plumbing only); small: a 10 x 10 map, 24 "
                               "labels, 1 seed, 3.6 min per route (about 40 min on 2 CPU "
                               "cores); paper: a 24 x 24 map, 25,000 labels, GPT-medium for "
                               "200k steps, 3 seeds (a GPU job)."),
    grid: int = typer.Option(None, "--grid", metavar="G",
                             help="The map: G x G points, the centres of equal (phi, psi) "
                             "cells of [0, 360) (an even G keeps them off the box's edges).  "
                             "[default: from --preset: smoke 4, small 10, paper 24]"),
    train_region: str = typer.Option("0:180", "--train-region", metavar="LOW:HIGH[,LOW:HIGH]",
                                     help="Training box in degrees: one range for phi and psi, "
                                     "or phi's then psi's; a range may wrap (300:60).  The "
                                     "baseline's labels and QPT's fresh conformations are "
                                     "drawn from it."),
    methods: str = typer.Option("qpt,qhnet", "--methods", metavar="LIST",
                                help="Comma-separated methods, as for `qptbench run`: qpt "
                                "(qpt:energy), qhnet (qhnet:labels), qpt-signed, ..."),
    seeds: int = typer.Option(None, "--seeds", metavar="N",
                              help="Independent training seeds per method (the map shows "
                              "their mean).  [default: from --preset: smoke 1, small 1, "
                              "paper 3]"),
    budget_hours: float = typer.Option(None, "--budget-hours", metavar="H",
                                       help="Same wall-clock for every route: labelling + "
                                       "training for the baseline, tensor preparation + "
                                       "training for QPT.  [default: from --preset: small "
                                       "0.06; smoke and paper none, the preset's steps]"),
    n_train: int = typer.Option(None, "--n-train", metavar="N",
                                help="Labelled training conformations for the baseline.  "
                                "[default: from --preset: smoke 4, small 24, paper 25,000]"),
    basis: str = typer.Option("sto-3g", "--basis", metavar="NAME",
                              help="Basis set (the paper: STO-3G; def2-svp works too, with "
                              "12.8 GB of dense ERIs per geometry, or 0.4 GB with --eri df)."),
    xc: str = typer.Option("b3lyp5", "--xc", metavar="NAME",
                           help="Functional, PySCF name (b3lyp5 is B3LYP with VWN5, what "
                           "the paper used)."),
    eri: str = eri_option(),
    auxbasis: str = auxbasis_option(),
    k: int = typer.Option(1, "--k", metavar="0|1|3",
                          help="DFT iterations after the network shown in the map and table; "
                          "1: the energy of the predicted H's own density (= k 0 for the "
                          "energy), what the paper maps; 3: its 1 + 3 route."),
    label_workers: int = typer.Option(None, "--label-workers", metavar="N",
                                      help="PySCF labelling processes.  [default: all cores "
                                      "(os.sched_getaffinity)]"),
    device: str = device_option(),
    out: str = typer.Option("runs/alanine", "--out", metavar="DIR", help="Run directory."),
    resume: bool = typer.Option(False, "--resume/--no-resume", show_default=False,
                                help="Continue the run in --out where it stopped (--k may "
                                "change: the map and table are rebuilt).  [default: off]"),
    memory_limit_gb: float = memory_limit_option(),
) -> None:
    """The alanine-dipeptide (phi, psi) map, both routes, equal wall-clock.

    The QPT paper's Fig. 4 for QPT (trained on DFT's energy, no labels) and the label-trained
    baseline: conformations with (phi, psi) in the training box, PySCF labels for the
    baseline, every route trained under one budget, then the shared evaluator on the G x G
    map.  Writes to --out, besides what `qptbench run` writes: results.csv (one row per
    method, seed, k and map point, with phi_deg, psi_deg and region: train, band = the 20
    degrees around the box, far), alanine_map.png and .svg (log10 |dE| in eV per method),
    tables/alanine_regions (markdown, LaTeX, CSV) and alanine.json.
    """
    from qptbench.experiments import alanine as experiment
    from qptbench.runtime import resolve_device

    acfg = experiment.make_config(
        preset, grid=grid, train_region=train_region, seeds=seeds, budget_hours=budget_hours,
        n_train=n_train, basis=basis, xc=xc, k=k, label_workers=label_workers, eri=eri,
        auxbasis=auxbasis,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()))
    from qptbench.methods.memory import harness_need

    guard("qptbench experiment alanine", harness_need(acfg.harness), memory_limit_gb)
    text = experiment.run(acfg, Path(out), resolve_device(device), resume=resume)
    typer.echo(text)
    typer.echo(f"run directory: {out}")


def register(app: typer.Typer) -> None:
    experiment_app.command("alanine")(friendly(alanine))
    app.add_typer(experiment_app, name="experiment")
