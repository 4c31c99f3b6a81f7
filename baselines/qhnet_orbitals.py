"""The orbital side of QHNet: one padded per-atom block, element masks, and assembly to PySCF order.

QHNet predicts every Hamiltonian block in one element-agnostic "full orbital" layout: for each
angular momentum l the largest number of l-shells any element of the basis has (def2-SVP on H, C,
N, O: 3 s + 2 p + 1 d = 14 functions, irreps ``3x0e+2x1e+1x2e``).  Slots are ordered by l, then by
shell, then by m in e3nn order (p as y, z, x).  An element uses the slots of its own shells (H in
def2-SVP: s1, s2, p1).  Everything here is derived from the basis (``tensors.basis_layout``), never
from a per-molecule table, and the final e3nn -> PySCF reordering goes through ``ao_order``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qptbench.dft import ao_order
from qptbench.errors import InputError

ElementShells = Mapping[int, tuple[int, ...]]  # Z -> angular momentum of each shell, PySCF order


def element_shells(molecules: Sequence, basis: str = "def2-svp") -> dict[int, tuple[int, ...]]:
    """Shell layout of every element that occurs in ``molecules`` (read from PySCF's basis)."""
    from qptbench.dft.tensors import basis_layout  # PySCF lives behind tensors; only needed here

    shells: dict[int, tuple[int, ...]] = {}
    for molecule in molecules:
        layout = basis_layout(molecule, basis)
        atom_of_shell = np.asarray(layout.shell_atom)
        for atom, z in enumerate(molecule.numbers):
            ls = tuple(int(layout.shell_ls[s]) for s in np.flatnonzero(atom_of_shell == atom))
            if shells.setdefault(int(z), ls) != ls:
                raise InputError(f"element Z={z} has two different shell layouts in {basis}")
    return shells


@dataclass(frozen=True)
class OrbitalLayout:
    """The padded per-atom block shared by all elements."""

    multiplicity: tuple[int, ...]  # number of l-shells in the padded block, l = 0..max_l
    element_shells: tuple[tuple[int, tuple[int, ...]], ...]  # sorted (Z, shell ls)

    @classmethod
    def from_shells(cls, shells: ElementShells) -> OrbitalLayout:
        if not shells:
            raise InputError("no elements given to build the orbital layout from")
        max_l = max(max(ls) for ls in shells.values())
        mult = [0] * (max_l + 1)
        for ls in shells.values():
            for ell in range(max_l + 1):
                mult[ell] = max(mult[ell], ls.count(ell))
        return cls(tuple(mult), tuple(sorted((int(z), tuple(ls)) for z, ls in shells.items())))

    @property
    def max_l(self) -> int:
        return len(self.multiplicity) - 1

    @property
    def irreps(self) -> str:
        """The padded block as e3nn irreps (all even: QHNet is SE(3)-, not E(3)-equivariant)."""
        return "+".join(f"{m}x{ell}e" for ell, m in enumerate(self.multiplicity) if m)

    @property
    def size(self) -> int:
        return sum(m * (2 * ell + 1) for ell, m in enumerate(self.multiplicity))

    def offset(self, ell: int) -> int:
        return sum(m * (2 * k + 1) for k, m in enumerate(self.multiplicity[:ell]))

    def shells_of(self, z: int) -> tuple[int, ...]:
        for zz, ls in self.element_shells:
            if zz == z:
                return ls
        known = ", ".join(str(zz) for zz, _ in self.element_shells)
        raise InputError(f"element Z={z} is not in this model's basis layout (knows Z = {known})")

    def slots(self, z: int) -> np.ndarray:
        """Padded-block slots of element z: its shells in PySCF order, m in e3nn order."""
        seen = [0] * (self.max_l + 1)
        out: list[int] = []
        for ell in self.shells_of(z):
            start = self.offset(ell) + seen[ell] * (2 * ell + 1)
            out.extend(range(start, start + 2 * ell + 1))
            seen[ell] += 1
        return np.asarray(out, dtype=np.int64)

    def molecule_shell_ls(self, numbers: Sequence[int]) -> list[int]:
        """Shell ls of a whole molecule in PySCF order (atom-major, each element's own order)."""
        return [ell for z in numbers for ell in self.shells_of(int(z))]

    def gather_index(self, numbers: Sequence[int]) -> torch.Tensor:
        """Index into the flattened (atom, slot) rows giving the molecule's AOs in PySCF order."""
        size = self.size
        e3nn_rows = np.concatenate(
            [atom * size + self.slots(int(z)) for atom, z in enumerate(numbers)]
        )
        to_pyscf = ao_order.permutation(self.molecule_shell_ls(numbers), "e3nn", "pyscf")
        return torch.as_tensor(e3nn_rows[to_pyscf])


def assemble(
    diagonal: torch.Tensor, pair: torch.Tensor, row: torch.Tensor, col: torch.Tensor,
    n_molecules: int, n_atoms: int, index: torch.Tensor,
) -> torch.Tensor:
    """Blocks -> symmetric (B, N, N) Hamiltonians in PySCF order.

    ``diagonal`` (B*A, F, F) are the same-atom blocks, ``pair`` (E, F, F) the blocks of the ordered
    pairs (row, col) given as flat node indices.  The network predicts M; H = M + Mᵀ is exactly
    symmetric, so each unordered pair of atoms gets the sum of its two directed predictions.
    """
    f = diagonal.shape[-1]
    a2 = n_atoms * n_atoms
    nodes = torch.arange(n_molecules * n_atoms, device=diagonal.device)
    mol_node = nodes // n_atoms
    diag_at = mol_node * a2 + (nodes % n_atoms) * (n_atoms + 1)
    pair_at = (row // n_atoms) * a2 + (row % n_atoms) * n_atoms + col % n_atoms
    blocks = diagonal.new_zeros(n_molecules * a2, f, f)
    blocks = blocks.index_copy(0, diag_at, diagonal).index_copy(0, pair_at, pair)
    m = blocks.view(n_molecules, n_atoms, n_atoms, f, f).transpose(2, 3)
    m = m.reshape(n_molecules, n_atoms * f, n_atoms * f)
    index = index.to(m.device)
    m = m[:, index][:, :, index]
    return m + m.transpose(-1, -2)
