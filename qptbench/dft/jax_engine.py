"""The Kohn–Sham energy E(X; H) in JAX: the torch engine's physics (``energy.py``,
``density.py``) on ``JaxTensors``, jitted, float64.

Same conventions as the torch engine (closed-shell RKS, PySCF's):
    E(D) = tr(D h) + ½ tr(D J) − ¼ a tr(D K) + E_xc[ρ] + E_nuc,   F(D) = h + J − ½ a K + V_xc.
The XC kernels are the torch engine's own (``xc_terms``, written once for both libraries); the
aufbau density has the same degenerate-safe derivative (occupied–virtual pairs only, the same
Lorentzian GAP_ETA), here as a ``jax.custom_vjp``.

Every public function is ``jax.jit``-compiled with static shapes: it compiles once per array
shapes (basis size, number of grid blocks), functional and mixing schedule, and is reused for
every new H and every geometry with those shapes.  ``TRACES`` counts how often each traced
body ran (its Python runs only while JAX traces), which the tests use to show that a second
call does not retrace.

    tj = from_torch(build_tensors(molecule))            # once per geometry
    e = energy(tj, h, mixes=(0.5, 0.0))                  # the paper's 1+3 sandwich
    e, de_dh = energy_and_grad(tj, h, mixes=(0.5, 0.0))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from qptbench.dft.density import GAP_ETA
from qptbench.dft.jax_tensors import JaxTensors
from qptbench.dft.jax_xc import xc_energy_potential

TRACES: Counter[str] = Counter()  # traced-body runs per function, see the module docstring


def orthogonal_eigh(h: jax.Array, l_inv: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues ε (N,) and eigenvectors U (N, N) of L⁻¹ · sym(H) · L⁻ᵀ, ascending."""
    h_sym = 0.5 * (h + h.T)
    return jnp.linalg.eigh(l_inv @ h_sym @ l_inv.T)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _aufbau(h: jax.Array, l_inv: jax.Array, n_occ: int, eta: float) -> jax.Array:
    return _aufbau_fwd(h, l_inv, n_occ, eta)[0]


def _aufbau_fwd(h, l_inv, n_occ, eta):
    eps, u = orthogonal_eigh(h, l_inv)
    c_occ = l_inv.T @ u[:, :n_occ]                               # (N, n_occ)
    return 2.0 * c_occ @ c_occ.T, (eps, u, l_inv)


def _aufbau_bwd(n_occ, eta, res, grad_d):
    # density.py's backward, line for line: D depends on the occupied subspace only, so only
    # occupied–virtual pairs enter, with 1/Δ regularised to Δ / (Δ² + η²).
    eps, u, l_inv = res
    u_occ, u_vir = u[:, :n_occ], u[:, n_occ:]                    # (N, o), (N, v)
    g = l_inv @ (0.5 * (grad_d + grad_d.T)) @ l_inv.T            # dL/dP, D = L⁻ᵀ P L⁻¹
    b = u_vir.T @ g @ u_occ                                      # (v, o)
    gap = eps[None, :n_occ] - eps[n_occ:, None]                  # ε_i − ε_a  (v, o)
    w = 4.0 * b * gap / (gap * gap + eta * eta)
    g_h = u_vir @ w @ u_occ.T                                    # dL/dH̃
    g_h = 0.5 * (g_h + g_h.T)
    # l_inv is a constant of the geometry: no cotangent (None is JAX's symbolic zero)
    return l_inv.T @ g_h @ l_inv, None


_aufbau.defvjp(_aufbau_fwd, _aufbau_bwd)


def aufbau_density(
    h: jax.Array, l_inv: jax.Array, n_occ: int, eta: float = GAP_ETA
) -> jax.Array:
    """Closed-shell density 2 C_occ C_occᵀ of the n_occ lowest orbitals of H (N, N), with the
    degenerate-safe derivative; H is symmetrised first."""
    if not 0 < n_occ <= h.shape[-1]:
        raise ValueError(f"n_occ={n_occ} outside 1..{h.shape[-1]}")
    return _aufbau(h, l_inv, int(n_occ), float(eta))


def coulomb_exchange(
    eri: jax.Array, dm: jax.Array, with_k: bool = True
) -> tuple[jax.Array, jax.Array | None]:
    """J (N, N) and K (N, N) of a density from the dense (N, N, N, N) ERIs."""
    n = dm.shape[-1]
    d = dm.reshape(n * n)
    j = (eri.reshape(n * n, n * n) @ d).reshape(n, n)
    if not with_k:
        return j, None
    # K_il = Σ_(jk) eri[i, (jk), l] D_(jk), as a broadcast product summed over the middle axis
    # of a reshape (a view): XLA fuses it into one streaming pass over the ERIs.  As a dot
    # (einsum "iml,m->il") XLA transposed the whole tensor per call: uracil 4.3 s against
    # 0.55 s this way (a batched (1, N²) @ (N², N) dot 1.0 s).
    return j, (eri.reshape(n, n * n, n) * d.reshape(1, n * n, 1)).sum(1)


def df_coulomb_exchange(
    b: jax.Array, dm: jax.Array, with_k: bool = True
) -> tuple[jax.Array, jax.Array | None]:
    """J (N, N) and K (N, N) from the fitted factor B (N_aux, N, N): J = Σ_Q B_Q tr(B_Q D),
    K = Σ_Q B_Q D B_Q (``density_fitting.py``; any D, as there)."""
    n_aux, n = b.shape[0], dm.shape[-1]
    b_flat = b.reshape(n_aux, n * n)
    j = ((b_flat @ dm.reshape(n * n)) @ b_flat).reshape(n, n)
    if not with_k:
        return j, None
    x = jnp.matmul(b, dm)                                        # (N_aux, N, N): B_Q D
    # K_μσ = Σ_Qλ (B_Q D)_μλ (B_Q)_λσ: one dot contracting Q and λ together
    k = lax.dot_general(x, b, (((0, 2), (0, 1)), ((), ())))
    return j, k


