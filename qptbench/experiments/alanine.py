"""``qptbench experiment alanine``: the QPT paper's Fig. 4 (extrapolation over the alanine
dipeptide's (φ, ψ) map) for QPT *and* the label-trained baseline, at equal wall-clock.

The paper trains QPT on conformations with φ, ψ drawn uniformly from [0, 180]² and maps
log |E_DFT − E_QPT| over all of [0, 360)² (B3LYP/STO-3G).  Here the comparison harness
(``qptbench.harness``) does the work; this module gives it the experiment's data and settings:

- the dataset (``build_dataset``): the train split is ``n_train`` draws from the training box
  (the baseline's PySCF labels, its data creation), the val split is the G × G map, cell centres
  ((i + ½) 360/G, so no point sits on the box's edges), labelled as references;
- QPT trains on fresh draws from the same box every step (``HarnessConfig.qpt_sampler =
  "dihedral"``, ``training.qpt_sources.DihedralSource``), its tensor preparation booked;
- the one evaluator scores every route and control on every map point; ``results.csv``
  (``write_point_results``) is one row per method, seed, k and map point, with the harness's
  columns plus ``phi_deg``, ``psi_deg`` and ``region``; then the map and the region table
  (``report.alanine``).

Evaluations run at the end of training only: the references are the whole map, and no route may
see, or select a checkpoint on, the region it is meant to extrapolate to (the harness's baseline
does not select; curves on the map would still be a look at it).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qptbench.data.regions import BAND_DEG, Region, classify, grid_points, parse_region
from qptbench.errors import InputError
from qptbench.evaluation.evaluator import METRICS
from qptbench.evaluation.protocol import K_VALUES
from qptbench.evaluation.results import COST_COLUMNS, SCORE_COLUMNS, write_csv
from qptbench.harness import (
    KINDS,
    RESULTS,
    HarnessConfig,
    collect_scores,
    route_costs,
)
from qptbench.harness import run as run_harness
from qptbench.ledger import Ledger
from qptbench.methods import METHODS, canonical

MOLECULE = "alanine_dipeptide"
DEFAULT_REGION = "0:180"
DEFAULT_K = 1  # E(D(H)), the energy of the predicted H's own density: what the paper maps
GRID_RULE = "cell centres (i + 1/2) 360/G, i = 0..G-1, phi-major"
SETTINGS_FILE = "alanine.json"
POINT_COLUMNS = ("method", "seed", "dft_iterations", "molecule", "dataset_index", "phi_deg",
                 "psi_deg", "region", *METRICS, "e_pred_minus_ref_mev", "floor_mev",
                 *SCORE_COLUMNS[SCORE_COLUMNS.index("scf_cycles"):], "scf_cycle_ratio",
                 *COST_COLUMNS, "fixes_h", "kind")

# Every preset: the paper's level of theory, QPT on fresh draws from the training box, and
# evaluations at the end only (see the module docstring).
COMMON: dict[str, Any] = dict(molecule=MOLECULE, basis="sto-3g", xc="b3lyp5",
                              qpt_sampler="dihedral", train_region=DEFAULT_REGION,
                              eval_every=0, eval_points=0)
PRESETS: dict[str, dict[str, Any]] = {
    # CI: the plumbing, the numbers mean nothing.  7 min on a quiet 2-core CPU before the
    # evaluator kept what fits of the 16 references' tensors (4.5 GB at grid level 1), about
    # 5 min estimated since: ~9 passes over the map outweigh the 20 PySCF labels (~80 s).
    "smoke": dict(grid=4, n_train=4, qpt_preset="smoke", qpt_steps=6, qhnet_preset="tiny",
                  qhnet_steps=6, grid_level=1, seeds=1, scf_molecules=0),
    # 42 min measured alone on a 2-core AMD EPYC (results/alanine-small, README): the
    # smallest map with points in the band (10 × 10), one seed.  The evaluator rebuilds a map
    # point's tensors (~1.5 s) on each of ~9 passes over the map, which costs more than its
    # PySCF label (~4 s); the 24 training labels (~2 min) leave the baseline ~1.5 min of its
    # 3.6-minute budget to train.
    "small": dict(grid=10, n_train=24, qpt_preset="tiny", qpt_steps=100_000,
                  qhnet_preset="tiny", qhnet_steps=100_000, budget_hours=0.06, grid_level=1,
                  seeds=1, scf_molecules=0),
    # The paper: a 24 × 24 map, GPT-medium for 200k steps; the baseline on 25k labels (the
    # harness's MD17 scale), QHNet's own schedule.  A GPU (cluster) job.
    "paper": dict(grid=24, n_train=25_000, qpt_preset="paper", qhnet_preset="qhnet",
                  qhnet_steps=200_000, grid_level=3, seeds=3, scf_molecules=50),
}


@dataclass(frozen=True)
class AlanineConfig:
    harness: HarnessConfig   # what the comparison runs (n_val = grid², train_region, ...)
    grid: int                # G: the map is G × G points
    k: int = DEFAULT_K       # DFT iterations after the network of the map and table
    band_deg: float = BAND_DEG

    @property
    def region(self) -> Region:
        return parse_region(self.harness.train_region or DEFAULT_REGION)


def make_config(preset: str = "smoke", *, grid: int | None = None,
                train_region: str | None = None, methods: tuple[str, ...] | None = None,
                seeds: int | None = None, budget_hours: float | None = None,
                n_train: int | None = None, basis: str | None = None, xc: str | None = None,
                k: int | None = None, label_workers: int | None = None,
                eri: str | None = None, auxbasis: str | None = None) -> AlanineConfig:
    """The experiment's settings: a preset, then the options given (None: the preset's)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    given = dict(train_region=train_region, seeds=seeds, budget_hours=budget_hours,
                 n_train=n_train, basis=basis, xc=xc, label_workers=label_workers,
                 eri=eri, auxbasis=auxbasis,
                 methods=None if methods is None else tuple(dict.fromkeys(
                     canonical(m) for m in methods)))
    values = {**COMMON, **PRESETS[preset], **{k_: v for k_, v in given.items() if v is not None}}
    preset_grid = values.pop("grid")
    grid = int(preset_grid if grid is None else grid)
    if grid < 2:
        raise InputError(f"--grid must be at least 2, got {grid}")
    region = parse_region(values["train_region"])
    values["train_region"] = str(region)
    cfg = replace(HarnessConfig(preset=preset), n_val=grid * grid, **values)
    _check(cfg)
    k = DEFAULT_K if k is None else int(k)
    if k not in K_VALUES:
        raise InputError(f"--k must be one of {', '.join(map(str, K_VALUES))}, got {k}")
    return AlanineConfig(cfg, grid, k)


