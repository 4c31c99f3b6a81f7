"""Gaussian AO values and gradients at grid points, in torch: what ``grid_ao`` recomputes per
block when the grid's AO values are not stored (``GridAOBudget``), so memory grows with N × block
instead of Σ n_sig · g over the whole grid.

A contracted spherical AO of angular momentum l on centre A, as PySCF (libcint) evaluates it:
    φ(r) = f_l · Σ_cart T[cart, m] x^a y^b z^c · Σ_p c_p exp(−α_p |r − A|²),   (x, y, z) = r − A
with the coefficients c_p as libcint holds them (the primitives' norms included), f_0 = 1/√(4π),
f_1 = √(3/(4π)), f_l = 1 for l ≥ 2, and T PySCF's cartesian-to-spherical matrix (identity for
l ≤ 1: PySCF orders p functions x, y, z).  Gradients are the exact derivatives of the same
expression.  tests/test_gto.py holds it to PySCF's ``eval_ao`` (values and gradients, l ≤ 3).

Shells are grouped by l, each (shell, contraction) one row and the primitives zero-padded to the
group's longest, so one block of points is a few batched tensor operations per l.  PySCF is
imported by ``gto_basis`` only, where the tensors are made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

_SP_FACTOR = {0: 1.0 / math.sqrt(4.0 * math.pi), 1: math.sqrt(3.0 / (4.0 * math.pi))}


def cartesian_powers(ell: int) -> list[tuple[int, int, int]]:
    """(a, b, c) of x^a y^b z^c in PySCF's cartesian order (xx, xy, xz, yy, yz, zz for d)."""
    return [(a, b, ell - a - b) for a in range(ell, -1, -1) for b in range(ell - a, -1, -1)]


@dataclass(frozen=True)
class ShellGroup:
    """The rows (one per shell and contraction) of one angular momentum."""

    ell: int
    centers: torch.Tensor    # (S, 3) Bohr
    exponents: torch.Tensor  # (S, P) zero-padded (with zero coefficients) to the longest
    coefs: torch.Tensor      # (S, P) libcint's contraction coefficients × f_l
    first_ao: torch.Tensor   # (S,) int64: the row's first AO (PySCF order); it has 2l + 1
    powers: torch.Tensor     # (n_cart, 3) int64: (a, b, c) of each cartesian component
    cart2sph: torch.Tensor   # (n_cart, 2l + 1)

    def to(self, device: torch.device | str) -> ShellGroup:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


@dataclass(frozen=True)
class GTOBasis:
    groups: tuple[ShellGroup, ...]
    n_ao: int

    def to(self, device: torch.device | str) -> GTOBasis:
        return GTOBasis(tuple(g.to(device) for g in self.groups), self.n_ao)


def gto_basis(mol) -> GTOBasis:
    """The basis of a PySCF ``Mole`` (spherical AOs) as torch tensors, float64."""
    from pyscf import gto

    rows: dict[int, list] = {}
    first = 0
    for shell in range(mol.nbas):
        ell = int(mol.bas_angular(shell))
        exps = mol.bas_exp(shell)
        coefs = mol._libcint_ctr_coeff(shell) * _SP_FACTOR.get(ell, 1.0)   # (P, n_ctr)
        for ctr in range(coefs.shape[1]):
            # by l alone, primitives zero-padded: fewer, larger operations (grouping by l and
            # primitive count too, which saves the padding's exponentials, was slower: uracil)
            rows.setdefault(ell, []).append(
                (mol.bas_coord(shell), exps, coefs[:, ctr], first))
            first += 2 * ell + 1
    if first != mol.nao:
        raise ValueError("cartesian basis sets are not supported")
    groups = []
    for ell in sorted(rows):
        group = rows[ell]
        n_prim = max(len(r[1]) for r in group)
        exps = torch.zeros(len(group), n_prim, dtype=torch.float64)
        coefs = torch.zeros_like(exps)
        for i, (_, e, c, _) in enumerate(group):
            exps[i, : len(e)] = torch.as_tensor(e)
            coefs[i, : len(c)] = torch.as_tensor(c)
        # l <= 1: the cartesian components are the spherical ones, in PySCF's order
        t2s = np.eye(2 * ell + 1) if ell <= 1 else gto.cart2sph(ell, normalized="sp")
        groups.append(ShellGroup(
            ell=ell,
            centers=torch.as_tensor(np.array([r[0] for r in group]).reshape(-1, 3)),
            exponents=exps, coefs=coefs,
            first_ao=torch.tensor([r[3] for r in group], dtype=torch.int64),
            powers=torch.tensor(cartesian_powers(ell), dtype=torch.int64),
            cart2sph=torch.as_tensor(np.ascontiguousarray(t2s), dtype=torch.float64)))
    return GTOBasis(tuple(groups), int(mol.nao))


