"""Exchange–correlation in JAX: the shared kernels of ``xc_terms`` with jax.numpy, and E_xc and
V_xc of a density on the blocked grid of ``JaxTensors``.

Pointwise potentials (libxc-style vrho/vsigma) are derivatives of the kernels taken by JAX
(``jax.vjp``); V_xc is then assembled by hand from them, block by block, as the torch engine
does (``xc_energy_potential`` says why in two passes).  Everything stays differentiable once
more, which the DFT-iteration sandwich needs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from qptbench.dft.jax_tensors import JaxTensors
from qptbench.dft.xc import Functional, check_terms, get_functional
from qptbench.dft.xc_terms import exc_sum
from qptbench.errors import InputError


def exc_per_particle(func: Functional, rho: jax.Array, sigma: jax.Array | None) -> jax.Array:
    """e_xc per particle, shape of rho (the same kernels and screening as the torch engine)."""
    return exc_sum(jnp, lax.stop_gradient, func.terms, rho, sigma)


def eval_xc(
    func: Functional | str, rho: jax.Array, sigma: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(exc, vrho, vsigma) as libxc's eval_xc for a closed shell, sigma = |grad rho|^2.

    vsigma is None for LDA-only functionals.  Not jitted itself: call it inside jit, or
    eagerly for checks.
    """
    func = get_functional(func)
    if func.is_gga and sigma is None:
        raise InputError(f"functional {func.name!r} is a GGA and needs sigma = |grad rho|^2")
    check_terms(func, sigma is not None)
    rho = jnp.asarray(rho, dtype=jnp.float64)
    if not func.is_gga:
        exc = exc_per_particle(func, rho, None)
        # pointwise, so the vector-Jacobian product with ones is the derivative at each point
        (vrho,) = jax.vjp(lambda r: r * exc_per_particle(func, r, None), rho)[1](
            jnp.ones_like(rho))
        return exc, vrho, None
    sigma = jnp.asarray(sigma, dtype=jnp.float64)

    def density(r: jax.Array, s: jax.Array) -> jax.Array:
        return r * exc_per_particle(func, r, s)

    exc = exc_per_particle(func, rho, sigma)
    vrho, vsigma = jax.vjp(density, rho, sigma)[1](jnp.ones_like(rho))
    return exc, vrho, vsigma


