"""Everything the torch energy needs, computed once per geometry with PySCF.

This module (with ``labels.py`` and ``density_fitting.py``) is the one that imports PySCF: from
here on the data are plain float64 torch tensors, so the energy, the models and the training loop
never touch PySCF.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from qptbench.dft.density_fitting import df_factor
from qptbench.dft.geometry import Molecule
from qptbench.dft.grid_ao import AOBlock, ScreenedAO, densify, screen_ao, screen_dense
from qptbench.dft.gto import GTOBasis
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.xc import Functional, get_functional
from qptbench.errors import InputError
from qptbench.runtime import gb_setting

_KEEP = object()  # DFTTensors(ao=..., ao_grad=...) not given


@dataclass(frozen=True, init=False)
class DFTTensors:
    """Per-geometry integrals and grid, float64.  Sizes: N = n_ao, G = grid points."""

    n_occ: int                  # doubly occupied orbitals (closed shell)
    e_nuc: float                # nuclear repulsion, Ha
    overlap: torch.Tensor       # S (N, N)
    h_core: torch.Tensor        # T + V_nuc (N, N)
    l_inv: torch.Tensor         # L⁻¹ with S = L Lᵀ (N, N): H C = S C ε  <=>  (L⁻¹HL⁻ᵀ) U = U ε
    dm_minao: torch.Tensor      # PySCF's minao guess density (N, N)
    eri: torch.Tensor | None    # (ij|kl), dense (N, N, N, N); None when density-fitted
    weights: torch.Tensor       # grid weights (G,)
    # AO values on the grid, screened per block of points (``grid_ao``): flat storage, each
    # block's significant AOs only; ``ao`` / ``ao_grad`` give the dense arrays on demand
    ao_values: torch.Tensor     # each block's (comp, n_sig, g) values and gradients in turn
    ao_comp: int                # comp: 4 (values, ∂x, ∂y, ∂z) for GGA, 1 (values) for LDA
    ao_index: torch.Tensor      # int64: each block's significant AO indices in turn
    ao_blocks: tuple[AOBlock, ...]  # where each block's points and arrays are
    xc: Functional
    level: LevelOfTheory
    # density fitting (level.eri == "df"): B (N_aux, N, N) with (ij|kl) ≈ Σ_Q B_Qij B_Qkl
    df_b: torch.Tensor | None = None
    # AO values over the budget (``build_tensors(ao_budget_gb=...)``): not stored (ao_values
    # empty) but evaluated per block from the basis at the grid points, when read
    ao_basis: GTOBasis | None = None
    grid_coords: torch.Tensor | None = None   # (G, 3) Bohr, with ao_basis
    seconds: dict[str, float] = field(default_factory=dict, compare=False)  # preparation wall time

    def __init__(self, *, n_occ: int, e_nuc: float, overlap: torch.Tensor,
                 h_core: torch.Tensor, l_inv: torch.Tensor, dm_minao: torch.Tensor,
                 eri: torch.Tensor | None, weights: torch.Tensor, xc: Functional,
                 level: LevelOfTheory, ao_values: torch.Tensor | None = None,
                 ao_comp: int = 1, ao_index: torch.Tensor | None = None,
                 ao_blocks: tuple[AOBlock, ...] = (), df_b: torch.Tensor | None = None,
                 ao_basis: GTOBasis | None = None, grid_coords: torch.Tensor | None = None,
                 seconds: dict[str, float] | None = None, ao=_KEEP, ao_grad=_KEEP) -> None:
        """Keywords as the fields; or dense ``ao`` (N, G) / ``ao_grad`` (3, N, G), screened
        here (``dataclasses.replace(t, ao_grad=None)`` drops the gradients, as for an LDA)."""
        if ao is not _KEEP or (ao_grad is not _KEEP and ao_grad is not None):
            old = ScreenedAO(ao_values, ao_comp, ao_index, ao_blocks, ao_basis, grid_coords)
            ao_basis = grid_coords = None  # stored from here on
            dense, dense_grad = (None, None) if ao_values is None else densify(
                old, overlap.shape[-1], weights.shape[0])
            ao = dense if ao is _KEEP else ao
            ao_grad = dense_grad if ao_grad is _KEEP else ao_grad
            new = screen_dense(ao, ao_grad)
            ao_values, ao_comp, ao_index, ao_blocks = new.values, new.comp, new.index, new.blocks
        elif ao_grad is None and ao_values is not None:
            new = ScreenedAO(ao_values, ao_comp, ao_index, ao_blocks, ao_basis,
                             grid_coords).values_only()
            ao_values, ao_comp, ao_blocks = new.values, new.comp, new.blocks
        if ao_values is None or ao_index is None:
            raise ValueError("DFTTensors needs the screened AO values or dense ao")
        set_ = object.__setattr__  # frozen
        for name, value in (("n_occ", n_occ), ("e_nuc", e_nuc), ("overlap", overlap),
                            ("h_core", h_core), ("l_inv", l_inv), ("dm_minao", dm_minao),
                            ("eri", eri), ("weights", weights), ("ao_values", ao_values),
                            ("ao_comp", ao_comp), ("ao_index", ao_index),
                            ("ao_blocks", tuple(ao_blocks)), ("xc", xc), ("level", level),
                            ("df_b", df_b), ("ao_basis", ao_basis),
                            ("grid_coords", grid_coords),
                            ("seconds", {} if seconds is None else seconds)):
            set_(self, name, value)

    @property
    def n_ao(self) -> int:
        return self.overlap.shape[-1]

    @property
    def n_grid(self) -> int:
        return self.weights.shape[0]

    @property
    def device(self) -> torch.device:
        return self.overlap.device

    @property
    def screened_ao(self) -> ScreenedAO:
        """The AO values on the grid as the energy reads them: per block, significant AOs."""
        return ScreenedAO(self.ao_values, self.ao_comp, self.ao_index, self.ao_blocks,
                          self.ao_basis, self.grid_coords)

    @property
    def ao(self) -> torch.Tensor:
        """Dense AO values (N, G), zeros where screened out: built anew at every access, for
        tests, the JAX engine's conversion and benchmarks, not for the energy."""
        return densify(self.screened_ao, self.n_ao, self.n_grid)[0]

    @property
    def ao_grad(self) -> torch.Tensor | None:
        """Dense AO gradients (3, N, G) or None (LDA): built anew at every access, as ``ao``."""
        if self.ao_comp == 1:
            return None
        return densify(self.screened_ao, self.n_ao, self.n_grid)[1]

    def to(self, device: torch.device | str) -> DFTTensors:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor | GTOBasis)
        }
        return replace(self, **moved)


