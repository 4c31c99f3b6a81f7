"""CLI for the data pipeline: ``qptbench sample``, ``qptbench label``, ``qptbench data info``."""

from __future__ import annotations

import json
import math

import typer

from qptbench.cli.common import auxbasis_option, eri_option, friendly, labeller_option
from qptbench.dft.geometry import builtin_names

data_app = typer.Typer(help="Inspect dataset files: splits, labels, cost.", no_args_is_help=True,
                       rich_markup_mode=None)  # plain help, as the main app (qptbench.cli.main)
MOLECULES = ", ".join(builtin_names())


def _range(text: str, what: str) -> tuple[float, float]:
    from qptbench.errors import InputError

    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{what} must be two numbers 'MIN,MAX' in degrees, got {text!r}") from None
    return low, high


def sample(
    molecule: str = typer.Option(None, "--molecule", "-m", metavar="NAME",
                                 help=f"Built-in starting geometry: {MOLECULES}.  [default: "
                                 "alanine_dipeptide for --sampler dihedral]"),
    xyz: str = typer.Option(None, "--xyz", metavar="FILE",
                            help="Starting geometry file (.xyz, Å) instead of --molecule."),
    from_file: str = typer.Option(None, "--from", metavar="FILE",
                                  help="Take the frames of an existing file instead of "
                                  "sampling: .xyz/.extxyz trajectory, sGDML/rMD17 .npz, "
                                  "SchNOrb .db."),
    n: int = typer.Option(None, "--n", metavar="N", help="Number of conformations; required "
                          "when sampling.  [default: all frames of --from]"),
    seed: int = typer.Option(0, "--seed", metavar="S",
                             help="Sampler seed (same seed, same conformations)."),
    out: str = typer.Option(..., "--out", "-o", metavar="FILE",
                            help="Dataset file to write (HDF5, .h5)."),
    sampler: str = typer.Option("md", "--sampler", metavar="md|dihedral",
                                help="md: Langevin MD with GFN2-xTB (MD17-like); dihedral: "
                                "random (phi, psi) of alanine dipeptide."),
    temperature: float = typer.Option(500.0, "--temperature", metavar="K",
                                      help="MD temperature, K."),
    timestep: float = typer.Option(0.5, "--timestep", metavar="FS", help="MD time step, fs."),
    interval: int = typer.Option(50, "--interval", metavar="N",
                                 help="Mean MD steps between kept frames."),
    equilibration: int = typer.Option(1000, "--equilibration", metavar="N",
                                      help="MD steps before the first kept frame."),
    friction: float = typer.Option(0.01, "--friction", metavar="1/FS",
                                   help="Langevin friction, 1/fs."),
    phi: str = typer.Option("0,180", "--phi", metavar="MIN,MAX",
                            help="Dihedral sampler: phi box, degrees."),
    psi: str = typer.Option("0,180", "--psi", metavar="MIN,MAX",
                            help="Dihedral sampler: psi box, degrees."),
    n_train: int = typer.Option(None, "--train", metavar="N", help="Training-set size.  "
                                "[default: MD17's, 500 water / 25,000 others, when it fits; "
                                "else 80 %]"),
    n_val: int = typer.Option(None, "--val", metavar="N",
                              help="Validation-set size.  [default: MD17's 500 when it fits; "
                              "else 10 %]"),
    split_seed: int = typer.Option(42, "--split-seed", metavar="S",
                                   help="Split permutation seed (QHNet: 42)."),
    charge: int = typer.Option(0, "--charge", metavar="Q", help="Total charge."),
    force: bool = typer.Option(False, "--force/--no-force", show_default=False,
                               help="Overwrite --out if it exists.  [default: off]"),
) -> None:
    """Write conformations (MD, dihedrals, a file) to a dataset.

    Samples GFN2-xTB Langevin MD at 500 K (MD17-like) or alanine-dipeptide (phi, psi)
    conformations, or reads them from a file, and stores them in an HDF5 dataset with
    deterministic train/val/test splits.
    """
    import time

    from qptbench.data.splits import default_sizes, make_splits
    from qptbench.data.store import create_dataset
    from qptbench.dft.geometry import load_molecule
    from qptbench.errors import InputError

    tic = time.perf_counter()
    if n is not None and n < 1:
        raise InputError(f"--n must be >= 1, got {n}")
    if n is not None and (n_train is not None or n_val is not None):
        make_splits(n, n_train or 0, n_val or 0)  # refuse impossible sizes before sampling
    if from_file is not None:
        from qptbench.data.readers import read_conformations

        if molecule is not None or xyz is not None:
            raise InputError("give --from or a starting geometry (--molecule/--xyz), not both")
        confs = read_conformations(from_file, charge)[:n]
        name = confs[0].name if confs else ""
        settings = {"kind": "file", "source": str(from_file)}
    elif sampler == "md":
        from qptbench.data.md import md_settings, sample_md

        if n is None:
            raise InputError("--n is required when sampling")
        start = load_molecule(molecule, xyz, charge)
        kw = dict(temperature_K=temperature, timestep_fs=timestep, interval=interval,
                  equilibration_steps=equilibration, friction=friction)
        confs = sample_md(start, n, seed=seed, progress=True, **kw)
        name, settings = start.name, md_settings(seed=seed, **kw)
    elif sampler == "dihedral":
        from qptbench.data.dihedral import dihedral_settings, sample_dihedrals

        if n is None:
            raise InputError("--n is required when sampling")
        start = load_molecule(molecule or ("alanine_dipeptide" if xyz is None else None), xyz,
                              charge)
        box = dict(phi_range=_range(phi, "--phi"), psi_range=_range(psi, "--psi"))
        confs = sample_dihedrals(start, n, seed=seed, **box)
        name, settings = start.name, dihedral_settings(seed=seed, **box)
    else:
        raise InputError(f"unknown sampler {sampler!r}; choose md or dihedral")
    if not confs:
        raise InputError(f"{from_file} holds no conformations")
    train, val, rule = default_sizes(name, len(confs))
    if n_train is not None or n_val is not None:
        train, val, rule = (train if n_train is None else n_train,
                            val if n_val is None else n_val, "given")
    splits = make_splits(len(confs), train, val, seed=split_seed)
    settings["seconds"] = time.perf_counter() - tic
    path = create_dataset(out, confs, name=name, sampler=settings, splits=splits,
                          split_seed=split_seed, split_rule=rule, overwrite=force)
    typer.echo(f"wrote {path}: {len(confs)} conformations of {confs[0].formula} "
               f"({settings['kind']}), split {len(splits['train'])}/{len(splits['val'])}/"
               f"{len(splits['test'])} train/val/test, {settings['seconds']:.1f} s")