def _pointwise(
    func: Functional, rho: jax.Array, sigma: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(exc, vrho, vsigma) of screened-and-checked inputs, inside jit (see ``eval_xc``)."""
    if sigma is None:
        exc, vjp = jax.vjp(lambda r: exc_per_particle(func, r, None), rho)
        # d(ρe)/dρ = e + ρ de/dρ: one pullback of e, the product rule by hand
        (de,) = vjp(rho)
        return exc, exc + de, None
    exc, vjp = jax.vjp(lambda r, s: exc_per_particle(func, r, s), rho, sigma)
    de_drho, de_dsigma = vjp(rho)
    return exc, exc + de_drho, de_dsigma


def _density(
    ao: jax.Array, ao_grad: jax.Array | None, dm: jax.Array
) -> tuple[jax.Array, jax.Array | None]:
    """ρ (g,) and ∇ρ (3, g) or None of a symmetric density on one block (AO values (N, g))."""
    x = dm @ ao                                           # (N, g)
    rho = (x * ao).sum(0)
    if ao_grad is None:
        return rho, None
    # one sum per component: XLA's reduction over the middle axis of (3, N, g) was slower
    return rho, 2.0 * jnp.stack([(ao_grad[c] * x).sum(0) for c in range(3)])


def _coefficients(
    func: Functional, weights: jax.Array, rho: jax.Array, grad: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """The block's E_xc and the weights c (1 or 4, g) of its V_xc (``_block_potential``):
    c = (½ w v_ρ, 2 w v_σ ∇ρ); pointwise in (ρ, ∇ρ)."""
    sigma = None if grad is None else (grad * grad).sum(0)
    exc, vrho, vsigma = _pointwise(func, rho, sigma)
    coef = (0.5 * weights * vrho)[None]
    if grad is not None:
        coef = jnp.concatenate([coef, (2.0 * weights * vsigma) * grad])
    return jnp.dot(weights * rho, exc), coef


def _block_potential(ao: jax.Array, ao_grad: jax.Array | None, coef: jax.Array) -> jax.Array:
    """A (N, N) of one block, V_xc = A + Aᵀ: A_μν = Σ_g φ_μ [½ w v_ρ φ_ν + 2 w v_σ ∇ρ·∇φ_ν],
    the torch engine's ``_xc_block`` with the weights c from ``_coefficients``; linear in c."""
    half = ao * coef[0]                                   # (N, g)
    if ao_grad is not None:
        for c in range(3):
            half = half + ao_grad[c] * coef[c + 1]
    return ao @ half.T


def _assemble(t: JaxTensors, coefs: jax.Array) -> jax.Array:
    """V = Σ_blocks A + Aᵀ from per-block weights (B, 1 or 4, g): the second pass."""
    def potential(a_sum, block):
        ao, ao_grad, coef = block
        return a_sum + _block_potential(ao, ao_grad, coef), None

    a, _ = lax.scan(potential, jnp.zeros((t.n_ao, t.n_ao), coefs.dtype),
                    (t.ao, t.ao_grad, coefs))
    return a + a.T


def _xc_forward(t: JaxTensors, dm: jax.Array) -> tuple[jax.Array, jax.Array]:
    func = t.xc

    def coefficients(e_sum, block):
        weights, ao, ao_grad = block
        e, coef = _coefficients(func, weights, *_density(ao, ao_grad, dm))
        return e_sum + e, coef

    e_xc, coefs = lax.scan(coefficients, jnp.zeros((), dm.dtype), (t.weights, t.ao, t.ao_grad))
    return e_xc, _assemble(t, coefs)


def _xc_response(t: JaxTensors, dm: jax.Array, dm1: jax.Array) -> jax.Array:
    """dV_xc in the direction of a symmetric dm1: the same two passes, with the weights' change
    c' = jvp(c)(ρ, ∇ρ; ρ₁, ∇ρ₁) (V is linear in c, ρ and ∇ρ are linear in D)."""
    func = t.xc

    def coefficients(_, block):
        weights, ao, ao_grad = block
        primal, tangent = _density(ao, ao_grad, dm), _density(ao, ao_grad, dm1)
        _, coef1 = jax.jvp(lambda r, g: _coefficients(func, weights, r, g)[1], primal, tangent)
        return None, coef1

    _, coefs1 = lax.scan(coefficients, None, (t.weights, t.ao, t.ao_grad))
    return _assemble(t, coefs1)


@jax.custom_vjp
def xc_energy_potential(t: JaxTensors, dm: jax.Array) -> tuple[jax.Array, jax.Array]:
    """E_xc (scalar) and V_xc (N, N) = ∂E_xc/∂D of a symmetric density, block by block in two
    ``lax.scan`` passes, with a hand-written reverse mode.

    The first pass gives E_xc and, per point, the few weights of V_xc; the second assembles
    V_xc from them.  Why two: in one pass XLA fused the whole pointwise functional into the
    (N, g) loop that builds V_xc, evaluating it N times per point (ethanol: 0.7-2.4 s against
    0.25 s split; the weights between the passes are only (B, 4, g)).

    Reverse mode (the DFT-iteration sandwich differentiates F(D)): ∂V_xc/∂D is the symmetric
    second derivative of E_xc, so the pullback of a cotangent V̄ is the response dV_xc in the
    direction sym(V̄), computed as the forward is (``_xc_response``); JAX's own reverse mode
    through the scans ran 5x slower (water, 6-31G) and stored every block's (N, g) values.
    """
    return _xc_forward(t, dm)


def _xc_fwd(t, dm):
    e_xc, v = _xc_forward(t, dm)
    return (e_xc, v), (t, dm, v)


def _xc_bwd(res, cotangents):
    t, dm, v = res
    e_bar, v_bar = cotangents
    dm_bar = e_bar * v + _xc_response(t, dm, 0.5 * (v_bar + v_bar.T))
    return None, dm_bar  # the tensors are constants of the geometry


xc_energy_potential.defvjp(_xc_fwd, _xc_bwd)
