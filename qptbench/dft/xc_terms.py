"""Closed-shell exchange-correlation kernels, written from the published formulas, once for
every array library.

Each kernel maps (xp, rho, rho^(1/3), sigma) to the energy per particle e, so E_xc = ∫ rho e.
Inputs are screened first (``exc_sum`` below: rho > 0, sigma >= a small floor), so the kernels
need no guards of their own; every expression is smooth there, which keeps the first and second
autodiff derivatives finite.

Framework-neutral by an explicit array namespace ``xp``: the ``torch`` module or ``jax.numpy``.
The two share every name used here (sqrt, log, log1p, expm1, exp, atan, asinh, where, clip,
zeros_like; checked in torch 2.13 and jax 0.10.2), and arithmetic operators dispatch on the
arrays themselves.  An explicit argument rather than inferring the library from the input
(``array_api_compat``): no extra dependency, no per-call type dispatch, and a kernel written
with a name that one library lacks fails on the first call of that library's tests.  The torch
path runs exactly the operations it ran before, in the same order, so its numbers are
bit-identical.  The only operation the namespaces do not share is "stop the gradient", which
the screening needs; callers pass it (``Tensor.detach``, ``jax.lax.stop_gradient``).

Constants follow libxc 7.0.0 (the reference PySCF calls), including its per-functional
density thresholds, recorded here next to each kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Array = Any  # a torch.Tensor or a jax.Array, float64
Namespace = Any  # the torch module or jax.numpy
Kernel = Callable[[Namespace, Array, Array, "Array | None"], Array]

_PI = math.pi
_CX = 0.75 * (3.0 / _PI) ** (1.0 / 3.0)  # Dirac: e_x^LDA = -_CX rho^(1/3)
_RS = (3.0 / (4.0 * _PI)) ** (1.0 / 3.0)  # rs = _RS / rho^(1/3)


@dataclass(frozen=True)
class Term:
    """One libxc component: its kernel and the screening libxc applies to it."""

    kernel: Kernel
    libxc_id: int
    dens_threshold: float  # libxc info->dens_threshold
    needs_sigma: bool
    # libxc's exchange kernels also zero each spin channel with rho_s <= threshold, which for a
    # closed shell (rho_s = rho/2) moves the cut-off to rho <= 2 * threshold.
    spin_screened: bool = False

    @property
    def sigma_floor(self) -> float:
        # libxc: sigma_threshold = dens_threshold^(4/3) and sigma >= sigma_threshold^2
        return (self.dens_threshold ** (4.0 / 3.0)) ** 2


def _slater(xp: Namespace, rho: Array, r13: Array, sigma: Array | None) -> Array:
    return -_CX * r13


# Becke 88: E_x = E_x^LDA - beta sum_s rho_s^(4/3) x_s^2 / (1 + 6 beta x_s asinh x_s),
# x_s = |grad rho_s| / rho_s^(4/3); closed shell gives x_s^2 = 2^(2/3) sigma / rho^(8/3).
_B88_BETA = 0.0042


def _b88(xp: Namespace, rho: Array, r13: Array, sigma: Array | None) -> Array:
    assert sigma is not None
    rho43 = rho * r13
    y = 2.0 ** (2.0 / 3.0) * sigma / (rho43 * rho43)
    # y > 0 (sigma is floored), so sqrt is differentiable. Autograd's d2/dy2 of x asinh x
    # cancels two ~1/y terms at small y, but it enters v2sigma2 multiplied by y, so the lost
    # digits never show (checked against the exact sigma -> 0 limit in the tests).
    x = xp.sqrt(y)
    grad_part = 2.0 ** (-1.0 / 3.0) * _B88_BETA * y / (1.0 + 6.0 * _B88_BETA * x * xp.asinh(x))
    return -r13 * (_CX + grad_part)


# PBE exchange: F(s) = 1 + kappa - kappa / (1 + mu s^2 / kappa). F stays >= 1, so the
# form 1 + kappa - kappa^2 / (kappa + mu s^2) loses nothing, and unlike kappa mu s^2 / (kappa +
# mu s^2) its autograd derivative has no quotient-rule cancellation at large s.
_PBE_KAPPA = 0.804
_PBE_BETA = 0.06672455060314922
_PBE_MU = _PBE_BETA * _PI**2 / 3.0  # 0.2195149727645171, as in libxc
_S2_FACTOR = 1.0 / (4.0 * (3.0 * _PI**2) ** (2.0 / 3.0))  # s^2 = _S2_FACTOR sigma / rho^(8/3)


def _pbe_x(xp: Namespace, rho: Array, r13: Array, sigma: Array | None) -> Array:
    assert sigma is not None
    rho43 = rho * r13
    mu_s2 = _PBE_MU * _S2_FACTOR * sigma / (rho43 * rho43)
    return -_CX * r13 * ((1.0 + _PBE_KAPPA) - _PBE_KAPPA**2 / (_PBE_KAPPA + mu_s2))


def _vwn(a: float, b: float, c: float, x0: float) -> Kernel:
    """Vosko-Wilk-Nusair paramagnetic fit (x = sqrt(rs)); the spin interpolation is 0 here."""
    q = math.sqrt(4.0 * c - b * b)
    big_x0 = x0 * x0 + b * x0 + c
    k1 = 2.0 * b / q
    k2 = b * x0 / big_x0
    k3 = 2.0 * (b + 2.0 * x0) / q

    def kernel(xp: Namespace, rho: Array, r13: Array, sigma: Array | None) -> Array:
        rs = _RS / r13
        x = xp.sqrt(rs)
        big_x = rs + b * x + c
        at = xp.atan(q / (2.0 * x + b))
        return a * (
            xp.log(rs / big_x)
            + k1 * at
            - k2 * (xp.log((x - x0) ** 2 / big_x) + k3 * at)
        )

    return kernel


def _pw92_mod(xp: Namespace, rs: Array) -> Array:
    """Perdew-Wang 92 paramagnetic correlation with libxc's PW_MOD parameters (used by PBE)."""
    a, alpha1 = 0.0310907, 0.21370
    b1, b2, b3, b4 = 7.5957, 3.5876, 1.6382, 0.49294
    x = xp.sqrt(rs)
    den = 2.0 * a * (x * (b1 + b3 * rs) + rs * (b2 + b4 * rs))
    return -2.0 * a * (1.0 + alpha1 * rs) * xp.log1p(1.0 / den)


