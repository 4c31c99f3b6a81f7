"""The JAX engine's tensors: a DFTTensors converted once into a frozen pytree of jax arrays.

Importing this module (every ``jax_*`` module does, first) switches JAX to float64 for the
whole process: ``jax_enable_x64`` is a global flag, read when an array is created, and all DFT
in qptbench is float64.  Code that wants float32 JAX elsewhere in the same process cannot
have it; nothing in qptbench does.

The grid is cut into blocks of ``grid_block`` points here, once, so the engine scans over a
leading block axis with static shapes: weights (B, g), AO values (B, N, g), AO gradients
(B, 3, N, g), the last block padded with zero-weight points whose AO values are 0 (ρ = 0 there,
screened out like any empty point, and its weight 0 adds nothing to E or its derivatives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from qptbench.dft.tensors import DFTTensors
from qptbench.dft.xc import Functional, check_terms
from qptbench.errors import InputError

jax.config.update("jax_enable_x64", True)

GRID_BLOCK = 4096  # points per scanned block: as the torch engine's, cache-sized on CPU


@dataclass(frozen=True)
class JaxTensors:
    """Per-geometry integrals and grid as float64 jax arrays (N = n_ao, B blocks of g points).

    A pytree: the arrays are its leaves, ``n_occ`` and ``xc`` static metadata, so jitted
    functions compile once per molecule size and functional and never per geometry.
    """

    overlap: jax.Array           # S (N, N)
    h_core: jax.Array            # T + V_nuc (N, N)
    l_inv: jax.Array             # L⁻¹ with S = L Lᵀ (N, N)
    dm_minao: jax.Array          # minao guess density (N, N)
    eri: jax.Array | None        # (ij|kl), dense (N, N, N, N); None at a density-fitted level
    e_nuc: jax.Array             # nuclear repulsion, Ha, 0-d (a leaf: it changes per geometry)
    weights: jax.Array           # (B, g), 0 on padding
    ao: jax.Array                # (B, N, g)
    ao_grad: jax.Array | None    # (B, 3, N, g); None for LDA functionals
    n_occ: int
    xc: Functional
    df_b: jax.Array | None = None  # fitted factor B (N_aux, N, N) where eri is None

    @property
    def n_ao(self) -> int:
        return self.overlap.shape[-1]


jax.tree_util.register_dataclass(
    JaxTensors,
    data_fields=["overlap", "h_core", "l_inv", "dm_minao", "eri", "e_nuc", "weights", "ao",
                 "ao_grad", "df_b"],
    meta_fields=["n_occ", "xc"],
)


def _blocked(a: np.ndarray, n_blocks: int, block: int) -> np.ndarray:
    """(..., G) -> (n_blocks, ..., block), zero-padded at the end of the grid axis."""
    pad = n_blocks * block - a.shape[-1]
    a = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)])
    a = a.reshape(*a.shape[:-1], n_blocks, block)
    return np.ascontiguousarray(np.moveaxis(a, -2, 0))


def from_torch(t: DFTTensors, grid_block: int = GRID_BLOCK) -> JaxTensors:
    """The JAX engine's copy of ``t`` (on JAX's default device), converted once per geometry.

    AO gradients are dropped for LDA functionals (the engine then never forms ∇ρ).  Dense or
    density-fitted, as ``t`` is: its exact ERIs or its fitted factor B are copied, never both.
    AO values are read through ``t.ao`` / ``t.ao_grad`` (dense (N, G), (3, N, G)) only.
    """
    df_b = getattr(t, "df_b", None)
    if getattr(t, "eri", None) is None and df_b is None:
        raise InputError("the tensors hold neither dense ERIs nor a density-fitting factor; "
                         "build them with build_tensors")
    if grid_block < 1:
        raise InputError(f"grid block must be >= 1 point, got {grid_block}")
    if t.xc.is_gga and t.ao_grad is None:
        raise InputError(f"functional {t.xc.name!r} is a GGA but the tensors hold no AO "
                         "gradients; build them at a GGA level of theory")
    check_terms(t.xc, has_sigma=t.xc.is_gga)

    def host(x) -> np.ndarray:
        return x.detach().cpu().numpy().astype(np.float64, copy=False)

    # Always whole blocks of grid_block points (a small grid is padded up to one): geometries
    # of a molecule then mostly share a shape, hence a compile, although their grids differ.
    block = grid_block
    n_blocks = max(1, math.ceil(t.n_grid / block))
    ao_grad = None
    if t.xc.is_gga:
        ao_grad = jnp.asarray(_blocked(host(t.ao_grad), n_blocks, block))
    return JaxTensors(
        overlap=jnp.asarray(host(t.overlap)),
        h_core=jnp.asarray(host(t.h_core)),
        l_inv=jnp.asarray(host(t.l_inv)),
        dm_minao=jnp.asarray(host(t.dm_minao)),
        eri=None if df_b is not None else jnp.asarray(host(t.eri)),
        e_nuc=jnp.asarray(t.e_nuc, dtype=jnp.float64),
        weights=jnp.asarray(_blocked(host(t.weights), n_blocks, block)),
        ao=jnp.asarray(_blocked(host(t.ao), n_blocks, block)),
        ao_grad=ao_grad,
        n_occ=int(t.n_occ),
        xc=t.xc,
        df_b=None if df_b is None else jnp.asarray(host(df_b)),
    )
