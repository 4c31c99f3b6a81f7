"""The exponent p of the cost of E + backward vs N_AO (t ≈ c N_AO^p, least squares on log t vs
log N_AO), from an asv results file or from a quick run of its own.

    python benchmarks/fit_exponent.py .asv/results/ci-2core/<commit>-existing-*.json
    python benchmarks/fit_exponent.py --run --eri df --molecule water ethanol uracil \\
        alanine_dipeptide ace_ala4_nme

From a results file it reads ``bench_energy.Energy.time_forward_backward`` (or ``--benchmark``)
and fits one series per device, backend and ERI treatment, over the molecules that ran (n/a and
failed cases are left out; a series needs two sizes).  ``--run`` builds the tensors here and
times one-iteration E + backward (best of ``--repeat`` after a warm-up call) at 2 threads.
Goal (issue 14): p <= 3 with density fitting.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

BENCHMARK = "bench_energy.Energy.time_forward_backward"


def exponent(n_ao: Iterable[float], seconds: Iterable[float]) -> float:
    """Slope of the least-squares line through (log N_AO, log t)."""
    xs = [math.log(n) for n in n_ao]
    ys = [math.log(t) for t in seconds]
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("need times at two or more different N_AO")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


def asv_series(results: Mapping, benchmark: str, sizes: Mapping[str, int]
               ) -> dict[tuple[str, ...], list[tuple[int, str, float]]]:
    """{(other parameter values): [(N_AO, molecule, seconds), ...]} from an asv (0.6) results
    file's JSON: ``results[benchmark]`` holds a value per point of the product of its
    parameter lists (Python reprs), in ``result_columns`` order; the first parameter is the
    molecule.  Missing, failed or n/a values (None, NaN) are left out."""
    columns = results.get("result_columns", ["result", "params"])
    entry = results["results"].get(benchmark)
    if entry is None:
        raise KeyError(f"{benchmark} is not in this results file")
    values = entry[columns.index("result")]
    params = [[ast.literal_eval(p) for p in values_] for values_ in entry[columns.index("params")]]
    series: dict[tuple[str, ...], list[tuple[int, str, float]]] = {}
    for point, value in zip(itertools.product(*params), values, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        name, rest = point[0], tuple(str(p) for p in point[1:])
        if name in sizes:
            series.setdefault(rest, []).append((sizes[name], name, float(value)))
    return {k: sorted(v) for k, v in series.items()}


def direct_series(molecules: list[str], eri: str, repeat: int, threads: int,
                  grid_level: int = 3) -> list[tuple[int, str, float]]:
    """[(N_AO, molecule, best E + backward seconds)], measured here on the CPU."""
    import torch
    from pyscf import lib

    from qptbench.dft.energy import energy, fock
    from qptbench.dft.geometry import Molecule
    from qptbench.dft.level import LevelOfTheory
    from qptbench.dft.tensors import build_tensors

    torch.set_num_threads(threads)
    lib.num_threads(threads)
    level = LevelOfTheory(eri=eri, grid_level=grid_level)
    out = []
    for name in molecules:
        t = build_tensors(Molecule.builtin(name), level)
        h0 = fock(t, t.dm_minao).detach()

        def step(t=t, h0=h0) -> None:
            energy(t, h0.clone().requires_grad_(True)).backward()

        step()  # warm-up: allocator, autograd
        best = math.inf
        for _ in range(repeat):
            tic = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - tic)
        out.append((t.n_ao, name, best))
        print(f"{name:18s} N_AO {t.n_ao:4d}  E+bwd {best:9.3f} s", flush=True)
        del t, h0
    return out


def report(label: str, points: list[tuple[int, str, float]]) -> str:
    sizes = sorted({n for n, _, _ in points})
    if len(sizes) < 2:
        return f"{label}: fewer than two sizes ran, no fit"
    p = exponent([n for n, _, _ in points], [s for _, _, s in points])
    return (f"{label}: exponent {p:.2f} (E + backward vs N_AO, log-log least squares, "
            f"N_AO {sizes[0]}..{sizes[-1]}, {len(points)} molecules)")


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import MOLECULES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", help="an asv results JSON file")
    parser.add_argument("--benchmark", default=BENCHMARK)
    parser.add_argument("--run", action="store_true", help="measure here instead")
    parser.add_argument("--eri", choices=["dense", "df"], default="df")
    parser.add_argument("--molecule", nargs="+", default=["water", "ethanol", "uracil",
                                                          "alanine_dipeptide"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid-level", type=int, default=3,
                        help="with --run: PySCF grid level (1 lets the 485-AO peptide fit 24 GB)")
    args = parser.parse_args(argv)
    if args.run == bool(args.results):
        parser.error("give an asv results file, or --run")
    if args.run:
        points = direct_series(args.molecule, args.eri, args.repeat, args.threads,
                               args.grid_level)
        print(report(f"eri={args.eri}, grid level {args.grid_level}, {args.threads} threads, "
                     f"best of {args.repeat}", points))
        return
    data = json.loads(Path(args.results).read_text())
    for rest, points in sorted(asv_series(data, args.benchmark, MOLECULES).items()):
        for n, name, s in points:
            print(f"{', '.join(rest):24s} {name:18s} N_AO {n:4d}  {s:9.3f} s")
        print(report(", ".join(rest) or args.benchmark, points))


if __name__ == "__main__":
    main()