def coulomb_exchange_of(
    t: JaxTensors, dm: jax.Array, with_k: bool = True
) -> tuple[jax.Array, jax.Array | None]:
    """J and K at the tensors' level: dense ERIs, or the fitted factor where ``t.eri`` is None
    (the choice is static: a pytree leaf that is None is no leaf, so it is part of the shape)."""
    if t.df_b is not None:
        return df_coulomb_exchange(t.df_b, dm, with_k)
    return coulomb_exchange(t.eri, dm, with_k)


def _energy_and_fock(t: JaxTensors, dm: jax.Array) -> tuple[jax.Array, jax.Array]:
    hyb = t.xc.hyb
    j, k = coulomb_exchange_of(t, dm, with_k=hyb != 0)
    e_xc, v_xc = xc_energy_potential(t, dm)
    energy = (dm * t.h_core).sum() + 0.5 * (dm * j).sum() + e_xc + t.e_nuc
    fock = t.h_core + j + v_xc
    if k is not None:
        energy = energy - 0.25 * hyb * (dm * k).sum()
        fock = fock - 0.5 * hyb * k
    return energy, fock


@jax.custom_vjp
def _energy_of_density(t: JaxTensors, dm: jax.Array) -> jax.Array:
    """E(D) whose derivative is the Fock matrix built in the forward pass: dE/dD = F(D)."""
    return _energy_and_fock(t, dm)[0]


def _energy_fwd(t, dm):
    energy, fock_matrix = _energy_and_fock(t, dm)
    return energy, fock_matrix


def _energy_bwd(fock_matrix, grad_energy):
    # The tensors are constants of the geometry: no cotangent for them.
    return None, grad_energy * fock_matrix


_energy_of_density.defvjp(_energy_fwd, _energy_bwd)


def _fock(t: JaxTensors, dm: jax.Array) -> jax.Array:
    return _energy_and_fock(t, dm)[1]


def _final_density(t: JaxTensors, h: jax.Array, mixes: tuple[float, ...]) -> jax.Array:
    """H → D₁ = aufbau(H) → [D' = (1 − mix)·aufbau(F(D)) + mix·D] × len(mixes)."""
    dm = aufbau_density(h, t.l_inv, t.n_occ)
    for mix in mixes:
        new = aufbau_density(_fock(t, dm), t.l_inv, t.n_occ)
        dm = new if mix == 0.0 else (1.0 - mix) * new + mix * dm
    return dm


def _energy(t: JaxTensors, h: jax.Array, mixes: tuple[float, ...]) -> jax.Array:
    TRACES["energy"] += 1
    return _energy_of_density(t, _final_density(t, h, mixes))


def _energy_and_grad(
    t: JaxTensors, h: jax.Array, mixes: tuple[float, ...]
) -> tuple[jax.Array, jax.Array]:
    TRACES["energy_and_grad"] += 1
    return jax.value_and_grad(_energy, argnums=1)(t, h, mixes)


def _sandwich_fock(
    t: JaxTensors, h: jax.Array, mixes: tuple[float, ...]
) -> tuple[jax.Array, jax.Array, jax.Array]:
    TRACES["sandwich"] += 1
    dm = _final_density(t, h, mixes)
    energy, fock_matrix = _energy_and_fock(t, dm)
    return energy, dm, fock_matrix


def _energy_and_fock_traced(t: JaxTensors, dm: jax.Array) -> tuple[jax.Array, jax.Array]:
    TRACES["energy_and_fock"] += 1
    return _energy_and_fock(t, dm)


_energy_jit = jax.jit(_energy, static_argnames="mixes")
_energy_and_grad_jit = jax.jit(_energy_and_grad, static_argnames="mixes")
_sandwich_jit = jax.jit(_sandwich_fock, static_argnames="mixes")
_energy_and_fock_jit = jax.jit(_energy_and_fock_traced)


def _mixes(mixes: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(m) for m in mixes)  # hashable and canonical: one compile per schedule


def energy_and_fock(t: JaxTensors, dm: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Total energy (Ha, 0-d) and Fock matrix (N, N) of a symmetric density (jitted)."""
    return _energy_and_fock_jit(t, jnp.asarray(dm, dtype=jnp.float64))


def energy(t: JaxTensors, h: jax.Array, mixes: Sequence[float] = ()) -> jax.Array:
    """E(X; H), Ha: the energy after ``1 + len(mixes)`` DFT iterations from H (jitted).

    ``mixes=()`` is E(aufbau(H)); ``(0.5, 0.0)`` the paper's schedule, as in the torch engine's
    ``sandwich``.  Differentiable with ``jax.grad``; ``energy_and_grad`` does both in one call.
    """
    return _energy_jit(t, jnp.asarray(h, dtype=jnp.float64), mixes=_mixes(mixes))


def energy_and_grad(
    t: JaxTensors, h: jax.Array, mixes: Sequence[float] = ()
) -> tuple[jax.Array, jax.Array]:
    """(E(X; H), dE/dH (N, N)) in one jitted call."""
    return _energy_and_grad_jit(t, jnp.asarray(h, dtype=jnp.float64), mixes=_mixes(mixes))


def sandwich(
    t: JaxTensors, h: jax.Array, mixes: Sequence[float] = ()
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(E(D_final), D_final, F(D_final)) after the same iterations as ``energy`` (jitted)."""
    return _sandwich_jit(t, jnp.asarray(h, dtype=jnp.float64), mixes=_mixes(mixes))