# PBE correlation, phi = 1: e = eps + H, H = gamma ln(1 + beta/gamma t^2 (1 + u) / (1 + u + u^2)),
# u = A t^2, A = beta/gamma / (exp(-eps/gamma) - 1), t^2 = pi sigma / (16 (3 pi^2)^(1/3) rho^(7/3)).
# H -> -eps at large t, so eps + H cancels; substituting A gives the exact rearrangement
# e = gamma ln(1 + (exp(eps/gamma) - 1) / (1 + u + u^2)), which has no cancellation.
_PBE_GAMMA = (1.0 - math.log(2.0)) / _PI**2
_T2_FACTOR = _PI / (16.0 * (3.0 * _PI**2) ** (1.0 / 3.0))


def _pbe_c(xp: Namespace, rho: Array, r13: Array, sigma: Array | None) -> Array:
    assert sigma is not None
    eg = _pw92_mod(xp, _RS / r13) / _PBE_GAMMA
    big_a = (_PBE_BETA / _PBE_GAMMA) / xp.expm1(-eg)  # expm1: eps -> 0 at low density
    u = big_a * _T2_FACTOR * sigma / (rho * rho * r13)
    return _PBE_GAMMA * xp.log1p(xp.expm1(eg) / (1.0 + u * (1.0 + u)))