def check_basis(basis: str, symbols: Sequence[str], kind: str = "basis") -> None:
    """One-line InputError unless PySCF has ``basis`` for every element (``kind`` names it)."""
    from pyscf import gto

    for symbol in dict.fromkeys(symbols):
        with warnings.catch_warnings():  # PySCF suggests installing basis-set-exchange
            warnings.simplefilter("ignore")
            try:
                shells = gto.basis.load(basis, symbol)
            except Exception as exc:  # PySCF raises several types, with multi-line messages
                text = str(exc).lower()
                if "not found for" in text:
                    raise InputError(
                        f"{kind} {basis!r} has no functions for element {symbol}"
                    ) from None
                raise InputError(f"unknown {kind} set {basis!r} (PySCF cannot load it)") from None
        if not shells:
            raise InputError(f"{kind} {basis!r} has no functions for element {symbol}")


def build_mole(molecule: Molecule, basis: str = "def2-svp"):
    """A PySCF ``Mole`` (Å in, closed shell) with one-line errors for what PySCF would bury."""
    from pyscf import gto

    basis = basis.lower()
    check_basis(basis, molecule.symbols)
    mol = gto.Mole()
    mol.atom = [(s, tuple(r)) for s, r in zip(molecule.symbols, molecule.positions, strict=True)]
    mol.unit = "Angstrom"
    mol.basis = basis
    mol.charge = int(molecule.charge)
    mol.spin = 0
    mol.verbose = 0
    mol.build()
    return mol


