"""A synthetic run directory with the layout `qptbench run` writes, and known costs and scores.

Layout (as in a real smoke run): ``run.json`` (``methods``, ``seeds``), one ``ledger.jsonl``,
``{method}/seed{s}/`` with ``metrics.jsonl`` (curve points ``{metric}_k{k}``, ``trained_seconds``),
``train.jsonl``, ``model.json``, ``inference.json``, ``scores.csv``; ``controls/scores.csv``; and
at the top ``scores.csv`` + ``results.csv`` (written with ``qptbench.evaluation.results``).

Costs in wall seconds; f = 1 + seed (seed 1 trains twice as long as seed 0, so a mix-up of
seeds shows in every number):
- shared: sample 36, reference 72, evaluator tensors 5 ("validation tensors (evaluator)");
- qhnet: label 3600 (no seed: its data creation, shared by every seed); per seed: train
  3 x 600 f (steps 10, 20, 30), eval 3 x 6 at those steps + 4 (final scores);
- qpt per seed: tensors 9 ("validation samples": evaluation cost), train 3 x 420 f of which
  180 f is tensor preparation inside the loop (a ``tensors`` entry, ``included_in: "train"``),
  eval 3 x 3 + 4.
CPU seconds: qhnet label 7000, qhnet train 1100 f per entry; qpt train 700 f per entry,
with 300 f of in-loop tensor preparation; evaluation entries CPU = wall.

Scores: ``score_value(method, seed, k, molecule, metric)`` for the methods and controls
(``zero``, ``scf-diis``, ``label``); QPT's gauge metrics at k = 0 are NaN (energy-trained);
the label scores at the floor (ΔE = floor, ΔH = 0 at k = 0); molecule 0 has the SCF columns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

STEPS = (10, 20, 30)
K_VALUES = (0, 1, 3)
N_MOL = 4
SCF_MOLECULES = 1
CONTROLS = ("zero", "scf-diis", "label")
METRICS = ("delta_e_mev", "delta_h_uha", "delta_eps_occ_uha", "delta_eps_all_uha", "psi_occ")
GAUGE = METRICS[1:]
ENV = {"host": "testhost", "processor": "x86_64", "cpu_count": 2, "torch_threads": 2,
       "device": "cpu", "torch_version": "2.13.0", "pyscf_version": "2.14.0"}
PARAMETERS = {"qpt": 1234, "qhnet": 567}

# Error scale of each route: per-molecule values are BASE[metric] * SCALE * (1 + seed) * (m + 1)
# / (1 + k) (ψ: 1 - that / 1e6); the label control sits at the floor.
SCALE = {"qpt": 1.0, "qhnet": 0.5, "zero": 40.0, "scf-diis": 8.0}
BASE = {"delta_e_mev": 10.0, "delta_h_uha": 1000.0, "delta_eps_occ_uha": 3000.0,
        "delta_eps_all_uha": 2000.0, "psi_occ": 1000.0}


def factor(seed: int | None) -> int:
    return 1 + (seed or 0)


def floor_mev(molecule: int) -> float:
    return 1e-8 * (molecule + 1)


def score_value(method: str, seed: int | None, k: int, molecule: int, metric: str) -> float:
    """The per-molecule score scores.csv holds (NaN where a metric is n/a)."""
    if method == "qpt" and k == 0 and metric in GAUGE:
        return math.nan
    if method == "label":
        return {"delta_e_mev": floor_mev(molecule), "psi_occ": 1.0}.get(
            metric, 0.0 if k == 0 else 1e-3 * (molecule + 1))
    x = BASE[metric] * SCALE[method] * factor(seed) * (molecule + 1) / (1 + k)
    return 1 - x / 1e6 if metric == "psi_occ" else x


def curve_value(method: str, seed: int, key: str, k: int, step: int) -> float:
    """A training-curve point: the mean over molecules at the end, larger before."""
    mean = sum(score_value(method, seed, k, m, key) for m in range(N_MOL)) / N_MOL
    if math.isnan(mean) or key == "psi_occ":
        return mean
    return mean * STEPS[-1] / step


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _ledger(methods: tuple[str, ...], seeds: tuple[int, ...]) -> list[dict]:
    ledger = [{"phase": "sample", "wall_seconds": 36.0, "cpu_seconds": 30.0, "method": "shared",
               "n": 6},
              {"phase": "reference", "wall_seconds": 72.0, "cpu_seconds": 70.0,
               "method": "shared", "what": "validation labels", "n_labels": N_MOL},
              {"phase": "tensors", "wall_seconds": 5.0, "cpu_seconds": 5.0, "method": "shared",
               "what": "validation tensors (evaluator)", "n": N_MOL}]
    if "qhnet" in methods:
        ledger.append({"phase": "label", "wall_seconds": 3600.0, "cpu_seconds": 7000.0,
                       "method": "qhnet", "what": "training labels", "n_labels": 100})
    for seed in seeds:
        f = factor(seed)
        tag = {"seed": seed}
        for method in methods:
            if method == "qpt":
                ledger.append({"phase": "tensors", "wall_seconds": 9.0, "cpu_seconds": 9.0,
                               "what": "validation samples (QPT inputs)", "n": N_MOL,
                               "method": "qpt", **tag})
            train_wall = {"qpt": 420.0, "qhnet": 600.0}[method] * f
            train_cpu = {"qpt": 700.0, "qhnet": 1100.0}[method] * f
            eval_s = {"qpt": 3.0, "qhnet": 6.0}[method]
            for step in STEPS:
                ledger += [{"phase": "train", "wall_seconds": train_wall,
                            "cpu_seconds": train_cpu, "step": step, "method": method, **tag},
                           {"phase": "eval", "wall_seconds": eval_s, "cpu_seconds": eval_s,
                            "step": step, "method": method, **tag}]
            if method == "qpt":
                ledger.append({"phase": "tensors", "wall_seconds": 180.0 * f,
                               "cpu_seconds": 300.0 * f, "what": "training samples", "n": 50,
                               "workers": 0, "included_in": "train",
                               "hidden_wall_seconds": 0.0, "method": "qpt", **tag})
            ledger.append({"phase": "eval", "wall_seconds": 4.0, "cpu_seconds": 4.0,
                           "what": "final scores (shared evaluator)", "n": N_MOL,
                           "method": method, **tag})
    return ledger


def score_rows(method: str, seed: int | None) -> list[dict]:
    """scores.csv rows of one method and seed (or one control: seed None)."""
    rows = []
    for m in range(N_MOL):
        for k in K_VALUES:
            e = score_value(method, seed, k, m, "delta_e_mev")
            row = {"method": method, "seed": "" if seed is None else seed,
                   "dft_iterations": k, "molecule": m, "dataset_index": 100 + m,
                   **{x: score_value(method, seed, k, m, x) for x in METRICS},
                   "e_pred_minus_ref_mev": e if m % 2 else -e, "floor_mev": floor_mev(m),
                   "fixes_h": method != "qpt",
                   **dict.fromkeys(("scf_cycles", "scf_effective_cycles", "scf_cycles_minao",
                                    "scf_seconds", "scf_seconds_minao", "scf_converged"),
                                   math.nan)}
            if m < SCF_MOLECULES:
                cycles = {"label": 1, "zero": 8}.get(method, 5)
                row.update(scf_cycles=cycles, scf_effective_cycles=cycles + k,
                           scf_cycles_minao=10, scf_seconds=0.1 * cycles,
                           scf_seconds_minao=1.0, scf_converged=1.0)
            rows.append(row)
    return rows


def make_run_dir(root: Path, methods: tuple[str, ...] = ("qpt", "qhnet"),
                 molecule: str = "water", seeds: tuple[int, ...] = (0, 1)) -> Path:
    from qptbench.evaluation.results import (
        RESULT_COLUMNS,
        SCORE_COLUMNS,
        aggregate,
        write_csv,
    )
    from qptbench.report.rundir import load_run

    root.mkdir(parents=True, exist_ok=True)
    (root / "run.json").write_text(json.dumps({
        "molecule": molecule, "preset": "smoke", "methods": list(methods), "seeds": list(seeds),
        "level_of_theory": {"basis": "def2-svp", "xc": "b3lyp5", "grid_level": 3,
                            "eri_threshold": 0.0},
        "environment": ENV}))
    _write_jsonl(root / "ledger.jsonl", _ledger(methods, seeds))
    rows = []
    for method in methods:
        for seed in seeds:
            mdir = root / method / f"seed{seed}"
            mdir.mkdir(parents=True, exist_ok=True)
            f = factor(seed)
            wall = {"qpt": 420.0, "qhnet": 600.0}[method] * f
            _write_jsonl(mdir / "metrics.jsonl", [
                {"step": s, "eval_seconds": 1.0, "trained_seconds": wall * (i + 1),
                 "n_val": N_MOL,
                 **{f"{key}_k{k}": curve_value(method, seed, key, k, s)
                    for k in K_VALUES for key in METRICS},
                 "floor_mev": sum(floor_mev(m) for m in range(N_MOL)) / N_MOL}
                for i, s in enumerate(STEPS)])
            _write_jsonl(mdir / "train.jsonl",
                         [{"step": s, "lr": 1e-3, "grad_norm": 1.0, "loss": 1.0 / s}
                          for s in STEPS] + [{"step": 30, "skipped": True, "skip_reason": "x"}])
            (mdir / "model.json").write_text(json.dumps({"parameters": PARAMETERS[method]}))
            inference = {"network_seconds": 0.01 if method == "qpt" else 0.02,
                         "pyscf_scf_seconds": 0.5, "n": 4}
            if method == "qpt":
                inference.update({"dft_seconds": 0.03, "tensor_seconds": 0.2})
            (mdir / "inference.json").write_text(json.dumps(inference))
            mine = score_rows(method, seed)
            write_csv(mdir / "scores.csv", mine, SCORE_COLUMNS)
            rows += mine
    controls = [r for c in CONTROLS for r in score_rows(c, None)]
    write_csv(root / "controls" / "scores.csv", controls, SCORE_COLUMNS)
    rows += controls
    write_csv(root / "scores.csv", rows, SCORE_COLUMNS)
    run = load_run(root)
    costs = {(m, s): run.cost_hours(m, s) for m in methods for s in seeds}
    write_csv(root / "results.csv", aggregate(rows, costs, dict.fromkeys(CONTROLS, "control")),
              RESULT_COLUMNS)
    return root
