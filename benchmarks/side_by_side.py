"""Ours vs PySCF for the same work, timed in one process: a quick ratio check before asv.

    python benchmarks/side_by_side.py --molecule uracil --threads 2

Prints, per molecule: tensor preparation vs PySCF's raw integrals + grid + AO values, and our
one-iteration energy + backward vs PySCF's warm Fock build + energy on the same density; then the
JAX engine's E + backward (steady state: its first call, the compilation, is not timed) and its
ratio to the same PySCF figure, and pyscfad's E + dE/dD on that density (``pyscfad_peer``;
"n/a" where pyscfad is not installed).

    python benchmarks/side_by_side.py --eri df --molecule uracil alanine_dipeptide

With ``--eri df`` (density fitting over ``--auxbasis``) the same columns compare our DF tensors
with PySCF's own DF precompute (``bench_tensors.pyscf_raw``: ``with_df.build()``, its 3-index
integrals and their Cholesky whitening kept in core, plus grid, AO values and minao guess), and
our DF energy + backward with PySCF's warm DF-RKS Fock build + energy; the JAX engine's column
is its DF path, and pyscfad (set up for dense ERIs) prints "n/a".
A molecule whose estimated memory (``qptbench.dft.memory``: our tensors beside PySCF's) exceeds
the limit (``--memory-limit-gb``, default 80% of the memory available) is skipped with a
comment line saying so.
Ours and PySCF's are timed alternately, one call of each per round (tensor preparation: the best
round; energy: the median round).  Absolute times on shared machines are noise; the ratios are
the point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pyscfad_peer, however this is run
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.bench_tensors

def alternating(fns, repeat: int) -> list[list[float]]:
    """Each function's times over ``repeat`` rounds, one call of each per round: load that
    comes and goes on a shared machine then falls on both sides of a ratio alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            out.append(best_of(fn, 1))
    return times


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def machine_line(threads: int) -> str:
    """Where the numbers came from: CPU model, cores, threads, versions, commit."""
    import os
    import platform
    import subprocess
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return (f"# {cpu}, {os.cpu_count()} cores, {threads} threads; torch "
            f"{metadata.version('torch')}, pyscf {metadata.version('pyscf')}; commit {commit}")


def too_big(mol, level, limit_gb: float | None) -> str | None:
    """Why ``mol`` is skipped (its estimate over the limit), or None: our tensors, the moment
    of building them and PySCF's warm RKS, held together in this process."""
    from qptbench.dft.memory import estimate_tensor_bytes, pyscf_scf_bytes, resolve_limit

    limit, source = resolve_limit(limit_gb)
    est = estimate_tensor_bytes(mol, level)
    need = est["total"] + est["build"] + pyscf_scf_bytes(mol, level)
    if limit is None or need <= limit:
        return None
    return f"needs about {need / 1e9:.1f} GB, over the limit of {limit / 1e9:.1f} GB ({source})"


def main() -> None:
    import jax
    import pyscfad_peer

    from benchmarks.bench_tensors import pyscf_raw
    from qptbench.dft import jax_engine
    from qptbench.dft.energy import energy, fock
    from qptbench.dft.geometry import Molecule
    from qptbench.dft.jax_tensors import from_torch
    from qptbench.dft.labels import make_rks
    from qptbench.dft.level import LevelOfTheory
    from qptbench.dft.tensors import build_tensors

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", nargs="+", default=["water", "ethanol", "uracil"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--eri", choices=["dense", "df"], default="dense",
                        help="two-electron integrals: exact (dense) or density-fitted (df)")
    parser.add_argument("--auxbasis", default="def2-universal-jkfit",
                        help="fitting basis with --eri df (PySCF name)")
    parser.add_argument("--grid-level", type=int, default=3,
                        help="PySCF grid level (1 lets the 485-AO peptide fit 24 GB with DF)")
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="skip molecules estimated above this (default: 80%% of available)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from pyscf import lib

    lib.num_threads(args.threads)
    level = LevelOfTheory(eri=args.eri, auxbasis=args.auxbasis, grid_level=args.grid_level)

    print(machine_line(args.threads))
    fitted = f", density fitting ({level.auxbasis})" if level.is_df else ""
    print(f"# {level.xc}/{level.basis}, grid level {level.grid_level}{fitted}; "
          f"best of {args.repeat}")
    print("molecule  N_AO  prep_ours_s  prep_pyscf_s  ratio  E+bwd_ours_s  fock+E_pyscf_s  ratio"
          "  E+bwd_jax_s  ratio  E+grad_pyscfad_s")
    peer_missing = pyscfad_peer.missing_reason()
    for name in args.molecule:
        mol = Molecule.builtin(name)
        skip = too_big(mol, level, args.memory_limit_gb)
        if skip:
            print(f"# {name}: skipped, {skip}")
            continue
        pyscf_raw(Molecule.builtin("water"), level)  # libraries and basis files loaded
        prep_pyscf, prep_ours = map(min, alternating(
            [lambda mol=mol: pyscf_raw(mol, level), lambda mol=mol: build_tensors(mol, level)],
            args.repeat))
        t = build_tensors(mol, level)
        h0 = fock(t, t.dm_minao).detach()

        def ours(t=t, h0=h0):
            h = h0.clone().requires_grad_(True)
            energy(t, h).backward()

        mf = make_rks(mol, level)
        dm = t.dm_minao.numpy()
        mf.get_fock(dm=dm)  # warm: ERIs (or DF's 3-index tensor) in core, grid built

        def theirs(mf=mf, dm=dm):
            mf.energy_tot(dm, vhf=mf.get_veff(mf.mol, dm))

        ours()  # warm: the allocator, autograd's first graph
        run_ours, run_pyscf = map(statistics.median, alternating([ours, theirs], args.repeat))

        jax_s = jax_ratio = "n/a"
        if not level.is_df or jax_engine_has_df():
            tj, h0j = from_torch(t), jax.numpy.asarray(h0.numpy())

            def ours_jax(tj=tj, h0j=h0j):
                jax.block_until_ready(jax_engine.energy_and_grad(tj, h0j))

            ours_jax()  # compiles; not timed
            run_jax = statistics.median([best_of(ours_jax, 1) for _ in range(args.repeat)])
            jax_s, jax_ratio = f"{run_jax:.3f}", f"{run_jax / run_pyscf:.2f}"
        peer = "n/a"
        if peer_missing is None and not level.is_df:  # the peer is set up for dense ERIs
            step = pyscfad_peer.energy_and_density_grad(mol, level)
            step(dm)  # warm: ERIs, grid, JAX's kernels

            def theirs_ad(step=step, dm=dm):
                step(dm)

            peer = f"{statistics.median([best_of(theirs_ad, 1) for _ in range(args.repeat)]):.3f}"
        print(f"{name:16s}{t.n_ao:4d}  {prep_ours:11.3f}  {prep_pyscf:12.3f}  "
              f"{prep_ours / prep_pyscf:5.2f}  {run_ours:12.3f}  {run_pyscf:14.3f}  "
              f"{run_ours / run_pyscf:5.2f}  {jax_s:>11s}  {jax_ratio:>5s}  "
              f"{peer:>16s}")
        del t, mf


def jax_engine_has_df() -> bool:
    """Whether ``jax_tensors.from_torch`` takes density-fitted tensors (since 0cf6b9c; before,
    it refused them)."""
    from qptbench.dft.jax_tensors import JaxTensors

    return "df_b" in getattr(JaxTensors, "__dataclass_fields__", {})


if __name__ == "__main__":
    main()
