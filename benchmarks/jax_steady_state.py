"""The JAX engine over 100 training-like calls: compile time apart, then per-call time of calls
1-10 against 91-100 (each at a new H), and the traces and compiles that happened after the first.

    python benchmarks/jax_steady_state.py --molecule uracil --threads 2

A steady state means the late calls cost what the early ones did and nothing retraced or
recompiled (the pyscfad and pyscf-ipu issue trackers show recompilation silently dominating
timings).  The torch engine's E + backward at the same H is timed beside it, interleaved, as a
ratio.  Absolute times on shared machines are noise; the ratio and the flatness are the point.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="uracil", help="a built-in molecule (uracil)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; with 1, XLA is held to one thread as well")
    parser.add_argument("--calls", type=int, default=100, help="steady-state calls (>= 20)")
    parser.add_argument("--mixes", default="",
                        help="the sandwich's mixing schedule, e.g. '0.5,0.0' (default: none, "
                             "the one-iteration energy side_by_side.py times)")
    parser.add_argument("--eri", default="dense", choices=["dense", "df"])
    args = parser.parse_args()
    if args.calls < 20:
        parser.error("--calls must be >= 20 (two windows of 10)")
    return args


def main() -> None:
    args = _parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        # before numpy starts its pools: JAX's eigh calls LAPACK, whose threads otherwise spin
        # against XLA's and torch's (uracil: 0.2 s per eigh on a loaded 2-core host)
        os.environ.setdefault(var, str(args.threads))
    if args.threads == 1:  # must be set before JAX starts its CPU client
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_"
                                   "eigen=false intra_op_parallelism_threads=1").strip()
    import jax
    import numpy as np
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from side_by_side import machine_line

    from qptbench.dft import energy as torch_engine
    from qptbench.dft import jax_engine
    from qptbench.dft.geometry import Molecule
    from qptbench.dft.jax_tensors import from_torch
    from qptbench.dft.level import LevelOfTheory
    from qptbench.dft.tensors import build_tensors

    torch.set_num_threads(args.threads)
    mixes = tuple(float(m) for m in args.mixes.split(",") if m.strip())
    level = LevelOfTheory(eri=args.eri)
    mol = Molecule.builtin(args.molecule)
    t = build_tensors(mol, level)
    tj = from_torch(t)
    with torch.no_grad():
        h0 = torch_engine.fock(t, t.dm_minao)
    rng = np.random.default_rng(0)

    def new_h() -> np.ndarray:  # a network's next output: H plus a small symmetric change
        x = rng.normal(scale=1e-3, size=h0.shape)
        return h0.numpy() + x + x.T

    def call_jax(h: np.ndarray) -> float:
        tic = time.perf_counter()
        jax.block_until_ready(jax_engine.energy_and_grad(tj, h, mixes))
        return time.perf_counter() - tic

    def call_torch(h: np.ndarray) -> float:
        tic = time.perf_counter()
        ht = torch.from_numpy(h).requires_grad_(True)
        torch_engine.energy(t, ht, mixes).backward()
        return time.perf_counter() - tic

    first = call_jax(new_h())                       # traces, compiles and runs once
    traces = dict(jax_engine.TRACES)
    compiled = jax_engine._energy_and_grad_jit._cache_size()
    times, torch_times = [], []
    for k in range(args.calls):
        h = new_h()
        times.append(call_jax(h))
        if k < 10 or k >= args.calls - 10:        # torch beside the two windows only
            torch_times.append(call_torch(h))
    steady = statistics.median(times)
    early, late = statistics.median(times[:10]), statistics.median(times[-10:])
    torch_early, torch_late = (statistics.median(torch_times[:10]),
                               statistics.median(torch_times[-10:]))
    retraces = sum(jax_engine.TRACES.values()) - sum(traces.values())
    compiles = jax_engine._energy_and_grad_jit._cache_size() - compiled
    print(machine_line(args.threads))
    print(f"# {args.molecule} (N_AO {t.n_ao}), {level.xc}/{level.basis}, grid {level.grid_level}, "
          f"eri {args.eri}, mixes {mixes or '()'}; E + dE/dH per call at a new H")
    print(f"compile (first call minus steady median): {first - steady:8.3f} s")
    print(f"calls 1-10:   median {early:.4f} s  max {max(times[:10]):.4f} s")
    print(f"calls {args.calls - 9}-{args.calls}: median {late:.4f} s  max {max(times[-10:]):.4f} s"
          f"  (late/early {late / early:.2f})")
    print(f"torch E + backward at the same H, interleaved: median {torch_early:.4f} s (calls "
          f"1-10), {torch_late:.4f} s (last 10); jax/torch {early / torch_early:.2f}, "
          f"{late / torch_late:.2f}")
    print(f"retraces after the first call: {retraces}, new compiles: {compiles}")


if __name__ == "__main__":
    main()
