"""Readers for conformations and labels made elsewhere.

- SchNOrb's MD17 Hamiltonian files (ASE SQLite ``.db``): per row ``numbers``, ``positions`` (Å)
  and ``data`` with ``hamiltonian`` and ``overlap`` (ORCA AO order, PBE/def2-SVP, often float32)
  and ``energy``; the matrices come back in PySCF order (float64) through ``qptbench.dft.ao_order``.
  Old SchNetPack files store arrays base64-encoded with ``_shape_*``/``_dtype_*`` keys: both work.
- sGDML / rMD17 ``.npz`` geometry files: ``R`` (Å), ``z``, optional ``E``, ``F`` (kcal/mol, Å)
  or rMD17's ``coords``, ``nuclear_charges``, ``energies``, ``forces``.
- plain / extended xyz trajectories, through ASE.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.errors import InputError


@dataclass
class HamiltonianFrame:
    """One SchNOrb row, matrices in PySCF AO order."""

    molecule: Molecule
    hamiltonian: np.ndarray        # (N, N) Ha, float64 (float32-rounded if stored so)
    overlap: np.ndarray            # (N, N)
    energy: float                  # Ha; mean_energy from the metadata added back when present
    forces: np.ndarray | None      # as stored (units differ between sources: check before use)


@dataclass
class Trajectory:
    """Frames of one molecule, with the file's own energies/forces (kcal/mol, kcal/mol/Å)."""

    molecules: list[Molecule]
    energy_kcal_mol: np.ndarray | None
    forces_kcal_mol_angstrom: np.ndarray | None


def _exists(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    return path


def _row_array(data: Any, key: str) -> np.ndarray | None:
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, (str, bytes)):  # old SchNetPack AtomsData: base64 + shape + dtype
        shape, dtype = data.get(f"_shape_{key}"), data.get(f"_dtype_{key}")
        if shape is None or dtype is None:
            raise InputError(f"row data {key!r} is encoded but has no _shape_/_dtype_ entry")
        raw = base64.b64decode(value)
        return np.frombuffer(raw, dtype=np.dtype(str(dtype))).reshape(tuple(shape))
    return np.asarray(value)


def schnorb_metadata(path: str | Path) -> dict[str, Any]:
    import ase.db

    return dict(ase.db.connect(str(_exists(path)), type="db").metadata)


def read_schnorb(path: str | Path, basis: str = "def2-svp", limit: int | None = None,
                 charge: int = 0) -> Iterator[HamiltonianFrame]:
    """Frames of a SchNOrb Hamiltonian ``.db``, lazily, H and S converted ORCA -> PySCF order."""
    import ase.db

    from qptbench.dft.ao_order import reorder
    from qptbench.dft.tensors import basis_layout

    path = _exists(path)
    try:
        db = ase.db.connect(str(path), type="db")
        mean_energy = float(np.ravel(db.metadata.get("mean_energy", 0.0))[0])
        rows = db.select(limit=limit) if limit else db.select()
        layouts: dict[tuple[int, ...], Any] = {}
        for k, row in enumerate(rows):
            mol = Molecule(row.numbers, row.positions, charge, path.stem)
            key = tuple(int(z) for z in mol.numbers)
            if key not in layouts:
                layouts[key] = basis_layout(mol, basis)
            shell_ls = layouts[key].shell_ls
            matrices = []
            for name in ("hamiltonian", "overlap"):
                m = _row_array(row.data, name)
                if m is None:
                    raise InputError(f"{path}: row {k + 1} has no {name!r} in its data")
                matrices.append(reorder(np.asarray(m, dtype=np.float64), shell_ls, "orca",
                                        "pyscf"))
            energy = _row_array(row.data, "energy")
            if energy is None:
                energy = np.array([np.nan])
            forces = _row_array(row.data, "forces")
            yield HamiltonianFrame(mol, matrices[0], matrices[1],
                                   float(np.ravel(energy)[0]) + mean_energy, forces)
    except InputError:
        raise
    except Exception as exc:  # sqlite3/ASE errors: one line naming the file
        raise InputError(f"cannot read {path} as a SchNOrb ASE database: {exc}") from None


def read_sgdml(path: str | Path, charge: int = 0) -> Trajectory:
    """An sGDML (``R``, ``z``, ``E``, ``F``) or rMD17 (``coords``, ``nuclear_charges``, ...)
    ``.npz``; positions in Å."""
    path = _exists(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as .npz: {exc}") from None
    with data:
        keys = set(data.files)
        if {"R", "z"} <= keys:
            r, z, e, f = "R", "z", "E", "F"
        elif {"coords", "nuclear_charges"} <= keys:
            r, z, e, f = "coords", "nuclear_charges", "energies", "forces"
        else:
            raise InputError(f"{path}: expected sGDML keys R, z or rMD17 keys coords, "
                             f"nuclear_charges; found {', '.join(sorted(keys))}")
        positions = np.asarray(data[r], dtype=np.float64)
        numbers = np.asarray(data[z])
        if positions.ndim != 3 or positions.shape[1:] != (numbers.size, 3):
            raise InputError(f"{path}: {r} has shape {positions.shape}, expected "
                             f"(n_frames, {numbers.size}, 3)")
        name = str(data["name"]) if "name" in keys else path.stem
        energy = np.ravel(data[e]).astype(np.float64) if e in keys else None
        forces = np.asarray(data[f], dtype=np.float64) if f in keys else None
    molecules = [Molecule(numbers, p, charge, name) for p in positions]
    return Trajectory(molecules, energy, forces)


def read_xyz_trajectory(path: str | Path, charge: int = 0) -> list[Molecule]:
    """Every frame of a plain or extended xyz file (Å)."""
    import ase.io

    path = _exists(path)
    try:
        frames = ase.io.read(str(path), index=":", format="extxyz")
    except Exception as exc:  # ASE's parsers raise many types
        raise InputError(f"cannot read {path} as an xyz trajectory: {exc}") from None
    return [Molecule(a.numbers, a.positions, charge, path.stem) for a in frames]


def read_conformations(path: str | Path, charge: int = 0) -> list[Molecule]:
    """Conformations from any supported file, by suffix: .db, .npz, .xyz/.extxyz."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".db":
        return [frame.molecule for frame in read_schnorb(path, charge=charge)]
    if suffix == ".npz":
        return read_sgdml(path, charge).molecules
    if suffix in (".xyz", ".extxyz"):
        return read_xyz_trajectory(path, charge)
    raise InputError(f"{path}: unknown conformation file type {suffix!r}; use .xyz, .extxyz, "
                     ".npz (sGDML/rMD17) or .db (SchNOrb)")
