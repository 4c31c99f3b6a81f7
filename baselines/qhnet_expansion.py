"""Irreps -> l1 x l2 Hamiltonian blocks through Clebsch–Gordan coefficients (QHNet's Expansion).

For every path (l_in, l1, l2) with |l1 - l2| <= l_in <= l1 + l2 and l_in <= lmax of the input:

    block(l1, l2)[u, i, v, j] = (1/C) sum_w sum_k W[w, u, v] CG^{l1 l2 l_in}[i, j, k] x[w, k]

with C input channels per degree, u and v running over the l1 and l2 shells of the padded block,
and W produced per atom / per pair by an MLP of atom-type embeddings (so element-specific
behaviour enters only there).  For l_in = 0 a second MLP adds a bias b[u, v] CG[i, j, 0], i.e. a
multiple of the identity in m.  CG = ``o3.wigner_3j(l1, l2, l_in)``, so a block rotates as
D(l1) block D(l2)ᵀ.  Paths are indexed by l, never by position in an irreps list (AIRS pitfall).
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from qptbench.errors import InputError


class Expansion(nn.Module):
    def __init__(self, channels: int, lmax_in: int, multiplicity: tuple[int, ...]):
        super().__init__()
        self.channels, self.lmax_in, self.multiplicity = channels, lmax_in, multiplicity
        max_l = len(multiplicity) - 1
        if lmax_in < 2 * max_l:
            raise InputError(
                f"the basis has l={max_l} shells: the expansion needs irreps up to l={2 * max_l}, "
                f"the model has lmax={lmax_in}"
            )
        self.paths: list[tuple[int, int, int, int]] = []  # (l_in, l1, l2, first weight)
        n_weights = 0
        for l1, m1 in enumerate(multiplicity):
            for l2, m2 in enumerate(multiplicity):
                if not (m1 and m2):
                    continue
                for l_in in range(abs(l1 - l2), l1 + l2 + 1):
                    self.paths.append((l_in, l1, l2, n_weights))
                    n_weights += channels * m1 * m2
                    self.register_buffer(f"cg_{l1}_{l2}_{l_in}", o3.wigner_3j(l1, l2, l_in))
        self.n_weights = n_weights
        self.n_bias = sum(m * m for m in multiplicity)

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (E, C*(lmax_in+1)^2) even irreps, weight (E, n_weights), bias (E, n_bias) ->
        padded blocks (E, F, F)."""
        e, c = x.shape[0], self.channels
        degrees, start = [], 0
        for ell in range(self.lmax_in + 1):
            degrees.append(x[:, start:start + c * (2 * ell + 1)].view(e, c, 2 * ell + 1))
            start += c * (2 * ell + 1)
        blocks: dict[tuple[int, int], torch.Tensor] = {}
        for l_in, l1, l2, first in self.paths:
            m1, m2 = self.multiplicity[l1], self.multiplicity[l2]
            w = weight[:, first:first + c * m1 * m2].view(e, c, m1, m2)
            cg = getattr(self, f"cg_{l1}_{l2}_{l_in}")
            term = torch.einsum("ewuv,ijk,ewk->euivj", w, cg, degrees[l_in]) / c
            blocks[l1, l2] = term if (l1, l2) not in blocks else blocks[l1, l2] + term
        start = 0
        for ell, m in enumerate(self.multiplicity):
            if m:
                b = bias[:, start:start + m * m].view(e, m, m)
                cg0 = getattr(self, f"cg_{ell}_{ell}_0")[..., 0]
                blocks[ell, ell] = blocks[ell, ell] + torch.einsum("euv,ij->euivj", b, cg0)
            start += m * m
        rows = []
        for l1, m1 in enumerate(self.multiplicity):
            if not m1:
                continue
            row = [blocks[l1, l2].reshape(e, m1 * (2 * l1 + 1), m2 * (2 * l2 + 1))
                   for l2, m2 in enumerate(self.multiplicity) if m2]
            rows.append(torch.cat(row, dim=-1))
        return torch.cat(rows, dim=-2)
