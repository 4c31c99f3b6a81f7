"""Pulay-DIIS Kohn–Sham SCF on the JAX engine: ``scf.py``'s algorithm as one jitted
``lax.while_loop``.

Static shapes throughout: the DIIS history is a ring buffer of ``diis_space`` (Fock, error)
pairs whose unfilled slots are pinned to zero coefficients in the Pulay system, and the energy
trace is a (max_cycle + 1,) array, NaN past the last iteration.  One compile per molecule
size, functional, ``max_cycle`` and ``diis_space``.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax

from qptbench.dft.jax_engine import TRACES, aufbau_density, energy_and_fock, orthogonal_eigh
from qptbench.dft.jax_tensors import JaxTensors
from qptbench.dft.scf import SCFResult
from qptbench.errors import InputError


class _State(NamedTuple):
    iteration: jax.Array
    dm: jax.Array
    fock: jax.Array
    energy: jax.Array
    error: jax.Array
    focks: jax.Array             # (space, N, N) ring buffer
    errors: jax.Array            # (space, N, N)
    converged: jax.Array
    energies: jax.Array          # (max_cycle + 1,)


def orbital_gradient(t: JaxTensors, fock: jax.Array, dm: jax.Array) -> jax.Array:
    """F D S − S D F in the orthonormal basis (N, N): zero exactly at self-consistency."""
    fds = fock @ dm @ t.overlap
    return t.l_inv @ (fds - fds.T) @ t.l_inv.T


def _diis(focks: jax.Array, errors: jax.Array, filled: jax.Array) -> jax.Array:
    """Pulay's extrapolation over the first ``filled`` slots (order does not matter)."""
    space = focks.shape[0]
    valid = jnp.arange(space) < filled
    flat = errors.reshape(space, -1)
    both = valid[:, None] & valid[None, :]
    # an unfilled slot gets the row (0 … 1 … 0 | 0) and right-hand side 0: coefficient 0
    b = jnp.where(both, flat @ flat.T, 0.0) + jnp.diag(jnp.where(valid, 0.0, 1.0))
    ones = jnp.where(valid, -1.0, 0.0)
    system = jnp.zeros((space + 1, space + 1), focks.dtype)
    system = system.at[:space, :space].set(b).at[:space, space].set(ones)
    system = system.at[space, :space].set(ones)
    rhs = jnp.zeros(space + 1, focks.dtype).at[space].set(-1.0)
    # least squares, not solve: near convergence the error vectors become linearly dependent
    coeff = jnp.linalg.lstsq(system, rhs)[0][:space]
    return jnp.einsum("m,mij->ij", coeff, focks)


def _scf(t: JaxTensors, dm0: jax.Array, conv_tol: jax.Array, conv_tol_grad: jax.Array,
         max_cycle: int, diis_space: int):
    TRACES["scf"] += 1
    n = dm0.shape[-1]
    energy0, fock0 = energy_and_fock(t, dm0)
    state = _State(
        iteration=jnp.asarray(0),
        dm=dm0,
        fock=fock0,
        energy=energy0,
        error=orbital_gradient(t, fock0, dm0),
        focks=jnp.zeros((diis_space, n, n), dm0.dtype),
        errors=jnp.zeros((diis_space, n, n), dm0.dtype),
        converged=jnp.asarray(False),
        energies=jnp.full(max_cycle + 1, jnp.nan, dm0.dtype).at[0].set(energy0),
    )

    def keep_going(s: _State) -> jax.Array:
        return ~s.converged & (s.iteration < max_cycle)

    def step(s: _State) -> _State:
        slot = s.iteration % diis_space
        focks = s.focks.at[slot].set(s.fock)
        errors = s.errors.at[slot].set(s.error)
        filled = jnp.minimum(s.iteration + 1, diis_space)
        # one pair: the Fock matrix itself, as scf.py (no least-squares rounding)
        h = jnp.where(filled == 1, s.fock, _diis(focks, errors, filled))
        dm = aufbau_density(h, t.l_inv, t.n_occ)
        energy, fock = energy_and_fock(t, dm)
        error = orbital_gradient(t, fock, dm)
        converged = (jnp.abs(energy - s.energy) < conv_tol) & \
            (jnp.abs(error).max() < conv_tol_grad)
        return _State(s.iteration + 1, dm, fock, energy, error, focks, errors, converged,
                      s.energies.at[s.iteration + 1].set(energy))

    final = lax.while_loop(keep_going, step, state)
    mo_energy = orthogonal_eigh(final.fock, t.l_inv)[0]
    return final, mo_energy


_scf_jit = jax.jit(_scf, static_argnames=("max_cycle", "diis_space"))


def run_scf(
    t: JaxTensors,
    dm0: jax.Array | None = None,
    conv_tol: float = 1e-10,
    conv_tol_grad: float = 1e-6,
    max_cycle: int = 100,
    diis_space: int = 8,
) -> SCFResult:
    """Converge the Kohn–Sham equations from ``dm0`` (default: PySCF's minao guess); the result
    is the torch engine's ``SCFResult`` (its arrays as CPU torch tensors; ``seconds`` includes
    the compilation on a first call).

    Converged when the energy changes by less than ``conv_tol`` (Ha) and the orbital gradient's
    max-abs is below ``conv_tol_grad``, as ``qptbench.dft.scf.run_scf``.
    """
    if max_cycle < 1:
        raise InputError(f"max_cycle must be >= 1, got {max_cycle}")
    if diis_space < 1:
        raise InputError(f"DIIS space must be >= 1, got {diis_space}")
    tic = time.perf_counter()
    dm = t.dm_minao if dm0 is None else jnp.asarray(dm0, dtype=jnp.float64)
    final, mo_energy = _scf_jit(t, dm, jnp.asarray(conv_tol, jnp.float64),
                                jnp.asarray(conv_tol_grad, jnp.float64),
                                max_cycle=int(max_cycle), diis_space=int(diis_space))
    iterations = int(final.iteration)
    energies = np.asarray(final.energies)[: iterations + 1]
    return SCFResult(
        energy=float(final.energy),
        converged=bool(final.converged),
        iterations=iterations,
        density=torch.from_numpy(np.array(final.dm)),
        fock=torch.from_numpy(np.array(final.fock)),
        mo_energy=torch.from_numpy(np.array(mo_energy)),
        energies=[float(e) for e in energies],
        seconds=time.perf_counter() - tic,
    )