# Lee-Yang-Parr in Miehlich et al.'s (1989) gradient-only form, at rho_a = rho_b = rho/2:
# e = -a/(1 + d r) [1 + b exp(-c r) (C_F - (3 + 7 delta) sigma / (72 rho^(8/3)))],
# r = rho^(-1/3), delta = c r + d r / (1 + d r).
_LYP_A, _LYP_B, _LYP_C, _LYP_D = 0.04918, 0.132, 0.2533, 0.349
_CF = 0.3 * (3.0 * _PI**2) ** (2.0 / 3.0)


def _lyp(xp: Namespace, rho: Array, r13: Array, sigma: Array | None) -> Array:
    assert sigma is not None
    r = 1.0 / r13
    den = 1.0 + _LYP_D * r
    delta = _LYP_C * r + _LYP_D * r / den
    rho43 = rho * r13
    grad_part = (3.0 + 7.0 * delta) * sigma / (72.0 * rho43 * rho43)
    return -_LYP_A / den * (1.0 + _LYP_B * xp.exp(-_LYP_C * r) * (_CF - grad_part))


TERMS: dict[str, Term] = {
    "slater": Term(_slater, 1, 1e-15, needs_sigma=False, spin_screened=True),
    "b88": Term(_b88, 106, 1e-15, needs_sigma=True, spin_screened=True),
    "pbe_x": Term(_pbe_x, 101, 1e-15, needs_sigma=True, spin_screened=True),
    "vwn5": Term(_vwn(0.0310907, 3.72744, 12.9352, -0.10498), 7, 1e-15, needs_sigma=False),
    "vwn_rpa": Term(_vwn(0.0310907, 13.0720, 42.7198, -0.409286), 8, 1e-15, needs_sigma=False),
    "lyp": Term(_lyp, 131, 1e-14, needs_sigma=True),
    "pbe_c": Term(_pbe_c, 130, 1e-12, needs_sigma=True),
}


def _screened_inputs(
    xp: Namespace, stop_gradient: Callable[[Array], Array], term: Term, rho: Array,
    sigma: Array | None, cache: dict,
) -> tuple[Array, Array, Array, Array | None]:
    """(mask, safe rho, safe rho^(1/3), safe sigma), shared by terms with the same screening."""
    key = (term.dens_threshold, term.spin_screened)
    if key not in cache:
        thr = term.dens_threshold
        # libxc skips points with rho < threshold (outputs 0); exchange also with rho/2 <= thr
        mask = rho > 2.0 * thr if term.spin_screened else rho >= thr
        # Masked points get rho = 1, so no branch of the math sees 0 (the NaN-free "safe where").
        rho_safe = xp.where(mask, rho, 1.0)
        sig = None
        if sigma is not None:
            floor = term.sigma_floor
            # libxc clamps sigma up to its floor and reports the derivative at the clamped
            # value, so vsigma at sigma = 0 is not zero: max(sigma, floor) with derivative 1
            # everywhere (a plain clamp would give it zero gradient).
            through = sigma + stop_gradient(xp.clip(sigma, min=floor) - sigma)
            sig = xp.where(mask, through, floor)
        cache[key] = (mask, rho_safe, rho_safe ** (1.0 / 3.0), sig)
    return cache[key]


def exc_sum(
    xp: Namespace,
    stop_gradient: Callable[[Array], Array],
    terms: Sequence[tuple[str, float]],
    rho: Array,
    sigma: Array | None,
) -> Array:
    """Σ_t w_t e_t per particle, shape of rho, each term screened as libxc screens it.

    ``terms`` are (component name in TERMS, weight) pairs, checked by the caller (a GGA term
    needs sigma); twice differentiable in either library.
    """
    total = xp.zeros_like(rho)
    cache: dict = {}
    for name, weight in terms:
        term = TERMS[name]
        mask, rho_s, r13, sig = _screened_inputs(xp, stop_gradient, term, rho, sigma, cache)
        total = total + xp.where(mask, weight * term.kernel(xp, rho_s, r13, sig), 0.0)
    return total
