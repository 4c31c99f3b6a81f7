"""What QPT reads for one molecule: AO tokens, token positions, attention biases and H_init.

Everything here is computed once per geometry (in DataLoader workers during training), in the
molecule's principal-axes frame (``frames.py``), so a rotated or translated input gives identical
inputs.  Bias matrices follow the paper's quantum-biased attention: the token-position dot products
and six DFT matrices of the minao density, each divided by its own max |value|.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from qptbench.dft.energy import coulomb_exchange_of, fock, xc_energy_potential
from qptbench.dft.frames import principal_frame
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import DFTTensors, basis_layout, build_tensors, element_ao_counts

BIAS_NAMES = ("positions", "h_core", "h_core_orth", "dm_minao", "jk_minao", "vxc_minao",
              "h_minao")
DEFAULT_ELEMENTS = ("H", "C", "N", "O", "F")


@dataclass(frozen=True)
class Vocabulary:
    """Token id = offset of the atom's element + the AO's index within the atom."""

    basis: str
    elements: tuple[str, ...]
    offsets: tuple[int, ...]
    size: int

    @classmethod
    def from_basis(cls, basis: str = "def2-svp",
                   elements: Sequence[str] = DEFAULT_ELEMENTS) -> Vocabulary:
        counts = element_ao_counts(elements, basis)
        offsets = np.concatenate([[0], np.cumsum([counts[e] for e in elements])])
        return cls(basis.lower(), tuple(elements), tuple(int(o) for o in offsets[:-1]),
                   int(offsets[-1]))

    def tokens(self, symbols: Sequence[str], ao_atom: np.ndarray) -> np.ndarray:
        missing = sorted(set(symbols) - set(self.elements))
        if missing:
            from qptbench.errors import InputError

            raise InputError(f"element(s) {', '.join(missing)} not in the model's vocabulary "
                             f"({', '.join(self.elements)})")
        offset = dict(zip(self.elements, self.offsets, strict=True))
        first_ao = np.searchsorted(ao_atom, ao_atom)  # AO index where each AO's atom starts
        local = np.arange(ao_atom.size) - first_ao
        return np.array([offset[symbols[a]] for a in ao_atom]) + local


@dataclass(frozen=True)
class QPTSample:
    """One geometry ready for QPT: DFT tensors (float64) and network inputs, canonical frame."""

    molecule: Molecule            # canonical frame
    rotation: np.ndarray          # (3, 3): input-frame positions = centre + R · canonical
    shell_ls: tuple[int, ...]
    tensors: DFTTensors | None    # None where only the network reads it ('labels' signal)
    tokens: torch.Tensor          # (N,) int64
    positions: torch.Tensor       # (N, 3) Å, the AO's atom, float32
    biases: torch.Tensor          # (len(BIAS_NAMES), N, N) float32, each in [-1, 1]
    h_init: torch.Tensor          # F(D_minao) (N, N) float64

    def to(self, device: torch.device | str) -> QPTSample:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        tensors = None if self.tensors is None else self.tensors.to(device)
        return replace(self, tensors=tensors, **moved)


def _normalised(m: torch.Tensor) -> torch.Tensor:
    scale = m.abs().max()
    return m / scale if scale > 0 else m


def dft_biases(t: DFTTensors, token_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(biases (7, N, N) float32, H_init (N, N) float64) from the minao density."""
    with torch.no_grad():
        d0 = t.dm_minao
        j, k = coulomb_exchange_of(t, d0, with_k=t.xc.hyb != 0)
        jk = j if k is None else j - 0.5 * t.xc.hyb * k
        _, v_xc = xc_energy_potential(t, d0)
        h_init = fock(t, d0)
        r = token_positions.to(torch.float64)
        mats = [r @ r.T, t.h_core, t.l_inv @ t.h_core @ t.l_inv.T, d0, jk, v_xc, h_init]
        biases = torch.stack([_normalised(m) for m in mats]).to(torch.float32)
    return biases, h_init


def prepare_sample(molecule: Molecule, vocab: Vocabulary, level: LevelOfTheory | None = None,
                   device: torch.device | str = "cpu") -> QPTSample:
    """Canonical frame -> PySCF tensors -> tokens, positions, biases, H_init."""
    level = level or LevelOfTheory(basis=vocab.basis)
    if level.basis.lower() != vocab.basis:
        raise ValueError(f"level basis {level.basis!r} differs from the vocabulary's "
                         f"{vocab.basis!r}")
    canonical, rotation, _ = principal_frame(molecule)
    layout = basis_layout(canonical, level.basis)
    t = build_tensors(canonical, level, device)
    tokens = torch.as_tensor(vocab.tokens(canonical.symbols, layout.ao_atom), device=device)
    pos = torch.as_tensor(canonical.positions[layout.ao_atom], dtype=torch.float32, device=device)
    biases, h_init = dft_biases(t, pos)
    return QPTSample(canonical, rotation, layout.shell_ls, t, tokens, pos, biases, h_init)
