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
from qptbench.dft.grid_ao import AOBlock, iter_blocks
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


XC_CHUNK = 32768  # points per functional evaluation: few calls (each is ~100 small autograd
# ops), while its temporaries (~100 arrays of the chunk's length) stay bounded on large grids


def _moments(dm: torch.Tensor, idx: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """(ρ, ½∂xρ, ½∂yρ, ½∂zρ) (comp, g) on one block from its significant AOs ``idx`` and their
    values and gradients ``data`` (comp, n_sig, g): one product and one sum over the AO axis,
    on D's (n_sig, n_sig) sub-matrix (``dm`` symmetric)."""
    # a block on which every AO is significant needs no gather (small molecules)
    sub = dm if idx.numel() == dm.shape[-1] else dm[idx[:, None], idx]
    return (data * (sub @ data[0])).sum(1)


def density_on_grid(t: DFTTensors, dm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ρ (g,) and ∇ρ (3, g) (None for LDA tensors) on the points of the blocks that have a
    significant AO, in block order: what the energy computes (benchmarks, tests)."""
    moments = torch.cat([_moments(dm, idx, data) for _, idx, data in iter_blocks(t.screened_ao)],
                        dim=1)
    return moments[0], (2.0 * moments[1:] if t.ao_comp > 1 else None)


def _chunks(blocks: Sequence[AOBlock]) -> Iterator[tuple[int, int]]:
    """(first, last + 1) positions in ``blocks`` of runs of about XC_CHUNK points."""
    first = points = 0
    for i, b in enumerate(blocks):
        points += b.stop - b.start
        if points >= XC_CHUNK:
            yield first, i + 1
            first, points = i + 1, 0
    if first < len(blocks):
        yield first, len(blocks)


def xc_energy_potential(t: DFTTensors, dm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E_xc (scalar) and V_xc (N, N) = ∂E_xc/∂D, from each block's significant AOs only.

    Per block of grid points: ρ and ∇ρ from the (n_sig, n_sig) sub-matrix of D; the functional
    on a chunk of blocks at once; then A[idx, idx] += φ_sig (½ w v_ρ φ + 2 w v_σ ∇ρ·∇φ)ᵀ and
    V = A + Aᵀ.  V_xc stays differentiable with respect to D when D requires grad (second
    functional derivatives enter), which the DFT-iteration sandwich needs.  When the AO values
    are not stored (``t.ao_basis``), each chunk is evaluated, used and dropped, and a graph
    through it recomputes the chunk in the backward instead of keeping its AO values.
    """
    keep_graph = torch.is_grad_enabled() and dm.requires_grad
    screened = t.screened_ao
    e_xc = torch.zeros((), dtype=dm.dtype, device=dm.device)
    a = torch.zeros_like(dm)
    for first, last in _chunks(screened.blocks):
        chunk = screened.blocks[first:last]
        if keep_graph and screened.recomputed:
            e_part, a_part = _RecomputedChunk.apply(dm, t, chunk)
        else:
            e_part, a_part = _xc_chunk(t, dm, chunk, keep_graph)
        e_xc = e_xc + e_part
        a = a + a_part if keep_graph else a.add_(a_part)
    return e_xc, a + a.mT


def _xc_chunk(t: DFTTensors, dm: torch.Tensor, chunk: Sequence[AOBlock], keep_graph: bool
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """E_xc and A (N, N) (V_xc = A + Aᵀ) of one chunk of blocks."""
    screened = t.screened_ao
    n = t.n_ao
    blocks = list(iter_blocks(screened, chunk))
    moments = [_moments(dm, idx, data) for _, idx, data in blocks]  # (comp, g) each
    weights = torch.cat([t.weights[b.start: b.stop] for b in chunk])
    moments = torch.cat(moments, dim=1)
    rho = moments[0]
    grad = 2.0 * moments[1:] if screened.comp > 1 else None
    sigma = None if grad is None else (grad * grad).sum(0)
    exc, vrho, vsigma = eval_xc(t.xc, rho, sigma, create_graph=keep_graph)
    e_xc = torch.dot(weights * rho, exc)
    # A_μν = Σ_g φ_μ [½ w v_ρ φ_ν + 2 w v_σ ∇ρ·∇φ_ν]: coefficients of (φ, ∂xφ, ∂yφ, ∂zφ)
    coef = (0.5 * weights * vrho)[None]
    if grad is not None:
        coef = torch.cat([coef, (2.0 * weights * vsigma) * grad])  # (comp, g)
    a = torch.zeros_like(dm)
    p = 0
    for b, idx, data in blocks:
        q = p + b.stop - b.start
        half = (data * coef[:, None, p:q]).sum(0)                  # (n_sig, g)
        block_a = data[0] @ half.mT
        # in place: autograd handles it (nothing saved reads A), no N × N copy per block
        if idx.numel() == n:
            a.add_(block_a)
        else:
            a.index_put_((idx[:, None], idx), block_a, accumulate=True)
        p = q
    return e_xc, a


class _RecomputedChunk(torch.autograd.Function):
    """One chunk's (E_xc, A) whose backward evaluates the chunk again and differentiates it
    there: the AO values of the whole grid are never held by a graph (the point of not storing
    them).  First derivatives through it only, which is what the sandwich's backward takes."""

    @staticmethod
    def forward(ctx, dm, t: DFTTensors, chunk):
        ctx.save_for_backward(dm)
        ctx.t, ctx.chunk = t, chunk
        with torch.no_grad():
            return _xc_chunk(t, dm, chunk, keep_graph=False)

    @staticmethod
    def backward(ctx, grad_e, grad_a):
        (dm,) = ctx.saved_tensors
        with torch.enable_grad():
            d = dm.detach().requires_grad_(True)
            e_part, a_part = _xc_chunk(ctx.t, d, ctx.chunk, keep_graph=True)
            (grad_dm,) = torch.autograd.grad((e_part, a_part), d, (grad_e, grad_a))
        return grad_dm, None, None


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