def label(
    file: str = typer.Argument(..., metavar="FILE",
                               help="Dataset file made by `qptbench sample`."),
    xc: str = typer.Option("b3lyp5", "--xc", metavar="NAME",
                           help="Functional (PySCF name; b3lyp5 = VWN5)."),
    basis: str = typer.Option("def2-svp", "--basis", metavar="NAME",
                              help="Gaussian basis set (PySCF name)."),
    grid_level: int = typer.Option(3, "--grid-level", metavar="0-9",
                                   help="PySCF DFT grid level."),
    eri: str = eri_option(),
    auxbasis: str = auxbasis_option(),
    workers: int = typer.Option(None, "--workers", "-w", metavar="N",
                                help="Worker processes on this machine.  [default: all cores "
                                "(os.sched_getaffinity)]"),
    threads: int = typer.Option(None, "--threads", metavar="T",
                                help="OpenMP threads per worker (PySCF).  [default: cores / "
                                "workers, at least 1]"),
    scheduler: str = typer.Option(None, "--scheduler", metavar="ADDR",
                                  help="Dask scheduler address (tcp://host:8786): run the SCFs "
                                  "on that cluster instead.  [default: none, run here]"),
    limit: int = typer.Option(None, "--limit", metavar="N", help="Label at most this many new "
                              "conformations (training set first).  [default: all]"),
    conv_tol: float = typer.Option(1e-10, "--conv-tol", metavar="HA",
                                   help="SCF energy convergence, Ha."),
    max_cycle: int = typer.Option(100, "--max-cycle", metavar="N", help="SCF iterations "
                                  "before a conformation is recorded as failed."),
    progress: bool = typer.Option(True, "--progress/--no-progress", show_default=False,
                                  help="Show a progress bar.  [default: on]"),
    as_json: bool = typer.Option(False, "--json/--no-json", show_default=False,
                                 help="Print the summary as one JSON object.  [default: off]"),
    labeller: str = labeller_option("  A file is resumed only with the labeller that started "
                                    "it."),
) -> None:
    """Label a dataset with PySCF RKS, or GPU4PySCF's (resumable).

    Stores E, H*, S, orbital energies and the cost of each label.  Rerun the same command
    after an interruption and only the missing conformations are computed.
    """
    from qptbench.data.labelling import LabellingInterrupted, label_dataset
    from qptbench.dft.level import LevelOfTheory

    level = LevelOfTheory(basis=basis, xc=xc, grid_level=grid_level, eri=eri, auxbasis=auxbasis)
    try:
        summary = label_dataset(file, level, workers=workers, threads_per_worker=threads,
                                scheduler=scheduler, limit=limit, conv_tol=conv_tol,
                                max_cycle=max_cycle, progress=progress, labeller=labeller)
    except LabellingInterrupted as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        typer.echo(summary.line())


