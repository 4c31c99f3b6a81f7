"""The scoring protocol: what "k DFT iterations after the network" means, for every method.

Given a predicted Hamiltonian H (N, N) and the reference geometry's own tensors t:

    D₁ = aufbau(H)                         (no Fock build yet)
    k = 0:  H₀ = H,        E₀ = E(D₁)      the raw prediction; its energy needs one build
    k = 1:  H₁ = F(D₁),    E₁ = E(D₁)      one Fock build: F(D(H))
    k ≥ 2:  D_k = next(F(D_{k−1}), D_{k−1}),  H_k = F(D_k),  E_k = E(D_k)

``next`` is the paper's density mixing (QPT's "1 + 3" route: α = 0.5 at the second iteration,
none at the third, so k = 3 is exactly the energy QPT validates with) or, for the early-stopped
SCF control, Pulay DIIS.  E₀ = E₁ by construction: the energy of a Hamiltonian is the energy of
its density.  k counts the Fock builds a route spends after its network (the hybrid route also
spent one on H_init = F(D_minao) before it).

Gauge: the energy fixes only the occupied subspace of H (H + cS, or any change that keeps the
occupied/virtual split, gives the same density and energy).  For a method trained on the energy
alone (``fixes_h=False``) the raw H has no reason to match the label, so at k = 0 its ΔH, Δε and
ψ are reported as NaN ("n/a"), never silently; ΔE and the SCF start are gauge-free and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qptbench.dft.density import aufbau_density
from qptbench.dft.energy import energy_and_fock
from qptbench.dft.scf import DIIS, orbital_gradient
from qptbench.dft.tensors import DFTTensors

K_VALUES = (0, 1, 3)
PAPER_MIXES = (0.5, 0.0)  # α at iterations 2, 3, ... (the paper's 1 + 3 route)
SCHEMES = ("paper", "diis")


@dataclass(frozen=True)
class State:
    """One point of a route: the Hamiltonian scored at k, its density D_k and E(D_k) in Ha."""

    fock: torch.Tensor     # H_k (N, N)
    density: torch.Tensor  # D_k (N, N)
    energy: float          # Ha


def iterate(t: DFTTensors, h: torch.Tensor, k_max: int = max(K_VALUES), scheme: str = "paper",
            start_density: torch.Tensor | None = None) -> dict[int, State]:
    """States k = 0..k_max of the route that starts from H (see the module docstring).

    ``scheme="diis"`` extrapolates with Pulay DIIS instead of mixing; ``start_density`` is the
    density H was built from (for DIIS's first error vector; the minao density for H_init).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    with torch.no_grad():
        h = 0.5 * (h + h.mT)
        dm = aufbau_density(h, t.l_inv, t.n_occ)
        energy, fock = energy_and_fock(t, dm)
        states = {0: State(h, dm, float(energy)), 1: State(fock, dm, float(energy))}
        diis = DIIS() if scheme == "diis" else None
        if diis is not None and start_density is not None:
            diis.extrapolate(h, orbital_gradient(t, h, start_density))
        for k in range(2, k_max + 1):
            if diis is not None:
                dm = aufbau_density(diis.extrapolate(fock, orbital_gradient(t, fock, dm)),
                                    t.l_inv, t.n_occ)
            else:
                mix = PAPER_MIXES[k - 2] if k - 2 < len(PAPER_MIXES) else 0.0
                new = aufbau_density(fock, t.l_inv, t.n_occ)
                dm = new if mix == 0.0 else (1.0 - mix) * new + mix * dm
            energy, fock = energy_and_fock(t, dm)
            states[k] = State(fock, dm, float(energy))
    return states


def zero_model_h(t: DFTTensors) -> torch.Tensor:
    """H_init = F(D_minao): what QPT adds its correction to (the zero model predicts it)."""
    with torch.no_grad():
        return energy_and_fock(t, t.dm_minao)[1]