def build_auxmol(mol, auxbasis: str):
    """The auxiliary-basis ``Mole`` PySCF's ``density_fit(auxbasis=...)`` builds for ``mol``."""
    from pyscf.df import addons

    check_basis(auxbasis, [mol.atom_pure_symbol(i) for i in range(mol.natm)], "auxiliary basis")
    return addons.make_auxmol(mol, auxbasis)


@dataclass(frozen=True)
class BasisLayout:
    """Shell structure of a basis on a molecule, PySCF AO order (one entry per contracted shell)."""

    shell_ls: tuple[int, ...]    # angular momentum of each shell
    shell_atom: tuple[int, ...]  # atom index of each shell

    @property
    def n_ao(self) -> int:
        return sum(2 * ell + 1 for ell in self.shell_ls)

    @property
    def ao_atom(self) -> np.ndarray:
        """Atom index of every AO, shape (N,)."""
        return np.repeat(self.shell_atom, [2 * ell + 1 for ell in self.shell_ls])


def basis_layout(molecule: Molecule, basis: str = "def2-svp") -> BasisLayout:
    """Spherical shells in PySCF order, each contraction counted once (derived from PySCF)."""
    mol = build_mole(molecule, basis)
    ls: list[int] = []
    atoms: list[int] = []
    for shell in range(mol.nbas):
        n_ctr = mol.bas_nctr(shell)
        ls += [int(mol.bas_angular(shell))] * n_ctr
        atoms += [int(mol.bas_atom(shell))] * n_ctr
    layout = BasisLayout(tuple(ls), tuple(atoms))
    assert layout.n_ao == mol.nao, "cartesian basis sets are not supported"
    return layout


def element_ao_counts(symbols: Sequence[str], basis: str = "def2-svp") -> dict[str, int]:
    """Spherical AOs per element in a basis, from PySCF (a lone atom, spin = Z mod 2)."""
    from pyscf import gto

    counts = {}
    for symbol in symbols:
        try:
            z = gto.charge(symbol)
            atom = gto.M(atom=f"{symbol} 0 0 0", basis=basis.lower(), spin=z % 2, verbose=0)
        except Exception:  # PySCF's messages are long; ours names the pair
            raise InputError(f"basis {basis!r} has no functions for element {symbol}") from None
        counts[symbol] = int(atom.nao)
    return counts


def build_grids(mol, level: int, with_non0tab: bool = True):
    """PySCF's default DFT grid (Treutler radii, NWChem pruning, Becke partition) at ``level``.

    An RKS object in PySCF 2.x builds exactly this (``small_rho_cutoff`` is 0), so handing the same
    object to PySCF makes our energies and PySCF's comparable point by point.  PySCF's own screen
    (``non0tab``) changes no point; ``build_tensors`` skips it (``grid_ao`` makes its own).
    """
    from pyscf.dft import gen_grid

    grids = gen_grid.Grids(mol)
    grids.level = level
    grids.build(with_non0tab=with_non0tab)
    return grids


