"""Density fitting on peptides, measured in a fresh process: run by tests/test_peptide_df.py
(``python tests/peptide_df_run.py train|energy``), prints one JSON object.

``train``: one QPT training step (smoke preset: tiny network, grid level 1) on the alanine
dipeptide (200 AOs) in def2-SVP with ``eri="df"``: prepare the sample, energy loss, backward,
one AdamW update.
``energy [GRID_LEVEL]``: Ace-Ala₄-NMe (485 AOs) at DF/def2-SVP, grid level 1 unless given: build
the tensors, then the one-iteration energy E(aufbau(H₀)) at the minao-start Fock H₀ = F(D_minao)
and its gradient dE/dH₀, then PySCF's DF-RKS ``energy_tot`` on the same density, the tensors
freed first.  ``QPTBENCH_AO_BUDGET_GB`` applies as everywhere: with it, grid level 3 fits 24 GB
(``QPTBENCH_AO_BUDGET_GB=0 python tests/peptide_df_run.py energy 3``).

Each phase reports its wall time and the process's peak resident memory so far
(``resource.getrusage``'s ru_maxrss, which never goes down: a later phase's peak includes what
the earlier ones left held).  A fresh process per mode keeps the two apart.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from dataclasses import replace

import torch

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory

CPU = torch.device("cpu")
PEPTIDE = "ace_ala4_nme"
PEPTIDE_LEVEL = LevelOfTheory(eri="df", grid_level=1)  # grid 3 does not fit in 24 GB


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: kB


def train_step() -> dict:
    from qptbench.training.qpt import Preparer, build_model, make_config
    from qptbench.training.signals import SignalLoss

    cfg = make_config("smoke", molecule="alanine_dipeptide", eri="df")
    model, vocab = build_model(cfg, CPU)
    mol = Molecule.builtin(cfg.molecule).displaced(seed=0, scale=cfg.displacement_angstrom)
    out: dict = {"level": cfg.level().as_dict()}
    tic = time.perf_counter()
    item = Preparer(vocab, cfg.level())(mol)
    t = item.sample.tensors
    out.update(n_ao=t.n_ao, n_aux=int(t.df_b.shape[0]), n_grid=t.n_grid,
               dense_eri=t.eri is not None, prep_seconds=time.perf_counter() - tic,
               prep_peak_rss_gb=peak_rss_gb())
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tic = time.perf_counter()
    loss, logs = SignalLoss("energy", CPU, steps=cfg.steps)(model, item)
    opt.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    out.update(loss_ha=float(loss.detach()), e_zero_ha=item.e_zero_ha,
               grad_finite=all(bool(torch.isfinite(g).all()) for g in grads),
               grad_norm=float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))),
               n_params_with_grad=len(grads), n_params=len(before))
    opt.step()
    out.update(step_seconds=time.perf_counter() - tic, step_peak_rss_gb=peak_rss_gb(),
               weights_changed=any(not torch.equal(a, p.detach())
                                   for a, p in zip(before, model.parameters(), strict=True)),
               iterations=logs["n_iterations"])
    return out


def peptide_energy() -> dict:
    from qptbench.dft.density import aufbau_density
    from qptbench.dft.energy import energy, fock
    from qptbench.dft.labels import make_rks
    from qptbench.dft.tensors import build_tensors

    level = PEPTIDE_LEVEL if len(sys.argv) < 3 else replace(PEPTIDE_LEVEL,
                                                            grid_level=int(sys.argv[2]))
    mol = Molecule.builtin(PEPTIDE)
    out: dict = {"level": level.as_dict(), "threads": torch.get_num_threads()}
    tic = time.perf_counter()
    t = build_tensors(mol, level)
    out.update(n_atoms=mol.n_atoms, n_ao=t.n_ao, n_aux=int(t.df_b.shape[0]), n_grid=t.n_grid,
               dense_eri=t.eri is not None, prep_seconds=time.perf_counter() - tic,
               prep_parts_seconds=dict(t.seconds), prep_peak_rss_gb=peak_rss_gb(),
               df_b_gb=t.df_b.numel() * 8 / 1e9, ao_stored_gb=t.ao_values.numel() * 8 / 1e9,
               ao_recomputed=t.ao_basis is not None)
    with torch.no_grad():
        h0 = fock(t, t.dm_minao)
    h = h0.clone().requires_grad_(True)
    tic = time.perf_counter()
    e = energy(t, h)
    (grad,) = torch.autograd.grad(e, h)
    out.update(energy_ha=float(e.detach()), grad_finite=bool(torch.isfinite(grad).all()),
               grad_norm=float(grad.norm()), energy_backward_seconds=time.perf_counter() - tic,
               energy_peak_rss_gb=peak_rss_gb())
    with torch.no_grad():
        dm = aufbau_density(h0, t.l_inv, t.n_occ).numpy()  # the density E was taken at
    del t, h, h0, e, grad
    gc.collect()
    tic = time.perf_counter()
    out["pyscf_energy_ha"] = float(make_rks(mol, level).energy_tot(dm=dm))
    out.update(pyscf_seconds=time.perf_counter() - tic, pyscf_peak_rss_gb=peak_rss_gb(),
               diff_ha=out["energy_ha"] - out["pyscf_energy_ha"])
    return out


if __name__ == "__main__":
    print(json.dumps({"train": train_step, "energy": peptide_energy}[sys.argv[1]]()))
