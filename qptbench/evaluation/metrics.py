"""Validation metrics shared by QPT and the baselines, all against PySCF labels.

Units are in the key names.  Definitions (one protocol for every method, stated because the papers
mix two):
- ``delta_e_mev``: |E_pred − E_ref| in meV.
- ``delta_h_uha``: mean over all N² entries of |H_pred − H_ref|, µHa (PySCF AO order).
- ``delta_eps_all_uha`` / ``delta_eps_occ_uha``: mean |ε_pred − ε_ref| over all N orbitals / over
  the n_occ occupied ones, from the generalised problem H C = S C ε, ascending, µHa.  QPT's paper
  reports "all"; QHNet's code reports "occupied".
- ``psi_cos_occ``: mean over occupied orbitals of |c_predᵀ S c_ref| (both S-normalised), the
  orbital cosine similarity; the sign of an eigenvector is arbitrary, hence the absolute value.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from qptbench.dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def energy_error_mev(e_pred_ha: float, e_ref_ha: float) -> float:
    return abs(float(e_pred_ha) - float(e_ref_ha)) * HARTREE_TO_MEV


def hamiltonian_metrics(h_pred, h_ref, overlap, n_occ: int) -> dict[str, float]:
    """ΔH, Δε (all and occupied) and ψ similarity of one predicted Fock matrix."""
    h_pred, h_ref, s = _numpy(h_pred), _numpy(h_ref), _numpy(overlap)
    if h_pred.shape != h_ref.shape or h_ref.shape != s.shape:
        raise ValueError(f"shape mismatch: H_pred {h_pred.shape}, H_ref {h_ref.shape}, S {s.shape}")
    eps_pred, c_pred = scipy.linalg.eigh(0.5 * (h_pred + h_pred.T), s)
    eps_ref, c_ref = scipy.linalg.eigh(0.5 * (h_ref + h_ref.T), s)
    d_eps = np.abs(eps_pred - eps_ref)
    overlap_occ = np.einsum("mi,mn,ni->i", c_pred[:, :n_occ], s, c_ref[:, :n_occ])
    return {
        "delta_h_uha": float(np.abs(h_pred - h_ref).mean() * HARTREE_TO_UHA),
        "delta_eps_all_uha": float(d_eps.mean() * HARTREE_TO_UHA),
        "delta_eps_occ_uha": float(d_eps[:n_occ].mean() * HARTREE_TO_UHA),
        "psi_cos_occ": float(np.abs(overlap_occ).mean()),
    }
