"""QHNet's building blocks in e3nn 0.6: radial basis, NormGate, node, self and pair layers.

All equivariant features have one multiplicity ``mul`` for every degree l = 0..lmax, laid out as
e3nn does it (``mul x 0 + mul x 1 + ...``, each irrep block [channel, m]).  Node features carry the
spherical-harmonic parities (0e, 1o, 2e, ...); the self and pair branches relabel them all as even,
as QHNet does, which keeps every l1 x l2 -> l path: the model is rotation- but not
reflection-equivariant.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch import nn


def uniform_irreps(mul: int, lmax: int, parity: str) -> o3.Irreps:
    """``mul x (0..lmax)``; parity "sh" gives (-1)^l (node features), "even" all even."""
    parities = [(-1) ** ell if parity == "sh" else 1 for ell in range(lmax + 1)]
    return o3.Irreps([(mul, (ell, p)) for ell, p in enumerate(parities)])


def split_degrees(x: torch.Tensor, mul: int, lmax: int) -> list[torch.Tensor]:
    """(..., mul*(lmax+1)^2) -> [(..., mul, 2l+1) for l = 0..lmax]."""
    out, start = [], 0
    for ell in range(lmax + 1):
        width = mul * (2 * ell + 1)
        out.append(x[..., start:start + width].unflatten(-1, (mul, 2 * ell + 1)))
        start += width
    return out


def join_degrees(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.flatten(-2) for p in parts], dim=-1)


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(x) - math.log(2.0)


class BernsteinRadialBasis(nn.Module):
    """PhiSNet's exponential Bernstein basis with a smooth cutoff, alpha fixed to 1 (MD17 QHNet).

    b_v(r) = f_cut(r) C(K-1, v) exp(-alpha r (K-1-v)) (1 - exp(-alpha r))^v, v = 0..K-1, and
    f_cut(r) = exp(-r² / ((rc - r)(rc + r))) for r < rc, else 0.  r and rc in Bohr.
    """

    def __init__(self, n_basis: int, cutoff: float, alpha: float = 1.0):
        super().__init__()
        k = n_basis - 1
        v = torch.arange(n_basis, dtype=torch.float64)
        log_binom = torch.lgamma(torch.tensor(k + 1.0, dtype=torch.float64)) - torch.lgamma(
            v + 1) - torch.lgamma(k - v + 1)
        self.register_buffer("log_binom", log_binom.to(torch.get_default_dtype()))
        self.register_buffer("v", v.to(torch.get_default_dtype()))
        self.n_basis, self.cutoff, self.alpha = n_basis, float(cutoff), float(alpha)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        k = self.n_basis - 1
        inside = r < self.cutoff
        rs = torch.where(inside, r, torch.zeros_like(r))  # keeps the cutoff's gradient finite
        f_cut = torch.where(
            inside, torch.exp(-rs**2 / ((self.cutoff - rs) * (self.cutoff + rs))), 0.0
        )
        # log(1 - e^{-ar}) diverges at r = 0 only for v > 0 where the term is 0 anyway
        log_term = -self.alpha * rs * (k - self.v) + self.v * torch.log(
            -torch.expm1(-self.alpha * rs.clamp_min(1e-12)))
        return f_cut * torch.exp(self.log_binom + log_term)


class NormGate(nn.Module):
    """QHNet's nonlinearity: an MLP of [scalars, norms of every l>0 channel] gives new scalars and
    one gate per l>0 channel (norms and gates are invariant, so the output stays equivariant)."""

    def __init__(self, mul: int, lmax: int):
        super().__init__()
        n = mul * (lmax + 1)
        self.mul, self.lmax = mul, lmax
        self.mlp = nn.Sequential(nn.Linear(n, n), nn.SiLU(), nn.Linear(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = split_degrees(x, self.mul, self.lmax)
        invariants = [parts[0][..., 0]] + [torch.linalg.vector_norm(p, dim=-1) for p in parts[1:]]
        h = self.mlp(torch.cat(invariants, dim=-1)).unflatten(-1, (self.lmax + 1, self.mul))
        out = [h[..., 0, :].unsqueeze(-1)]
        out += [p * h[..., ell, :].unsqueeze(-1) for ell, p in enumerate(parts) if ell > 0]
        return join_degrees(out)


def pair_invariants(x: torch.Tensor, mixed: torch.Tensor, row: torch.Tensor, col: torch.Tensor,
                    mul: int, lmax: int) -> torch.Tensor:
    """[scalars of row, scalars of col, per-channel <mixed_row, mixed_col> for l > 0]."""
    parts = split_degrees(mixed, mul, lmax)
    dots = [(p[row] * p[col]).sum(-1) for p in parts[1:]]
    return torch.cat([x[row, :mul], x[col, :mul], *dots], dim=-1)


def _uvu_instructions(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps):
    out = []
    for i, (_, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for k, (_, ir_out) in enumerate(irreps_out):
                if ir_out in ir_in * ir_sh:
                    out.append((i, j, k, "uvu", True))
    return out


def _uuu_instructions(irreps: o3.Irreps):
    return [(i, j, k, "uuu", True)
            for i, (_, a) in enumerate(irreps) for j, (_, b) in enumerate(irreps)
            for k, (_, c) in enumerate(irreps) if c in a * b]


class NodeLayer(nn.Module):
    """One message-passing layer: x_i <- Linear(sum_j TP(x_j, Y(r_ij); w_ij) + x_i) (+ residual).

    The per-edge weights are MLP(radial basis) * MLP(invariants of the two atoms); the invariants
    use both endpoints (the public MD17 code used the receiving atom twice: AIRS issue #23).
    """

    def __init__(self, irreps_in: o3.Irreps, mul: int, lmax: int, irreps_sh: o3.Irreps,
                 n_rbf: int, width: int):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), uniform_irreps(mul, lmax, "sh")
        self.in_lmax = self.irreps_in.lmax
        self.mul, self.first = mul, self.irreps_in.lmax == 0
        if not self.first:
            self.gate = NormGate(mul, lmax)
            self.pre = o3.Linear(self.irreps_in, self.irreps_in)
            self.mix = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = o3.TensorProduct(
            self.irreps_in, irreps_sh, self.irreps_out,
            _uvu_instructions(self.irreps_in, irreps_sh, self.irreps_out),
            shared_weights=False, internal_weights=False,
        )
        n_s0 = mul * (self.in_lmax + 2)
        self.radial = FullyConnectedNet([n_rbf, width, self.tp.weight_numel], shifted_softplus)
        self.invariant = FullyConnectedNet([n_s0, width, self.tp.weight_numel], shifted_softplus)
        self.out = o3.Linear(self.irreps_out, self.irreps_out)

    def forward(self, x, dst, src, sh, rbf):
        old = x
        if not self.first:
            x = self.pre(self.gate(x))
            s0 = pair_invariants(x, self.mix(x), dst, src, self.mul, self.in_lmax)
        else:
            s0 = torch.cat([x[dst], x[src]], dim=-1)
        weight = self.radial(rbf) * self.invariant(s0)
        messages = self.tp(x[src], sh, weight)
        summed = x.new_zeros(x.shape[0], messages.shape[-1]).index_add(0, dst, messages)
        if self.irreps_in == self.irreps_out:
            summed = summed + x
        out = self.out(summed)
        return out + old if self.irreps_in == self.irreps_out else out


class SelfLayer(nn.Module):
    """Same-atom features: channel-wise TP of two gated views of x, accumulated across layers."""

    def __init__(self, mul: int, lmax: int):
        super().__init__()
        irreps = uniform_irreps(mul, lmax, "even")
        self.gate_l, self.gate_r, self.gate_out = (NormGate(mul, lmax) for _ in range(3))
        self.lin_l, self.lin_r, self.lin_out = (o3.Linear(irreps, irreps) for _ in range(3))
        self.tp = o3.TensorProduct(irreps, irreps, irreps, _uuu_instructions(irreps),
                                   internal_weights=True, shared_weights=True)

    def forward(self, x, previous):
        out = self.tp(self.lin_l(self.gate_l(x)), self.lin_r(self.gate_r(x))) + x
        out = self.lin_out(self.gate_out(out))
        return out if previous is None else out + previous


class PairLayer(nn.Module):
    """Ordered-pair features on the complete graph: channel-wise TP of the two atoms' features with
    weights MLP(radial basis) * MLP(pair invariants), accumulated across layers."""

    def __init__(self, mul: int, lmax: int, n_rbf: int, width: int):
        super().__init__()
        irreps = uniform_irreps(mul, lmax, "even")
        self.mul, self.lmax = mul, lmax
        self.gate_in, self.gate_out = NormGate(mul, lmax), NormGate(mul, lmax)
        self.lin_in, self.mix, self.lin_out = (o3.Linear(irreps, irreps) for _ in range(3))
        self.tp = o3.TensorProduct(irreps, irreps, irreps, _uuu_instructions(irreps),
                                   internal_weights=False, shared_weights=False)
        self.radial = FullyConnectedNet([n_rbf, width, self.tp.weight_numel], shifted_softplus)
        self.invariant = FullyConnectedNet([mul * (lmax + 2), width, self.tp.weight_numel],
                                           torch.nn.functional.silu)

    def forward(self, x, row, col, rbf, previous):
        s0 = pair_invariants(x, self.mix(x), row, col, self.mul, self.lmax)
        weight = self.radial(rbf) * self.invariant(s0)
        h = self.lin_in(self.gate_in(x))
        out = self.lin_out(self.gate_out(self.tp(h[row], h[col], weight)))
        return out if previous is None else out + previous
