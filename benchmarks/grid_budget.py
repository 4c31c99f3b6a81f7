"""What the AO budget trades: memory held per geometry against time per energy, stored vs
recomputed AO values (``qptbench --ao-budget-gb``), same molecule, same process.

    python benchmarks/grid_budget.py --molecule uracil alanine_dipeptide --eri df --threads 2

Per molecule: the bytes the DFT tensors hold (``tensor_bytes``) with the AO values stored and
with them evaluated per block (budget 0), the peak the autograd graph of the paper's sandwich
(mixes 0.5, 0) keeps beyond those tensors, and the median time of E + backward for the
one-iteration energy and for that sandwich, stored / recomputed alternately.  The energies of
the two modes are printed side by side (they agree to ~1e-12 Ha).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # side_by_side, however this is run


def graph_bytes(t, h0, mixes) -> int:
    """Bytes the sandwich's graph saves beyond views of the tensors ``t`` holds anyway."""
    from qptbench.dft.energy import sandwich

    held = {v.untyped_storage().data_ptr() for v in vars(t).values()
            if isinstance(v, torch.Tensor)}
    seen: dict[int, int] = {}

    def pack(x):
        ptr = x.untyped_storage().data_ptr()
        if ptr not in held:
            seen[ptr] = x.untyped_storage().nbytes()
        return x

    h = h0.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss = sandwich(t, h, mixes).energy
    del loss
    return sum(seen.values())


def main() -> None:
    from side_by_side import machine_line

    from qptbench.dft.energy import energy, fock
    from qptbench.dft.geometry import Molecule
    from qptbench.dft.level import LevelOfTheory
    from qptbench.dft.tensors import build_tensors
    from qptbench.evaluation.evaluator import tensor_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", nargs="+", default=["uracil"])
    parser.add_argument("--eri", choices=["dense", "df"], default="df")
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    level = LevelOfTheory(eri=args.eri, grid_level=args.grid_level)
    print(machine_line(args.threads))
    print(f"# {level.xc}/{level.basis}, grid level {level.grid_level}, eri {level.eri}; "
          f"median of {args.repeat}; sandwich = mixes (0.5, 0)")
    print("molecule          N_AO  held_stored_GB  held_budget0_GB  graph_stored_GB  "
          "graph_budget0_GB  E+bwd_stored_s  E+bwd_budget0_s  sandwich_stored_s  "
          "sandwich_budget0_s  |dE|_Ha")
    for name in args.molecule:
        mol = Molecule.builtin(name)
        stored, lean = build_tensors(mol, level), build_tensors(mol, level, ao_budget_gb=0.0)
        h0 = fock(stored, stored.dm_minao).detach()
        row = []
        for mixes in ((), (0.5, 0.0)):
            def step(t, mixes=mixes, h0=h0):
                h = h0.clone().requires_grad_(True)
                e = energy(t, h, mixes)
                e.backward()
                return float(e)

            times: dict[int, list[float]] = {0: [], 1: []}
            for _ in range(args.repeat):
                for i, t in enumerate((stored, lean)):
                    tic = time.perf_counter()
                    step(t)
                    times[i].append(time.perf_counter() - tic)
            row += [statistics.median(times[0]), statistics.median(times[1])]
        diff = abs(float(energy(stored, h0)) - float(energy(lean, h0)))
        graphs = [graph_bytes(t, h0, (0.5, 0.0)) / 1e9 for t in (stored, lean)]
        print(f"{name:16s}{stored.n_ao:5d}  {tensor_bytes(stored) / 1e9:14.3f}  "
              f"{tensor_bytes(lean) / 1e9:15.3f}  {graphs[0]:15.3f}  {graphs[1]:16.3f}  "
              f"{row[0]:14.3f}  {row[1]:15.3f}  {row[2]:17.3f}  {row[3]:18.3f}  {diff:.1e}")
        del stored, lean


if __name__ == "__main__":
    main()