def info(
    file: str = typer.Argument(..., metavar="FILE", help="Dataset file."),
    as_json: bool = typer.Option(False, "--json/--no-json", show_default=False,
                                 help="Print one JSON object instead.  [default: off]"),
) -> None:
    """Show a dataset's counts, splits, sampler, level and label cost."""
    from qptbench.data.store import Dataset

    with Dataset.open(file) as ds:
        cost = ds.label_cost()
        out = {
            "file": str(file), "name": ds.name, "formula": ds.molecule(0).formula,
            "n_atoms": int(ds.numbers.size), "charge": ds.charge,
            "n_conformations": len(ds), "n_labelled": len(ds.labelled()),
            "n_failed": len(ds.failed()),
            "n_unlabelled": int(len(ds) - len(ds.labelled()) - len(ds.failed())),
            "splits": {s: len(ds.split(s)) for s in ("train", "val", "test")},
            "sampler": ds.sampler,
            "level_of_theory": ds.level.as_dict() if ds.level else None,
            "labeller": ds.labeller,
            "label_cost": {"n_labels": cost.n_labels, "n_failed": cost.n_failed,
                           "wall_hours": cost.wall_seconds / 3600,
                           "cpu_hours": cost.cpu_seconds / 3600,
                           "mean_seconds_per_label": (None if math.isnan(
                               cost.mean_seconds_per_label) else cost.mean_seconds_per_label)},
        }
        line = cost.line()
    if as_json:
        typer.echo(json.dumps(out))
        return
    lot = out["level_of_theory"]
    typer.echo(f"{out['file']}: {out['name']} ({out['formula']}, {out['n_atoms']} atoms, charge "
               f"{out['charge']}), {out['n_conformations']} conformations from "
               f"{out['sampler'].get('kind', '?')}")
    typer.echo("splits (failed SCFs excluded): " + ", ".join(
        f"{k} {v}" for k, v in out["splits"].items()))
    fitted = f", density fitting ({lot['auxbasis']})" if lot and lot.get("eri") == "df" else ""
    typer.echo("level of theory: " + (f"{lot['xc']}/{lot['basis']}, grid level "
                                      f"{lot['grid_level']}{fitted}" if lot else
                                      "none (unlabelled)")
               + (f", labeller {out['labeller']}" if out["labeller"] else ""))
    typer.echo(f"labels: {out['n_labelled']} labelled, {out['n_failed']} failed, "
               f"{out['n_unlabelled']} to do")
    typer.echo(f"data creation: {line}")


def register(app: typer.Typer) -> None:
    """Add the data commands to the main app (called from qptbench.cli.main)."""
    app.command("sample")(friendly(sample))
    app.command("label")(friendly(label))
    data_app.command("info")(friendly(info))
    app.add_typer(data_app, name="data")