def _check(cfg: HarnessConfig) -> None:
    """Bad options fail here, in one line, before anything is sampled or labelled."""
    from qptbench.dft.geometry import Molecule
    from qptbench.dft.tensors import build_mole
    from qptbench.dft.xc import get_functional

    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown or not cfg.methods:
        raise InputError(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(METHODS)}")
    for name in ("seeds", "n_train"):
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.budget_hours is not None and not cfg.budget_hours > 0:
        raise InputError(f"--budget-hours must be > 0, got {cfg.budget_hours}")
    get_functional(cfg.xc)
    cfg.level()  # a bad --eri, in one line
    build_mole(Molecule.builtin(cfg.molecule), cfg.basis)


def build_dataset(cfg: HarnessConfig, out: Path, ledger: Ledger, say) -> Path:
    """The harness's dataset hook: ``n_train`` draws from the training box (train split) and
    the G × G map (val split).  The sampler settings keep each conformation's (φ, ψ) as
    measured on its geometry, which is what ``results.csv`` reports."""
    from qptbench.data.dihedral import (
        conformations_at,
        dihedral_angles,
        dihedral_settings,
        sample_dihedrals,
    )
    from qptbench.data.store import create_dataset
    from qptbench.dft.geometry import Molecule

    path = out / "data" / "dataset.h5"
    if path.exists():
        return path
    grid = math.isqrt(cfg.n_val)
    region = parse_region(cfg.train_region or DEFAULT_REGION)
    box = dict(phi_range=region.phi.bounds, psi_range=region.psi.bounds)
    base = Molecule.builtin(cfg.molecule)
    n = cfg.n_train + grid * grid
    say(f"drawing {cfg.n_train} conformations with phi, psi in {region} and the {grid} x {grid} "
        "map of alanine dipeptide")
    with ledger.phase("sample", method="shared", n=n, sampler="dihedral") as extra:
        frames = [*sample_dihedrals(base, cfg.n_train, seed=cfg.seed, **box),
                  *conformations_at(grid_points(grid), base)]
        # wrapped to [0, 360) and rounded: a grid point set to 18° measures 17.999999999997°
        angles = np.round(np.mod([dihedral_angles(m) for m in frames], 360.0), 6) % 360.0
        sampler = {"kind": "alanine-map", "train": dihedral_settings(cfg.seed, **box),
                   "train_region": str(region), "grid": grid, "grid_rule": GRID_RULE,
                   "phi_deg": angles[:, 0].tolist(), "psi_deg": angles[:, 1].tolist()}
        splits = {"train": np.arange(cfg.n_train), "val": np.arange(cfg.n_train, n)}
        create_dataset(path, frames, name=cfg.molecule, sampler=sampler, splits=splits,
                       split_seed=cfg.seed,
                       split_rule="alanine map: train = draws from the box, val = the map")
        extra["file"] = str(path)
    return path


