"""The Kohn–Sham energy E(X; H) as pure torch functions of precomputed tensors (float64).

Closed-shell RKS, PySCF's conventions:
    E(D) = tr(D h) + ½ tr(D J) − ¼ a tr(D K) + E_xc[ρ] + E_nuc
    F(D) = h + J − ½ a K + V_xc                     (= dE/dD for symmetric D)
with J_ij = Σ_kl (ij|kl) D_kl, K_il = Σ_jk (ij|kl) D_jk and a the functional's exact-exchange
fraction.  ``energy(t, H)`` is the loss QPT trains with: the energy of the aufbau density of H,
optionally after extra (mixed) Fock iterations — the paper's "DFT-iteration sandwich".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from qptbench.density import aufbau_density
from qptbench.tensors import DFTTensors
from qptbench.xc import eval_xc


def coulomb_exchange(
    eri: torch.Tensor, dm: torch.Tensor, with_k: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """J (N, N) and K (N, N) of a density; both are one pass over the dense (N, N, N, N) ERIs."""
    n = dm.shape[-1]
    j = (eri.reshape(n * n, n * n) @ dm.reshape(n * n)).reshape(n, n)
    if not with_k:
        return j, None
    # K_il = Σ_(jk) eri[i, (jk), l] D_(jk): a batched vector–matrix product, no transposed copy
    k = (dm.reshape(1, n * n) @ eri.reshape(n, n * n, n)).reshape(n, n)
    return j, k


def density_on_grid(
    t: DFTTensors, dm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ρ (G,) and ∇ρ (3, G) on the grid; ∇ρ is None for LDA functionals."""
    x = t.ao @ dm                                         # (G, N)
    rho = torch.einsum("gn,gn->g", x, t.ao)               # (G,); far faster than (x*ao).sum
    if t.ao_grad is None:
        return rho, None
    return rho, 2.0 * torch.einsum("cgn,gn->cg", t.ao_grad, x)  # (3, G)


def xc_energy_potential(t: DFTTensors, dm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E_xc (scalar) and V_xc (N, N) = ∂E_xc/∂D.

    V_xc stays differentiable with respect to D when D requires grad (second functional
    derivatives enter), which the DFT-iteration sandwich needs.
    """
    rho, grad = density_on_grid(t, dm)
    sigma = None if grad is None else (grad * grad).sum(0)
    keep_graph = torch.is_grad_enabled() and dm.requires_grad
    exc, vrho, vsigma = eval_xc(t.xc, rho, sigma, create_graph=keep_graph)
    e_xc = torch.dot(t.weights * rho, exc)
    # V = A + Aᵀ with A_μν = Σ_g φ_μ [½ w v_ρ φ_ν + 2 w v_σ ∇ρ·∇φ_ν]
    half = t.ao * (0.5 * t.weights * vrho).unsqueeze(-1)  # (G, N)
    if grad is not None:
        wv_grad = (2.0 * t.weights * vsigma) * grad       # (3, G)
        for c in range(3):  # three passes instead of one (3, G, N) temporary
            half = half + wv_grad[c].unsqueeze(-1) * t.ao_grad[c]
    a = t.ao.mT @ half
    return e_xc, a + a.mT


def energy_and_fock(t: DFTTensors, dm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Total energy (Ha, scalar) and Fock matrix (N, N) of a density, by plain autograd ops."""
    hyb = t.xc.hyb
    j, k = coulomb_exchange(t.eri, dm, with_k=hyb != 0)
    e_xc, v_xc = xc_energy_potential(t, dm)
    e_one = (dm * t.h_core).sum()
    e_coul = 0.5 * (dm * j).sum()
    fock = t.h_core + j + v_xc
    energy = e_one + e_coul + e_xc + t.e_nuc
    if k is not None:
        energy = energy - 0.25 * hyb * (dm * k).sum()
        fock = fock - 0.5 * hyb * k
    return energy, fock


def fock(t: DFTTensors, dm: torch.Tensor) -> torch.Tensor:
    """F(D) = h + J − ½ a K + V_xc (N, N); differentiable with respect to D."""
    return energy_and_fock(t, dm)[1]


class _EnergyOfDensity(torch.autograd.Function):
    """E(D) whose backward is the Fock matrix built in the forward: dE/dD = F(D).

    Autograd through the J/K and grid contractions would read the ERIs and AO values a second
    time; the Fock matrix is a by-product of the energy, so the backward is one multiply.
    """

    @staticmethod
    def forward(ctx, dm, t: DFTTensors):
        with torch.no_grad():
            energy, fock_matrix = energy_and_fock(t, dm)
        ctx.save_for_backward(fock_matrix)
        return energy

    @staticmethod
    def backward(ctx, grad_energy):
        (fock_matrix,) = ctx.saved_tensors
        return grad_energy * fock_matrix, None


def total_energy(t: DFTTensors, dm: torch.Tensor) -> torch.Tensor:
    """E(D) in Hartree (scalar).  First derivatives only (dE/dD = F); use ``energy_and_fock``
    where second derivatives are needed."""
    return _EnergyOfDensity.apply(dm, t)


def scf_step(
    t: DFTTensors, h: torch.Tensor, dm: torch.Tensor | None = None, mix: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Kohn–Sham iteration: D' = (1 − mix)·aufbau(H) + mix·D, then F(D').

    ``mix`` is the weight of the previous density (the paper's α = 0.5 averages the two);
    returns (D', F(D')).
    """
    new = _next_density(t, h, dm, mix)
    return new, fock(t, new)


def _next_density(
    t: DFTTensors, h: torch.Tensor, dm: torch.Tensor | None, mix: float
) -> torch.Tensor:
    new = aufbau_density(h, t.l_inv, t.n_occ)
    if dm is None or mix == 0.0:
        return new
    return (1.0 - mix) * new + mix * dm


@dataclass
class SandwichResult:
    energy: torch.Tensor         # E(D_final), Ha, scalar, differentiable w.r.t. H
    density: torch.Tensor        # D_final (N, N)
    fock: torch.Tensor | None    # F(D_final) (N, N): the "predicted Hamiltonian"; no gradient


def sandwich(
    t: DFTTensors, h: torch.Tensor, mixes: Sequence[float] = (), with_fock: bool = False
) -> SandwichResult:
    """The QPT loss: H → D₁ = aufbau(H) → [F(D) → D' mixed] × len(mixes) → E(D_final).

    ``mixes=()`` is the one-iteration energy E(aufbau(H)); the paper's full schedule is
    ``mixes=(0.5, 0.0)``: D₂ = ½(D₁ + aufbau(F(D₁))), D₃ = aufbau(F(D₂)), loss E(D₃).
    """
    dm = aufbau_density(h, t.l_inv, t.n_occ)
    for mix in mixes:
        dm = _next_density(t, fock(t, dm), dm, mix)
    energy = total_energy(t, dm)
    final_fock = None
    if with_fock:
        with torch.no_grad():
            final_fock = fock(t, dm.detach())
    return SandwichResult(energy, dm, final_fock)


def energy(t: DFTTensors, h: torch.Tensor, mixes: Sequence[float] = ()) -> torch.Tensor:
    """E(X; H) in Hartree: the energy after ``1 + len(mixes)`` DFT iterations starting from H."""
    return sandwich(t, h, mixes).energy
