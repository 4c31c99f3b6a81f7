"""Density fitting (resolution of the identity) for J and K: the 3-index factor and its use.

With (P|Q) = L Lᵀ over an auxiliary basis, B[Q, μν] = Σ_P (L⁻¹)_QP (P|μν) gives
(μν|λσ) ≈ Σ_Q B[Q, μν] B[Q, λσ], so
    J = Σ_Q B_Q tr(B_Q D)        K = Σ_Q B_Q D B_Q
for any D (symmetric or not, idempotent or mixed): the fitted ERIs are used exactly, never a
factor of D, so the DFT-iteration sandwich differentiates through these products as they are.
Memory is N_aux N² instead of N⁴ (uracil def2-svp: 0.09 GB instead of 2.4 GB); the fitted SCF
energy differs from the exact one by 1e-5 (water) to 4e-5 Ha (ethanol), which makes "df" its own
level of theory.

PySCF is imported inside ``df_factor`` only; the J/K products are plain torch.
"""

from __future__ import annotations

import numpy as np
import torch

# PySCF drops (P|Q) eigenvalues below this when its Cholesky fails (df.incore.LINEAR_DEP_THR)
LINDEP_THRESHOLD = 1e-7


def df_factor(mol, auxmol) -> np.ndarray:
    """B (N_aux, N, N) of a molecule and its auxiliary ``Mole`` (``tensors.build_auxmol``),
    symmetric in its last two indices, float64.

    Square rather than packed pairs: K = Σ_Q B_Q D B_Q is then two dense matrix products with no
    unpacking per Fock build (an unpacked copy would cost the same memory anyway); J reads the
    same array as one (N_aux, N²) matrix.
    """
    import scipy.linalg
    from pyscf import lib
    from pyscf.df import incore

    j2c = auxmol.intor("int2c2e", hermi=1)                                    # (P|Q)
    j3c = incore.aux_e2(mol, auxmol, "int3c2e", aosym="s2ij").reshape(-1, auxmol.nao)
    # j3c is (μ≥ν pairs, P) in Fortran order: its transpose is C-ordered (P, pairs), no copy
    try:
        low = scipy.linalg.cholesky(j2c, lower=True, check_finite=False)
    except scipy.linalg.LinAlgError:
        # A nearly linearly dependent fitting basis: PySCF then whitens by the eigenvectors of
        # (P|Q) above LINDEP_THRESHOLD; doing the same keeps the fitted ERIs identical to its.
        w, v = scipy.linalg.eigh(j2c)
        keep = w > LINDEP_THRESHOLD
        return lib.unpack_tril(np.ascontiguousarray((v[:, keep] / np.sqrt(w[keep])).T @ j3c.T))
    # X Lᵀ = j3c, solved in place by BLAS (X = j3c L⁻ᵀ, so Xᵀ = L⁻¹ j3cᵀ is B packed): no copy
    # of the 3-index tensor, where solve_triangular made two (its result, then C order), which
    # cost time and, at 485 AOs, 2 × 2.2 GB at the peak
    trsm, = scipy.linalg.get_blas_funcs(("trsm",), (low, j3c))
    packed = trsm(1.0, low, j3c, side=1, lower=True, trans_a=1, overwrite_b=True)
    return lib.unpack_tril(packed.T)


# K through a factor of D (below) when its rank is at most this fraction of N; above it the
# factor saves too little to pay for the eigendecomposition
LOW_RANK_FRACTION = 0.6
# eigenvalues of D below this times the largest in magnitude are dropped from the factor: their
# share of K is below ~1e-13 relative, under the float64 noise of the products themselves
LOW_RANK_CUTOFF = 1e-13


