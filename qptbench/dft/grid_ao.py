"""AO values on the grid, screened per block of points, as PySCF's numint does with ``non0tab``.

An AO far from a block of grid points is negligible there (its value and gradient below
``SCREEN_CUTOFF``), so each block of ``SCREEN_BLOCK`` consecutive points stores only its
significant AOs: their indices and their values and gradients (comp, n_sig, g), comp = 4
(value, ∂x, ∂y, ∂z) for GGA functionals, 1 (the value) for LDA.  PySCF's grids
are sorted into spatial boxes (``arg_group_grids``), so consecutive points are close together
and few AOs matter on a block of a large molecule; memory and the grid work then grow with
Σ_blocks n_sig · g instead of N · G.

Which AOs are significant is PySCF's own shell screen (``make_mask``, one row per 56 points) at
``SCREEN_CUTOFF``: a shell is kept on a block when it is significant on any of the block's
56-point rows, and ``eval_ao`` skips it (zeros) on the rows where it is not, as PySCF's own
``get_veff`` does.  The choice is made once per geometry, when the tensors are built.

Over a memory budget (``screen_ao(budget_bytes=...)``, ``build_tensors(ao_budget_gb=...)``)
the values are not stored at all: the same screen is kept with the basis and the points, and
each block is evaluated when it is read (``gto.eval_block``, in torch), so what the grid holds is
one chunk of blocks at a time, N × block, not Σ n_sig · g; the energy then recomputes, in its
backward too, instead of keeping the chunk (``energy.xc_energy_potential``).

Storage is flat (``ScreenedAO``): each block's arrays one after another in ``values`` and
``index``, located by an ``AOBlock`` record, so a ``DFTTensors`` holds plain tensors that
``to(device)`` moves and ``tensor_bytes`` counts.  Value and gradients of a block lie together,
so ρ and ∇ρ are one product and one sum per block, as is the potential's ½ w v_ρ φ + 2 w v_σ
∇ρ·∇φ: few, large operations, which is what keeps many small blocks cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch

from qptbench.dft.gto import GTOBasis, eval_block, gto_basis

SCREEN_CUTOFF = 1e-11  # |AO| below this on a whole 56-point row: dropped there
SCREEN_ROW = 56        # PySCF's BLKSIZE: the rows of its screen index
SCREEN_BLOCK = 32 * SCREEN_ROW  # points per block (1792): see README, "AO screening"
EVAL_CHUNK = 1         # blocks per eval_ao call when building: see ``screen_ao``


class AOBlock(NamedTuple):
    """One block of consecutive grid points and where its significant AOs are stored."""

    start: int         # first grid point
    stop: int          # one past the last
    n_sig: int         # significant AOs
    offset: int        # of its (comp, n_sig, g) array in ``values``
    index_offset: int  # of its n_sig AO indices in ``index``


@dataclass(frozen=True)
class ScreenedAO:
    values: torch.Tensor          # flat float64: each block's (comp, n_sig, g) in turn
    comp: int                     # 4: values and gradients (GGA); 1: values only (LDA)
    index: torch.Tensor           # flat int64: each block's significant AO indices
    blocks: tuple[AOBlock, ...]   # blocks with no significant AO are left out
    # not stored (``values`` empty): each block evaluated from the basis when it is read
    basis: GTOBasis | None = None
    coords: torch.Tensor | None = None  # (G, 3) Bohr, with ``basis``

    @property
    def recomputed(self) -> bool:
        return self.basis is not None

    def values_only(self) -> ScreenedAO:
        """The same without the gradients (an LDA functional on GGA tensors): a copy."""
        if self.comp == 1:
            return self
        if self.recomputed:
            return replace(self, comp=1)
        parts = [data[:1].reshape(-1) for _, _, data in iter_blocks(self)]
        blocks = tuple(b._replace(offset=b.offset // self.comp) for b in self.blocks)
        values = torch.cat(parts) if parts else self.values[:0]
        return ScreenedAO(values, 1, self.index, blocks)


def _ao_mask(mol, coords: np.ndarray, block: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """(PySCF's shell mask per 56-point row, (n_blocks, N) bool: AO significant on block)."""
    from pyscf.dft.gen_grid import make_mask

    if block % SCREEN_ROW:
        raise ValueError(f"block must be a multiple of {SCREEN_ROW} points, got {block}")
    rows = make_mask(mol, coords, cutoff=cutoff)                # (ceil(G/56), nbas) uint8
    per = block // SCREEN_ROW
    n_blocks = -(-len(coords) // block)
    padded = np.zeros((n_blocks * per, rows.shape[1]), dtype=bool)
    padded[: len(rows)] = rows != 0
    shell_on = padded.reshape(n_blocks, per, -1).any(axis=1)    # (n_blocks, nbas)
    ao_loc = mol.ao_loc_nr()
    return rows, np.repeat(shell_on, np.diff(ao_loc), axis=1)   # shells -> their AOs


def _block_sizes(n_points: int, n_blocks: int, block: int) -> np.ndarray:
    sizes = np.full(n_blocks, block)
    sizes[-1] = n_points - block * (n_blocks - 1)
    return sizes


def significant_count(mol, coords: np.ndarray, block: int = SCREEN_BLOCK,
                      cutoff: float = SCREEN_CUTOFF) -> int:
    """Σ_blocks n_sig · g: the AO values ``screen_ao`` would store for these points (the
    memory estimate's count, from the screen alone: no AO is evaluated)."""
    _, mask = _ao_mask(mol, coords, block, cutoff)
    return int(mask.sum(axis=1) @ _block_sizes(len(coords), len(mask), block))


def screen_ao(mol, coords: np.ndarray, with_grad: bool, block: int = SCREEN_BLOCK,
              cutoff: float = SCREEN_CUTOFF, budget_bytes: float | None = None) -> ScreenedAO:
    """AO values (and gradients) at ``coords``, only the significant AOs of each block.

    AOs are evaluated ``EVAL_CHUNK`` blocks at a time into one reused buffer, so the dense
    temporary is (comp, N, EVAL_CHUNK · block), never the whole grid; each block's significant
    rows are copied straight into their place in the flat storage, allocated once (its size is
    known from the mask): no concatenation, which cost more than evaluating the AOs (uracil).
    One block per call keeps the buffer (7.6 MB at uracil) in cache while its rows are copied:
    with 8 blocks per call the copy read main memory and the whole step took 2.5x longer
    (median of 7, 2-core AMD EPYC: uracil 0.40 -> 0.16 s, alanine dipeptide 0.95 -> 0.48 s,
    PySCF's unscreened eval_ao 0.26 and 1.00 s).  ``np.take`` with ``mode="clip"``: with the
    default "raise" and ``out`` given, NumPy buffers the whole copy once more.
    """
    from pyscf.dft import numint

    rows, mask = _ao_mask(mol, coords, block, cutoff)
    comp = 4 if with_grad else 1
    n_sig = mask.sum(axis=1)
    kept = np.flatnonzero(n_sig)                       # blocks with no significant AO: left out
    sizes = comp * n_sig * _block_sizes(len(coords), len(mask), block)
    offsets = np.concatenate([[0], np.cumsum(sizes[kept])])
    index_offsets = np.concatenate([[0], np.cumsum(n_sig[kept])])
    stored = budget_bytes is None or offsets[-1] * 8 <= budget_bytes
    index = (np.concatenate([np.flatnonzero(mask[b]) for b in kept]) if len(kept)
             else np.zeros(0, dtype=np.int64))
    # the screen is the same either way; offsets into ``values`` only where they are stored
    blocks = tuple(AOBlock(int(b * block), int(min((b + 1) * block, len(coords))),
                           int(n_sig[b]), int(offsets[i]) if stored else 0,
                           int(index_offsets[i])) for i, b in enumerate(kept))
    if not stored:                                     # over the budget: evaluated when read
        return ScreenedAO(torch.zeros(0, dtype=torch.float64), comp, torch.from_numpy(index),
                          blocks, gto_basis(mol), torch.from_numpy(np.ascontiguousarray(coords)))
    values = np.empty(int(offsets[-1]))
    chunk = EVAL_CHUNK * block
    buffer = np.empty(comp * mol.nao * min(chunk, len(coords)))
    c0 = c1 = 0
    for blk in blocks:
        s, e = blk.start, blk.stop
        if s >= c1:                                    # evaluate the chunk holding this block
            c0 = s - s % chunk
            c1 = min(c0 + chunk, len(coords))
            r0 = c0 // SCREEN_ROW
            # PySCF fills (comp, N, g) memory and returns its (comp, g, N) transpose
            dense = numint.eval_ao(mol, coords[c0:c1], deriv=1 if with_grad else 0,
                                   non0tab=rows[r0: r0 + -(-(c1 - c0) // SCREEN_ROW)],
                                   out=buffer).swapaxes(-1, -2)
            dense = dense.reshape(comp, mol.nao, c1 - c0)
        idx = index[blk.index_offset: blk.index_offset + blk.n_sig]
        out = values[blk.offset: blk.offset + comp * blk.n_sig * (e - s)]
        np.take(dense[:, :, s - c0: e - c0], idx, axis=1, out=out.reshape(comp, idx.size, e - s),
                mode="clip")
    return ScreenedAO(torch.from_numpy(values), comp, torch.from_numpy(index), blocks)


def screen_dense(ao: torch.Tensor, ao_grad: torch.Tensor | None, block: int = SCREEN_BLOCK,
                 cutoff: float = SCREEN_CUTOFF) -> ScreenedAO:
    """The same storage from dense (N, G) values and (3, N, G) gradients, screened by their
    largest magnitude per block (``DFTTensors`` built or replaced with dense arrays)."""
    dense = ao[None] if ao_grad is None else torch.cat([ao[None], ao_grad])
    values, index, blocks = [], [], []
    offset = index_offset = 0
    for s in range(0, ao.shape[-1], block):
        e = min(s + block, ao.shape[-1])
        idx = torch.nonzero(dense[:, :, s:e].abs().amax(dim=(0, 2)) >= cutoff).flatten()
        if idx.numel() == 0:
            continue
        values.append(dense[:, idx, s:e].reshape(-1))
        index.append(idx)
        blocks.append(AOBlock(s, e, idx.numel(), offset, index_offset))
        offset += values[-1].numel()
        index_offset += idx.numel()
    return ScreenedAO(torch.cat(values) if values else ao.new_zeros(0), len(dense),
                      torch.cat(index) if index else torch.zeros(0, dtype=torch.int64),
                      tuple(blocks))


def iter_blocks(s: ScreenedAO, blocks: Sequence[AOBlock] | None = None
                ) -> Iterator[tuple[AOBlock, torch.Tensor, torch.Tensor]]:
    """(block, AO indices (n_sig,), values and gradients (comp, n_sig, g)) of ``blocks``
    (default: all): views into the flat storage, no copies; or, when the values are not
    stored, evaluated now (``gto.eval_block``)."""
    for b in s.blocks if blocks is None else blocks:
        g = b.stop - b.start
        idx = s.index[b.index_offset: b.index_offset + b.n_sig]
        if s.basis is not None:
            data = eval_block(s.basis, s.coords[b.start: b.stop], idx, s.comp > 1)
        else:
            data = s.values[b.offset: b.offset + s.comp * b.n_sig * g].view(s.comp, b.n_sig, g)
        yield b, idx, data


def densify(s: ScreenedAO, n_ao: int, n_grid: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dense (N, G) values and (3, N, G) gradients (None for LDA); zeros where screened out."""
    dense = s.values.new_zeros(s.comp, n_ao, n_grid)
    for b, idx, data in iter_blocks(s):
        dense[:, idx, b.start: b.stop] = data
    return dense[0], (dense[1:] if s.comp > 1 else None)
