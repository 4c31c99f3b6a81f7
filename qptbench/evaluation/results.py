"""``scores.csv`` (one row per method, seed, k and molecule) and ``results.csv`` (one row per
method, seed and k), written with the csv module: tidy files for pandas users, and the only input
of tables and plots.

results.csv columns: ``method, seed, dft_iterations`` then, per metric, the mean over molecules
under the plain name (``delta_e_mev``, ``delta_h_uha``, ``delta_eps_occ_uha``,
``delta_eps_all_uha``, ``psi_occ``) and ``*_median``, ``*_ci_low``, ``*_ci_high`` (95 % bootstrap
over molecules); ``floor_mev``; the SCF columns (means over the molecules that have them; the
ratio is mean effective cycles / mean minao cycles); costs in hours (``wall_hours`` = the route's
data creation + tensor preparation + training) and context (``n_molecules``, ``fixes_h``, ...).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qptbench.evaluation.evaluator import METRICS
from qptbench.evaluation.stats import summarize

SCORE_COLUMNS = ("method", "seed", "dft_iterations", "molecule", "dataset_index", *METRICS,
                 "e_pred_minus_ref_mev", "floor_mev", "fixes_h", "scf_cycles",
                 "scf_effective_cycles", "scf_cycles_minao", "scf_seconds", "scf_seconds_minao",
                 "scf_converged")
COST_COLUMNS = ("wall_hours", "data_creation_hours", "tensor_hours", "training_hours",
                "cpu_hours", "steps")
RESULT_COLUMNS = ("method", "seed", "dft_iterations", *METRICS, "floor_mev", "scf_cycles",
                  "scf_cycles_minao", "scf_effective_cycles", "scf_cycle_ratio", "scf_seconds",
                  "scf_seconds_minao", *COST_COLUMNS, "n_molecules", "n_scf_molecules",
                  "fixes_h", "kind",
                  *[f"{m}_{s}" for m in METRICS for s in ("median", "ci_low", "ci_high")])


def _mean(values: Iterable[float]) -> float:
    a = np.array([v for v in values if isinstance(v, (int, float))], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def aggregate(rows: Sequence[dict[str, Any]], costs: dict[tuple[str, Any], dict[str, float]]
              | None = None, kinds: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """results.csv rows from scores rows; ``costs[(method, seed)]`` adds the cost columns."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["seed"], int(r["dft_iterations"])), []).append(r)
    out = []
    for (method, seed, k), group in groups.items():
        row: dict[str, Any] = {"method": method, "seed": seed, "dft_iterations": k}
        for m in METRICS:
            s = summarize([float(r[m]) for r in group])
            row[m] = s["mean"]
            row.update({f"{m}_{q}": s[q] for q in ("median", "ci_low", "ci_high")})
        row["floor_mev"] = _mean(float(r["floor_mev"]) for r in group)
        scf = [r for r in group if _finite(r.get("scf_cycles"))]
        for c in ("scf_cycles", "scf_cycles_minao", "scf_effective_cycles", "scf_seconds",
                  "scf_seconds_minao"):
            row[c] = _mean(float(r[c]) for r in scf)
        row["scf_cycle_ratio"] = (row["scf_effective_cycles"] / row["scf_cycles_minao"]
                                  if scf else float("nan"))
        row["n_molecules"], row["n_scf_molecules"] = len(group), len(scf)
        row["fixes_h"] = bool(group[0]["fixes_h"])
        row["kind"] = (kinds or {}).get(method, "method")
        cost = (costs or {}).get((method, seed), {})
        row.update({c: cost.get(c, float("nan")) for c in COST_COLUMNS})
        out.append(row)
    return out


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: _cell(r.get(c, "")) for c in columns})
    tmp.replace(path)
    return path


def _cell(x: Any) -> Any:
    if isinstance(x, float):
        return "" if math.isnan(x) else repr(x)
    return x


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return [dict(r) for r in csv.DictReader(f)]


_INT_SCORE_COLUMNS = ("dft_iterations", "molecule", "dataset_index")


def typed_score(row: dict[str, str]) -> dict[str, Any]:
    """One scores.csv row with its types back: seed int ("" for controls), k, molecule and
    dataset index int, fixes_h bool, every other column a float (NaN where empty)."""
    r: dict[str, Any] = dict(row)
    r["seed"] = "" if r["seed"] == "" else int(r["seed"])
    r["fixes_h"] = r["fixes_h"] in (True, "True")
    for k in SCORE_COLUMNS:
        if k in _INT_SCORE_COLUMNS:
            r[k] = int(r[k])
        elif k not in ("method", "seed", "fixes_h"):
            r[k] = float(r[k]) if r[k] != "" else float("nan")
    return r


def read_scores(path: str | Path) -> list[dict[str, Any]]:
    return [typed_score(r) for r in read_csv(path)]


def score_stats(rows: Sequence[dict[str, Any]], method: str, k: int, key: str
                ) -> dict[str, float]:
    """``stats.summarize`` of one metric of one method at one k, grouped by seed (typed rows)."""
    groups: dict[Any, list[float]] = {}
    for r in rows:
        if r["method"] == method and int(r["dft_iterations"]) == k:
            groups.setdefault(r["seed"], []).append(float(r[key]))
    return summarize(groups)
