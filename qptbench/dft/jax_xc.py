"""Exchange–correlation in JAX: the shared kernels of ``xc_terms`` with jax.numpy, and E_xc and
V_xc of a density on the blocked grid of ``JaxTensors``.

Potentials are derivatives of the energy, taken by JAX (``jax.vjp`` of ρ·e for libxc-style
vrho/vsigma, ``jax.value_and_grad`` of the block energy for V_xc), so they stay differentiable
once more, which the DFT-iteration sandwich needs.
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


def _block_energy(
    func: Functional,
    weights: jax.Array,
    ao: jax.Array,
    ao_grad: jax.Array | None,
    dm: jax.Array,
) -> jax.Array:
    """E_xc of one grid block: weights (g,), AO values (N, g), gradients (3, N, g) or None."""
    x = dm @ ao                                           # (N, g)
    rho = (x * ao).sum(0)                                 # (g,)
    sigma = None
    if ao_grad is not None:
        grad = 2.0 * (ao_grad * x).sum(1)                 # ∇ρ (3, g), dm symmetric
        sigma = (grad * grad).sum(0)
    return jnp.dot(weights * rho, exc_per_particle(func, rho, sigma))


def xc_energy_potential(t: JaxTensors, dm: jax.Array) -> tuple[jax.Array, jax.Array]:
    """E_xc (scalar) and V_xc (N, N) = ∂E_xc/∂D, summed over the grid blocks by ``lax.scan``.

    Each block's gradient is taken inside the scan, so only one block's intermediates are alive
    at a time.  The gradient with respect to D of ρ built as above is not symmetric (∇ρ counts
    ∇φ_μ φ_ν once, not twice); its symmetric part is V_xc = A + Aᵀ exactly as PySCF builds it.
    """
    func = t.xc

    def body(carry, block):
        e_sum, g_sum = carry
        weights, ao, ao_grad = block
        e, g = jax.value_and_grad(
            lambda d: _block_energy(func, weights, ao, ao_grad, d))(dm)
        return (e_sum + e, g_sum + g), None

    init = (jnp.zeros((), dm.dtype), jnp.zeros_like(dm))
    (e_xc, g), _ = lax.scan(body, init, (t.weights, t.ao, t.ao_grad))
    return e_xc, 0.5 * (g + g.T)
