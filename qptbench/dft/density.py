"""The aufbau density of a Hamiltonian, with a backward that survives degenerate orbitals.

D(H) = 2 C_occ C_occᵀ where H C = S C ε, solved through the Cholesky orthogonaliser
(S = L Lᵀ, H̃ = L⁻¹ H L⁻ᵀ, C = L⁻ᵀ U).  D depends only on the occupied *subspace*, so its
derivative involves only occupied–virtual pairs: rotations inside the occupied (or virtual) block
leave D unchanged.  torch's generic eigh backward uses every pair, 1/(ε_i − ε_j) for all i ≠ j,
and returns inf/NaN for degenerate occupied orbitals (methane, benzene) although the true gradient
is finite.  The custom backward below uses the occupied–virtual pairs only.

Regularisation: the remaining denominators are the occupied–virtual gaps Δ = ε_i − ε_a < 0.  We
replace 1/Δ by Δ / (Δ² + η²), a Lorentzian that equals 1/Δ to relative precision (η/Δ)² and stays
bounded (≤ 1/(2η)) when the HOMO–LUMO gap closes.  With the default η = 1e-6 Ha the change is
below 1e-8 relative for any gap above 1e-2 Ha, far below anything a finite-difference test sees;
at a truly vanishing gap aufbau itself is discontinuous and no gradient is meaningful.
"""

from __future__ import annotations

import torch

GAP_ETA = 1e-6  # Ha, see the module docstring


def orthogonal_eigh(h: torch.Tensor, l_inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ε (N,) and eigenvectors U (N, N) of L⁻¹ · sym(H) · L⁻ᵀ, ascending."""
    h_sym = 0.5 * (h + h.mT)
    return torch.linalg.eigh(l_inv @ h_sym @ l_inv.mT)


def orbitals(h: torch.Tensor, l_inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orbital energies ε (N,) and AO coefficients C (N, N) of H C = S C ε; no gradient."""
    with torch.no_grad():
        eps, u = orthogonal_eigh(h, l_inv)
    return eps, l_inv.mT @ u


class _AufbauDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, l_inv, n_occ: int, eta: float):  # h (N, N) -> D (N, N)
        eps, u = orthogonal_eigh(h, l_inv)
        c_occ = l_inv.mT @ u[:, :n_occ]                  # (N, n_occ)
        ctx.save_for_backward(eps, u, l_inv)
        ctx.n_occ, ctx.eta = n_occ, eta
        return 2.0 * c_occ @ c_occ.mT

    @staticmethod
    def backward(ctx, grad_d):
        eps, u, l_inv = ctx.saved_tensors
        n, eta = ctx.n_occ, ctx.eta
        u_occ, u_vir = u[:, :n], u[:, n:]                          # (N, o), (N, v)
        g = l_inv @ (0.5 * (grad_d + grad_d.mT)) @ l_inv.mT      # dL/dP, D = L⁻ᵀ P L⁻¹ (N, N)
        b = u_vir.mT @ g @ u_occ                                  # (v, o)
        gap = eps[:n].unsqueeze(0) - eps[n:].unsqueeze(1)         # ε_i − ε_a  (v, o)
        w = 4.0 * b * gap / (gap * gap + eta * eta)
        g_h = u_vir @ w @ u_occ.mT                                # dL/dH̃ (N, N)
        g_h = 0.5 * (g_h + g_h.mT)
        return l_inv.mT @ g_h @ l_inv, None, None, None


def aufbau_density(
    h: torch.Tensor, l_inv: torch.Tensor, n_occ: int, eta: float = GAP_ETA
) -> torch.Tensor:
    """Closed-shell density D = 2 C_occ C_occᵀ of the n_occ lowest orbitals of H (N, N).

    H is symmetrised first, so the gradient returned for H is symmetric.
    """
    if not 0 < n_occ <= h.shape[-1]:
        raise ValueError(f"n_occ={n_occ} outside 1..{h.shape[-1]}")
    return _AufbauDensity.apply(h, l_inv, n_occ, eta)
