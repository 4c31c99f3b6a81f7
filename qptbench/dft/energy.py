"""The Kohn–Sham energy E(X; H) as pure torch functions of precomputed tensors (float64).

Closed-shell RKS, PySCF's conventions:
    E(D) = tr(D h) + ½ tr(D J) − ¼ a tr(D K) + E_xc[ρ] + E_nuc
    F(D) = h + J − ½ a K + V_xc                     (= dE/dD for symmetric D)
with J_ij = Σ_kl (ij|kl) D_kl, K_il = Σ_jk (ij|kl) D_jk and a the functional's exact-exchange
fraction; (ij|kl) are the exact ERIs or, at a density-fitted level, the fitted ones.
``energy(t, H)`` is the loss QPT trains with: the energy of the aufbau density of H, optionally
after extra (mixed) Fock iterations — the paper's "DFT-iteration sandwich".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from qptbench.dft.density import aufbau_density
from qptbench.dft.density_fitting import df_coulomb_exchange
from qptbench.dft.tensors import DFTTensors
from qptbench.dft.xc import eval_xc


def coulomb_exchange(
    eri: torch.Tensor, dm: torch.Tensor, with_k: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """J (N, N) and K (N, N) of a density; both are one pass over the dense (N, N, N, N) ERIs."""
    n = dm.shape[-1]
    j = (eri.reshape(n * n, n * n) @ dm.reshape(n * n)).reshape(n, n)
    if not with_k:
        return j, None
    # K_il = Σ_(jk) eri[i, (jk), l] D_(jk): a batched vector–matrix product, no transposed copy.
    # Explicit bmm: broadcasting `@` copies the whole 2.4 GB ERI tensor when D requires grad.
    d_rows = dm.reshape(1, 1, n * n).expand(n, 1, n * n)
    k = torch.bmm(d_rows, eri.reshape(n, n * n, n)).reshape(n, n)
    return j, k


def coulomb_exchange_of(
    t: DFTTensors, dm: torch.Tensor, with_k: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """J and K of a density at the tensors' level: from the dense ERIs, or from the fitted
    factor when the level is density-fitted (``t.df_b``; then ``t.eri`` is None)."""
    if t.df_b is not None:
        return df_coulomb_exchange(t.df_b, dm, with_k)
    return coulomb_exchange(t.eri, dm, with_k)


GRID_BLOCK = 4096  # points per block: (3, N, block) temporaries stay in cache; smaller blocks
# cost more in per-block autograd overhead than they gain (water 3-iteration sandwich: 2048
# points 0.24 s, 4096 0.19 s, 8192 0.16 s; uracil energy: 4096 as fast as 2048, 8192 20 % slower)


def grid_blocks(
    t: DFTTensors,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Weights (g,), AO values (N, g) and AO gradients (3, N, g) or None, GRID_BLOCK points at
    a time: views into the tensors, no copies."""
    for start in range(0, t.n_grid, GRID_BLOCK):
        block = slice(start, start + GRID_BLOCK)
        ao_grad = None if t.ao_grad is None else t.ao_grad[:, :, block]
        yield t.weights[block], t.ao[:, block], ao_grad


def density_on_grid(
    ao: torch.Tensor, ao_grad: torch.Tensor | None, dm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ρ (g,) and ∇ρ (3, g) at the points whose AO values (N, g) and gradients (3, N, g) are
    given (PySCF's layout: one row per AO); ∇ρ is None for LDA functionals (``ao_grad`` None).
    ``dm`` must be symmetric."""
    # Products and sums over the AO axis, not einsum: on these (N, g) row-strided blocks einsum
    # picks batched matmuls that ran ~2x slower (uracil, one thread).
    x = dm @ ao                                           # (N, g)
    rho = (x * ao).sum(0)                                 # (g,)
    if ao_grad is None:
        return rho, None
    return rho, 2.0 * (ao_grad * x).sum(1)                # (3, g)


def xc_energy_potential(t: DFTTensors, dm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E_xc (scalar) and V_xc (N, N) = ∂E_xc/∂D, accumulated over blocks of grid points.

    V_xc stays differentiable with respect to D when D requires grad (second functional
    derivatives enter), which the DFT-iteration sandwich needs.
    """
    keep_graph = torch.is_grad_enabled() and dm.requires_grad
    e_xc = torch.zeros((), dtype=dm.dtype, device=dm.device)
    a = torch.zeros_like(dm)
    for weights, ao, ao_grad in grid_blocks(t):
        e_block, a_block = _xc_block(t, weights, ao, ao_grad, dm, keep_graph)
        e_xc = e_xc + e_block
        a = a + a_block
    return e_xc, a + a.mT


def _xc_block(t, weights, ao, ao_grad, dm, keep_graph):
    rho, grad = density_on_grid(ao, ao_grad, dm)
    sigma = None if grad is None else (grad * grad).sum(0)
    exc, vrho, vsigma = eval_xc(t.xc, rho, sigma, create_graph=keep_graph)
    e_xc = torch.dot(weights * rho, exc)
    # V = A + Aᵀ with A_μν = Σ_g φ_μ [½ w v_ρ φ_ν + 2 w v_σ ∇ρ·∇φ_ν]
    half = ao * (0.5 * weights * vrho)                    # (N, g)
    if grad is not None:
        wv_grad = (2.0 * weights * vsigma) * grad         # (3, g)
        half = half + (ao_grad * wv_grad.unsqueeze(1)).sum(0)
    return e_xc, ao @ half.mT


def energy_and_fock(t: DFTTensors, dm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Total energy (Ha, scalar) and Fock matrix (N, N) of a density, by plain autograd ops."""
    hyb = t.xc.hyb
    j, k = coulomb_exchange_of(t, dm, with_k=hyb != 0)
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
