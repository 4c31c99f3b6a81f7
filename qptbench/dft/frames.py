"""A canonical frame per molecule, and the AO-basis rotation that maps matrices between frames.

QPT is not equivariant: it sees coordinates and AO-basis matrices.  So every geometry is moved into
its own principal-axes frame *before* PySCF computes anything; a rotated or translated input then
gives exactly the same tensors, prediction and energy.  Predicted matrices are mapped back to the
caller's frame with ``ao_rotation`` (needed to compare H with labels computed in that frame).

Sign convention (deterministic, proper rotation): axes sorted by decreasing Z-weighted variance;
axes 1 and 2 point where the Z-weighted third moment is positive (ties: towards the first atom off
the plane); axis 3 = axis 1 × axis 2, so the frame never reflects the molecule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qptbench.dft.ao_order import reorder, wigner_d_e3nn
from qptbench.dft.geometry import Molecule

_TIE = 1e-6  # Å³ / Å: third moments or coordinates below this are treated as zero


def _axis_sign(x: np.ndarray, w: np.ndarray) -> float:
    skew = float(np.sum(w * x**3))
    if abs(skew) > _TIE:
        return 1.0 if skew > 0 else -1.0
    off = np.flatnonzero(np.abs(x) > _TIE)
    return 1.0 if off.size == 0 or x[off[0]] > 0 else -1.0


def principal_frame(molecule: Molecule) -> tuple[Molecule, np.ndarray, np.ndarray]:
    """(canonical molecule, rotation R, centre c) with canonical positions = (r − c) R.

    R (3, 3) is a proper rotation whose columns are the principal axes in the input frame.
    """
    pos = np.asarray(molecule.positions, dtype=np.float64)
    w = np.asarray(molecule.numbers, dtype=np.float64)
    centre = (w[:, None] * pos).sum(0) / w.sum()
    x = pos - centre
    cov = (w[:, None, None] * x[:, :, None] * x[:, None, :]).sum(0) / w.sum()
    _, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1].copy()  # decreasing variance
    for k in range(2):
        axes[:, k] *= _axis_sign(x @ axes[:, k], w)
    axes[:, 2] = np.cross(axes[:, 0], axes[:, 1])
    canonical = Molecule.from_arrays(molecule.numbers, x @ axes, molecule.charge)
    return canonical, axes, centre


def ao_rotation(shell_ls: Sequence[int], rotation: np.ndarray) -> np.ndarray:
    """U (N, N), PySCF AO order, with M(R x) = U M(x) Uᵀ when every atom moves as r -> R r.

    Built from e3nn's real Wigner D in float64 through the tested AO-order table.
    """
    return reorder(wigner_d_e3nn(shell_ls, rotation), shell_ls, "e3nn", "pyscf")