def df_coulomb_exchange(
    b: torch.Tensor, dm: torch.Tensor, with_k: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """J (N, N) and K (N, N) of a density from the fitted factor B (N_aux, N, N).

    K goes through the occupied space when it can: the density is factored, D = V Λ Vᵀ over its
    r non-negligible eigenvalues (r = N_occ for an aufbau density, 2 N_occ for a mixed one), and
    K = Σ_Q (Vᵀ B_Q)ᵀ Λ (Vᵀ B_Q) costs 2 N_aux N² r instead of 2 N_aux N³ (uracil: 29 of 132;
    the 485-AO peptide: 4.7 GB of B D products avoided).  A density that requires grad (the
    sandwich's inner iterations) goes through ``_FittedExchange``: the same forward, and a
    backward that is K itself (no eigendecomposition is differentiated, nothing B-sized kept).
    """
    n_aux, n = b.shape[0], dm.shape[-1]
    with_grad = dm.requires_grad and torch.is_grad_enabled()
    if with_k and not with_grad:
        factor = low_rank_factor(dm)
        if factor is not None:
            return _jk_through_factor(b, dm, *factor)
    b_flat = b.reshape(n_aux, n * n)
    j = ((b_flat @ dm.reshape(n * n)) @ b_flat).reshape(n, n)
    if not with_k:
        return j, None
    return j, (_FittedExchange.apply(dm, b) if with_grad else _exchange_full(b, dm))


def _exchange_full(b: torch.Tensor, dm: torch.Tensor) -> torch.Tensor:
    """K_μσ = Σ_Q Σ_λν (B_Q)_μλ D_λν (B_Q)_νσ for any (N, N) D, symmetric or not: one
    (N, N_aux N) @ (N_aux N, N) product after B_Q D."""
    n_aux, n = b.shape[0], dm.shape[-1]
    x = torch.matmul(b, dm)                                       # (N_aux, N, N)
    return x.transpose(0, 1).reshape(n, n_aux * n) @ b.reshape(n_aux * n, n)


class _FittedExchange(torch.autograd.Function):
    """K(D) whose backward is K of the incoming gradient: K is linear in D and, the B_Q being
    symmetric, self-adjoint (⟨G, K(D)⟩ = ⟨K(G), D⟩), so dL/dD = K(∂L/∂K).  The forward goes
    through the factor of D when D's rank allows; the backward's K(G) takes the full product
    (G has no low rank).  Autograd through the plain products instead cost the same full product
    twice more and kept B D and its transposed copy (2 N_aux N² each) for the backward."""

    @staticmethod
    def forward(ctx, dm, b):
        ctx.save_for_backward(b)
        factor = low_rank_factor(dm)
        if factor is None:
            return _exchange_full(b, dm)
        return _jk_through_factor(b, dm, *factor)[1]

    @staticmethod
    def backward(ctx, grad_k):
        # the factor path computes K(sym D); D is symmetric wherever it is used (aufbau
        # densities and their mixtures) and the aufbau backward keeps only the symmetric part
        # of what it receives, so K(G) and sym K(G) give the same gradients upstream
        (b,) = ctx.saved_tensors
        return _exchange_full(b, grad_k), None


K_CHUNK = 32  # auxiliary functions per step of ``_jk_through_factor``


def _jk_through_factor(
    b: torch.Tensor, dm: torch.Tensor, vecs: torch.Tensor, vals: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """J and K of D = V diag(λ) Vᵀ, K_CHUNK auxiliary functions at a time: each slice of B is
    read once for both, and the temporaries Y_Q = Vᵀ B_Q stay (K_CHUNK r, N) instead of
    (N_aux r, N) (1.8 GB at the 485-AO peptide); about 10 % faster there than whole-B products."""
    n = dm.shape[-1]
    j = dm.new_zeros(n * n)
    k = dm.new_zeros(n, n)
    d_flat = dm.reshape(n * n)
    for start in range(0, b.shape[0], K_CHUNK):
        chunk = b[start: start + K_CHUNK]                          # (c, N, N)
        c_flat = chunk.reshape(-1, n * n)
        j.addmv_(c_flat.mT, c_flat @ d_flat)                       # Σ_Q B_Q tr(B_Q D)
        y = torch.matmul(vecs.mT, chunk)                           # (c, r, N)
        k.addmm_(y.reshape(-1, n).mT, (y * vals[:, None]).reshape(-1, n))
    return j.reshape(n, n), k


def low_rank_factor(dm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(V (N, r), λ (r,)) with D = V diag(λ) Vᵀ over the eigenvalues of D that matter, or None
    when r exceeds ``LOW_RANK_FRACTION`` N.  D is symmetrised first (as J and K assume)."""
    with torch.no_grad():
        vals, vecs = torch.linalg.eigh(0.5 * (dm + dm.mT))
        keep = vals.abs() > LOW_RANK_CUTOFF * vals.abs().max()
        if int(keep.sum()) > LOW_RANK_FRACTION * dm.shape[-1]:
            return None
        return vecs[:, keep], vals[keep]