def write_point_results(out: Path, band_deg: float = BAND_DEG) -> Path:
    """The harness's results hook: ``scores.csv`` as always, and ``results.csv`` with one row
    per method (or control), seed, k and map point: its scores, its (φ, ψ) and region, and the
    route's costs from the ledger (the same for every point of a method and seed)."""
    from qptbench.data.store import Dataset

    rows = collect_scores(out)
    costs = route_costs(out)
    with Dataset.open(out / "data" / "dataset.h5") as ds:
        sampler = ds.sampler
    phi, psi = np.asarray(sampler["phi_deg"]), np.asarray(sampler["psi_deg"])
    index = np.array([r["dataset_index"] for r in rows], dtype=np.int64)
    regions = classify(phi[index], psi[index], parse_region(sampler["train_region"]), band_deg)
    nan = dict.fromkeys(COST_COLUMNS, float("nan"))
    for r, i, region in zip(rows, index, regions, strict=True):
        r.update(phi_deg=float(phi[i]), psi_deg=float(psi[i]), region=str(region),
                 kind=KINDS.get(r["method"], "method"),
                 # as results.csv's, for one molecule: effective cycles / minao's
                 scf_cycle_ratio=r["scf_effective_cycles"] / r["scf_cycles_minao"],
                 **costs.get((r["method"], r["seed"]), nan))
    return write_csv(out / RESULTS, rows, POINT_COLUMNS)


def write_outputs(out: Path, acfg: AlanineConfig) -> tuple[list[Path], str]:
    """The map (PNG, SVG) and the region table (markdown, LaTeX, CSV) from results.csv;
    returns the paths and the table's markdown."""
    from qptbench.report import alanine as report
    from qptbench.report.tables import render

    rows = report.read_points(out / RESULTS)
    methods = list(acfg.harness.methods)
    frame = report.region_table(rows, methods, acfg.k)
    title = report.table_title(acfg.region, acfg.band_deg, acfg.k)
    written = report.write_region_table(out, frame, title)
    lot = acfg.harness.level()
    fig = report.map_figure(rows, methods, acfg.grid, acfg.region, acfg.k, acfg.band_deg,
                            subtitle=f"{lot.xc}/{lot.basis}, grid level {lot.grid_level}; "
                            f"mean over seeds at k = {acfg.k}")
    written += report.write_map(out, fig)
    return written, render(frame, "markdown", title)


def load_settings(out_dir: str | Path) -> AlanineConfig:
    """The settings a finished experiment drew its map and table with (``alanine.json``)."""
    saved = json.loads((Path(out_dir) / SETTINGS_FILE).read_text())
    harness = {k_: tuple(v) if isinstance(v, list) else v for k_, v in saved["harness"].items()}
    return AlanineConfig(HarnessConfig(**harness), int(saved["grid"]), int(saved["k"]),
                         float(saved["band_deg"]))


def is_experiment(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SETTINGS_FILE).exists()


def publish(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """``qptbench publish`` for an experiment: the harness's small evidence with the per-point
    ``results.csv`` copied as it is (rebuilding it needs the HDF5 dataset, which is never
    published), ``alanine.json``, then the map and region table drawn again from the copy."""
    import shutil

    from qptbench.report.outputs import publish_run

    src, dst = Path(run_dir), Path(out_dir)
    written = publish_run(src, dst)
    shutil.copyfile(src / SETTINGS_FILE, dst / SETTINGS_FILE)
    acfg = load_settings(dst)
    drawn, table = write_outputs(dst, acfg)
    summary = dst / "summary.txt"
    maps = ", ".join(p.name for p in drawn if p.suffix in (".png", ".svg"))
    summary.write_text(f"{summary.read_text()}\n{table}\nmap: {maps}\n")
    return [*written, dst / SETTINGS_FILE, *drawn]


def run(acfg: AlanineConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
        progress: bool = True) -> str:
    """The experiment end to end; returns the text to print (the harness's summary, the region
    table, where the map is)."""
    out = Path(out_dir)
    text = run_harness(acfg.harness, out, device, resume=resume, progress=progress,
                       make_dataset=build_dataset,
                       results=lambda o: write_point_results(o, acfg.band_deg))
    (out / SETTINGS_FILE).write_text(json.dumps(
        {"grid": acfg.grid, "grid_rule": GRID_RULE, "train_region": str(acfg.region),
         "band_deg": acfg.band_deg, "k": acfg.k, "harness": asdict(acfg.harness)}, indent=1))
    written, table = write_outputs(out, acfg)
    maps = ", ".join(str(p) for p in written if p.suffix in (".png", ".svg"))
    text += f"\n{table}\nmap: {maps}\n"
    (out / "summary.txt").write_text(text)
    return text