def _group_values(g: ShellGroup, rows: torch.Tensor, points: torch.Tensor,
                  with_grad: bool) -> torch.Tensor:
    """(comp, S_sig, 2l + 1, n) values (and ∂x, ∂y, ∂z) of the group's ``rows`` at ``points``
    (n, 3)."""
    d = points.mT[None] - g.centers[rows, :, None]              # (S, 3, n)  r − A
    r2 = (d * d).sum(1)                                         # (S, n)
    exps = g.exponents[rows, :, None]
    gauss = g.coefs[rows, :, None] * torch.exp(-exps * r2[:, None])  # (S, P, n)
    radial = gauss.sum(1)                                       # (S, n)
    # x^0..x^l (and y, z) by products, then each cartesian component's by indexing: no pow
    table = [torch.ones_like(d)]
    for _ in range(g.ell):
        table.append(table[-1] * d)
    table = torch.stack(table, 1)                               # (S, l + 1, 3, n)
    a = g.powers                                                # (C, 3) int64
    mono = [table[:, a[:, k], k] for k in range(3)]             # 3 × (S, C, n)
    poly = mono[0] * mono[1] * mono[2]                          # (S, C, n)
    out = [poly * radial[:, None]]
    if with_grad:
        slope = -2.0 * (exps * gauss).sum(1)                    # 2 dR/d(r²) (S, n)
        for k in range(3):
            # ∂(x^a y^b z^c)/∂x = a x^(a−1) y^b z^c (zero when a = 0)
            lower = table[:, (a[:, k] - 1).clamp(min=0), k] * a[:, k, None]
            dpoly = lower * mono[(k + 1) % 3] * mono[(k + 2) % 3]
            out.append(dpoly * radial[:, None] + poly * (slope * d[:, k])[:, None])
    cart = torch.stack(out)                                     # (comp, S, C, n)
    if g.ell <= 1:                                              # cartesian = spherical
        return cart
    return torch.matmul(g.cart2sph.mT, cart)                    # (comp, S, 2l + 1, n)


def eval_block(basis: GTOBasis, points: torch.Tensor, ao_index: torch.Tensor,
               with_grad: bool) -> torch.Tensor:
    """(comp, n_sig, n) values and gradients of the AOs ``ao_index`` (sorted, whole shells) at
    ``points`` (n, 3), comp = 4 with gradients, else 1: the layout of ``grid_ao``'s blocks."""
    comp = 4 if with_grad else 1
    out = points.new_zeros(comp, ao_index.numel(), points.shape[0])
    for g in basis.groups:
        pos = torch.searchsorted(ao_index, g.first_ao).clamp(max=ao_index.numel() - 1)
        rows = torch.nonzero(ao_index[pos] == g.first_ao).flatten()
        if rows.numel() == 0:
            continue
        where = pos[rows, None] + torch.arange(2 * g.ell + 1, device=pos.device)  # (S, 2l+1)
        out[:, where.flatten()] = _group_values(g, rows, points, with_grad).flatten(1, 2)
    return out
