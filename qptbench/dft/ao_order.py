"""The one AO-order table: PySCF <-> ORCA (MD17/SchNOrb files) <-> e3nn.

Internally every matrix is in PySCF order: atom-major, shells in basis order, p as (x, y, z), d and
higher as m = -l..l.  Two other conventions meet us at the edges:

- ``orca``: SchNOrb's MD17 Hamiltonians were computed with ORCA, whose shells list m as
  0, +1, -1, +2, -2, ... (p as z, x, y).  For l <= 2 ORCA's real solid harmonics have the same sign
  as PySCF's; sign flips start at |m| >= 3, which we refuse rather than guess.
- ``e3nn``: e3nn's real spherical harmonics take y as their polar axis, so a model feeds them
  coordinates permuted to (y, z, x) (``E3NN_AXES``); in those coordinates p is (y, z, x) and d
  already matches PySCF.  Rotating the molecule by R then acts on each shell as
  ``Irrep(l).D_from_matrix(R[E3NN_AXES][:, E3NN_AXES])`` (tests/test_ao_order.py checks it).

A layout is the angular momentum of every shell (one entry per contracted function, PySCF order);
``tensors.shell_layout`` derives it from the basis, never from a hard-coded table per molecule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qptbench.errors import InputError

ORDERS = ("pyscf", "orca", "e3nn")
E3NN_AXES = (1, 2, 0)  # Cartesian (x, y, z) -> the (y, z, x) that e3nn's harmonics expect

# Within one shell of angular momentum l: position k of the named order holds PySCF's index map[k].
_FROM_PYSCF: dict[str, dict[int, tuple[int, ...]]] = {
    "pyscf": {0: (0,), 1: (0, 1, 2), 2: (0, 1, 2, 3, 4)},
    "orca": {0: (0,), 1: (2, 0, 1), 2: (2, 3, 1, 4, 0)},
    "e3nn": {0: (0,), 1: (1, 2, 0), 2: (0, 1, 2, 3, 4)},
}


def _check_order(name: str) -> None:
    if name not in ORDERS:
        raise InputError(f"unknown AO order {name!r}; choose from {', '.join(ORDERS)}")


def _shell_map(order: str, l: int) -> tuple[int, ...]:  # noqa: E741 - l is the physics name
    table = _FROM_PYSCF[order]
    if l not in table:
        raise InputError(
            f"AO order {order!r} is only defined here for l <= {max(table)} (got an l={l} shell); "
            "ORCA's sign convention for f and higher is not implemented"
        )
    return table[l]


def from_pyscf_index(shell_ls: Sequence[int], order: str) -> np.ndarray:
    """Index array p with ``M_order = M_pyscf[p][:, p]`` (and ``v_order = v_pyscf[p]``)."""
    _check_order(order)
    index: list[int] = []
    start = 0
    for l in shell_ls:  # noqa: E741
        index.extend(start + k for k in _shell_map(order, int(l)))
        start += 2 * int(l) + 1
    return np.asarray(index, dtype=np.int64)


def permutation(shell_ls: Sequence[int], src: str, dst: str) -> np.ndarray:
    """Index array p with ``M_dst = M_src[p][:, p]`` for a basis with the given shell layout."""
    to_src = from_pyscf_index(shell_ls, src)
    to_dst = from_pyscf_index(shell_ls, dst)
    src_position = np.empty_like(to_src)
    src_position[to_src] = np.arange(to_src.size)  # where PySCF index i sits in src order
    return src_position[to_dst]


def reorder(matrix, shell_ls: Sequence[int], src: str, dst: str):
    """Reorder the last two axes (rows and columns) of a numpy array or torch tensor."""
    p = permutation(shell_ls, src, dst)
    n = p.size
    if matrix.shape[-1] != n or matrix.shape[-2] != n:
        raise InputError(
            f"matrix of shape {tuple(matrix.shape)} does not match the basis ({n} AOs)"
        )
    if not isinstance(matrix, np.ndarray):  # torch: index with a tensor on the same device
        import torch

        p = torch.as_tensor(p, device=matrix.device)
    return matrix[..., p, :][..., :, p]


def wigner_d_e3nn(shell_ls: Sequence[int], rotation) -> np.ndarray:
    """Block-diagonal real Wigner D (N, N) in e3nn order for Cartesian rotation R, float64.

    Rotating every atom r -> R r maps a matrix in e3nn order as M -> D M Dᵀ.
    """
    import torch
    from e3nn import o3

    r = torch.as_tensor(np.asarray(rotation, dtype=np.float64))
    axes = list(E3NN_AXES)
    r_e3nn = r[axes][:, axes]  # the same rotation acting on (y, z, x) coordinates
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its generators in the default dtype
    try:
        blocks = [o3.Irrep(int(ell), (-1) ** int(ell)).D_from_matrix(r_e3nn) for ell in shell_ls]
    finally:
        torch.set_default_dtype(previous)
    return torch.block_diag(*blocks).numpy()