def build_tensors(
    molecule: Molecule,
    level: LevelOfTheory | None = None,
    device: torch.device | str = "cpu",
    ao_budget_gb: float | None = None,
) -> DFTTensors:
    """Integrals, Cholesky orthogonaliser, minao guess and grid for one geometry.

    The two-electron part follows ``level.eri``: dense (ij|kl) in ``eri``, or for "df" only the
    fitted factor ``df_b`` (``eri`` is None), never both.  AO values on the grid are stored
    (screened) unless they would take more than ``ao_budget_gb`` (default: the environment's
    ``QPTBENCH_AO_BUDGET_GB``, else no budget): then they are evaluated per block when read,
    the same numbers to 1e-12 for more time per energy (``grid_ao``).
    """
    from pyscf import scf

    level = level or LevelOfTheory()
    func = get_functional(level.xc)
    seconds: dict[str, float] = {}
    tic = time.perf_counter()

    mol = build_mole(molecule, level.basis)
    overlap = mol.intor_symmetric("int1e_ovlp")
    h_core = mol.intor_symmetric("int1e_kin") + mol.intor_symmetric("int1e_nuc")
    chol = np.linalg.cholesky(overlap)
    l_inv = np.linalg.solve(chol, np.eye(mol.nao))
    dm_minao = scf.hf.init_guess_by_minao(mol)
    seconds["one_electron"] = time.perf_counter() - tic

    tic = time.perf_counter()
    eri = df_b = None
    if level.is_df:
        df_b = df_factor(mol, build_auxmol(mol, level.auxbasis))
    else:
        eri = _dense_eri(mol, level.eri_threshold)
    seconds["eri"] = time.perf_counter() - tic  # the two-electron part, dense or fitted

    tic = time.perf_counter()
    grids = build_grids(mol, level.grid_level, with_non0tab=False)
    keep = grids.weights != 0  # PySCF pads the grid with zero-weight points for alignment
    coords, weights = grids.coords[keep], grids.weights[keep]
    seconds["grid"] = time.perf_counter() - tic

    tic = time.perf_counter()
    budget = resolve_ao_budget(ao_budget_gb)
    screened = screen_ao(mol, np.ascontiguousarray(coords), with_grad=func.is_gga,
                         budget_bytes=None if budget is None else budget * 1e9)
    seconds["ao_values"] = time.perf_counter() - tic

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64).to(device)

    return DFTTensors(
        n_occ=molecule.n_electrons // 2,
        e_nuc=float(mol.energy_nuc()),
        overlap=t(overlap),
        h_core=t(h_core),
        l_inv=t(l_inv),
        dm_minao=t(dm_minao),
        eri=None if eri is None else t(eri),
        weights=t(weights),
        ao_values=screened.values.to(device),
        ao_comp=screened.comp,
        ao_index=screened.index.to(device),
        ao_blocks=screened.blocks,
        xc=func,
        level=level,
        df_b=None if df_b is None else t(df_b),
        ao_basis=None if screened.basis is None else screened.basis.to(device),
        grid_coords=None if screened.coords is None else screened.coords.to(device),
        seconds=seconds,
    )


AO_BUDGET_ENV = "QPTBENCH_AO_BUDGET_GB"


def resolve_ao_budget(ao_budget_gb: float | None) -> float | None:
    """GB the stored AO values may take (None: no budget): the argument, else
    ``QPTBENCH_AO_BUDGET_GB``; one-line InputError for a bad value."""
    return gb_setting(ao_budget_gb, "--ao-budget-gb", AO_BUDGET_ENV)[0]


def _dense_eri(mol, threshold: float) -> np.ndarray:
    """(ij|kl) as a dense (N, N, N, N) array.

    Dense storage makes J and K two matrix products with no index arithmetic; its cost is N⁴
    memory (2.4 GB at uracil's 132 AOs) and the unpacking time, which the asv suite tracks.
    The 8-fold packed integrals are the ones PySCF's SCF computes; unpacking them is cheaper than
    computing the 4-fold ones (one thread, best of 3: uracil s8 + unpack 4.8 s vs s4 + unpack
    8.3 s; malondialdehyde 0.83 s vs 1.05 s).
    """
    from pyscf import ao2mo

    n = mol.nao
    eri = ao2mo.restore(1, mol.intor("int2e", aosym="s8"), n).reshape(n, n, n, n)
    if threshold > 0:
        eri[np.abs(eri) < threshold] = 0.0
    return eri
