"""Molecular geometries: validated container, xyz/ASE I/O and the built-in molecules.

Only numpy is imported eagerly: the CLI validates user input before any heavy backend loads.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qptbench.errors import InputError

MIN_DISTANCE = 0.3  # Å; anything closer is a typo or Bohr/Å mix-up, never chemistry
_ALIASES = {"malonaldehyde": "malondialdehyde",  # MD17's spelling
            "alanine-dipeptide": "alanine_dipeptide"}


@functools.lru_cache(maxsize=1)
def _symbols_table() -> tuple[str, ...]:
    from ase.data import chemical_symbols  # lazy: ase is only needed for the element table

    return tuple(chemical_symbols)


@functools.lru_cache(maxsize=1)
def _symbol_lookup() -> dict[str, int]:
    # Lower-cased keys so 'h', 'H' and 'HE' all work; index 0 ('X', dummy atom) is excluded.
    return {s.lower(): z for z, s in enumerate(_symbols_table()) if z > 0}


def _to_number(item: Any, atom: int) -> int:
    if isinstance(item, str):
        z = _symbol_lookup().get(item.strip().lower())
        if z is None:
            raise InputError(f"unknown element symbol {item.strip()!r} (atom {atom})")
        return z
    if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, float, np.number)):
        raise InputError(f"expected an element symbol or atomic number, got {item!r} "
                         f"(atom {atom})")
    if not (np.isfinite(item) and float(item).is_integer()):
        raise InputError(f"atomic number {item!r} is not an integer (atom {atom})")
    z, n_max = int(item), len(_symbols_table()) - 1
    if not 1 <= z <= n_max:
        raise InputError(f"atomic number {z} out of range 1-{n_max} (atom {atom})")
    return z


def _to_numbers(numbers_or_symbols: Any) -> np.ndarray:
    if isinstance(numbers_or_symbols, str):
        raise InputError("give one element symbol or atomic number per atom, not one string")
    items = np.asarray(numbers_or_symbols, dtype=object)
    if items.ndim != 1:
        raise InputError(f"numbers must be a flat list with one entry per atom, "
                         f"got shape {items.shape}")
    return np.array([_to_number(item, i) for i, item in enumerate(items, 1)], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Molecule:
    """A closed-shell molecule: atomic numbers, Cartesian positions in Å and total charge."""

    numbers: np.ndarray  # (n_atoms,) int64 atomic numbers
    positions: np.ndarray  # (n_atoms, 3) float64, Å
    charge: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        numbers = _to_numbers(self.numbers)
        if numbers.size == 0:
            raise InputError("molecule has no atoms")
        try:
            positions = np.array(self.positions, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("positions must be a numeric (n_atoms, 3) array") from None
        if positions.shape != (numbers.size, 3):
            raise InputError(f"positions must have shape (n_atoms, 3) = ({numbers.size}, 3), "
                             f"got {positions.shape}")
        symbols = [_symbols_table()[z] for z in numbers]
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"non-finite coordinate for atom {i + 1} ({symbols[i]}): "
                             f"{positions[i].tolist()}")
        if isinstance(self.charge, (bool, np.bool_)) or not isinstance(self.charge,
                                                                        (int, np.integer)):
            raise InputError(f"charge must be an integer, got {self.charge!r}")
        charge = int(self.charge)
        _check_distances(positions, symbols)
        n_el = int(numbers.sum()) - charge
        if n_el <= 0:
            raise InputError(f"molecule has {n_el} electrons (charge {charge:+d}); the electron "
                             "count must be positive, check --charge")
        if n_el % 2:
            raise InputError(f"molecule has an odd number of electrons ({n_el}, charge "
                             f"{charge:+d}); qptbench does closed-shell (restricted, RKS) "
                             "calculations only: change --charge to make the count even")
        numbers.flags.writeable = False
        positions.flags.writeable = False
        # frozen dataclass: object.__setattr__ is the sanctioned way to normalise fields
        object.__setattr__(self, "numbers", numbers)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "charge", charge)
        object.__setattr__(self, "name", str(self.name))

    @property
    def symbols(self) -> list[str]:
        table = _symbols_table()
        return [table[z] for z in self.numbers]

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.size)

    @property
    def n_electrons(self) -> int:
        return int(self.numbers.sum()) - self.charge

    @property
    def formula(self) -> str:
        """Hill formula, e.g. 'C2H6O'."""
        counts: dict[str, int] = {}
        for s in self.symbols:
            counts[s] = counts.get(s, 0) + 1
        first = ["C", "H"] if "C" in counts else []
        order = first + sorted(s for s in counts if s not in first)
        return "".join(s + (str(counts[s]) if counts[s] > 1 else "") for s in order)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Molecule({label}{self.formula}, charge={self.charge})"

    @classmethod
    def from_arrays(cls, numbers_or_symbols: Sequence[int | str] | np.ndarray,
                    positions_angstrom: Any, charge: int = 0, name: str = "") -> Molecule:
        return cls(numbers_or_symbols, positions_angstrom, charge, name)  # type: ignore[arg-type]

    @classmethod
    def from_xyz(cls, path: str | Path, charge: int = 0, frame: int = 0) -> Molecule:
        """Read one frame (0-based; negative counts from the end) of a plain or extended xyz."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise InputError(f"xyz file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read xyz file {path}: {exc}") from None
        return cls.from_xyz_string(text, charge=charge, frame=frame, source=str(path),
                                   name=path.stem)

    @classmethod
    def from_xyz_string(cls, text: str, charge: int = 0, frame: int = 0,
                        source: str = "<string>", name: str = "") -> Molecule:
        lines = text.splitlines()
        starts = _frame_starts(lines, source)
        if not -len(starts) <= frame < len(starts):
            raise InputError(f"{source}: frame {frame} requested but the file has "
                             f"{len(starts)} frame(s)")
        start = starts[frame]
        symbols, positions = _parse_frame(lines, start, source)
        return cls(symbols, positions, charge, name)  # type: ignore[arg-type]

    @classmethod
    def from_ase(cls, atoms: Any, charge: int = 0) -> Molecule:
        if np.any(atoms.pbc):
            raise InputError("periodic systems are not supported: give a molecule (pbc=False)")
        return cls(atoms.numbers, atoms.positions, charge, atoms.get_chemical_formula())

    def to_ase(self) -> Any:
        from ase import Atoms  # lazy: keeps import of this module cheap

        return Atoms(numbers=self.numbers, positions=self.positions)

    @classmethod
    def builtin(cls, name: str) -> Molecule:
        key = name.strip().lower()
        key = _ALIASES.get(key, key)
        if key not in _builtin_table():
            raise InputError(f"unknown built-in molecule {name!r}; choose one of: "
                             f"{', '.join(_builtin_table())}")
        text = (importlib.resources.files("qptbench") / "geometries" / f"{key}.xyz").read_text()
        return cls.from_xyz_string(text, source=f"built-in {key}.xyz", name=key)

    def displaced(self, seed: int, scale: float = 0.05) -> Molecule:
        """Copy with every coordinate moved by N(0, scale²) Å, reproducible for a given seed."""
        if not (np.isfinite(scale) and scale >= 0):
            raise InputError(f"displacement scale must be finite and >= 0, got {scale!r}")
        rng = np.random.default_rng(seed)
        new = self.positions + rng.normal(scale=scale, size=self.positions.shape)
        return Molecule(self.numbers, new, self.charge, self.name)

    def to_xyz(self) -> str:
        """Plain xyz text in Å; 10 decimals so a round trip is exact to 1e-10 Å."""
        comment = f"{self.name or self.formula} charge={self.charge}"
        rows = [f"{s:<2s} {x:17.10f} {y:17.10f} {z:17.10f}"
                for s, (x, y, z) in zip(self.symbols, self.positions, strict=True)]
        return "\n".join([str(self.n_atoms), comment, *rows]) + "\n"


def _check_distances(positions: np.ndarray, symbols: list[str]) -> None:
    # Row-by-row rather than a full n×n matrix so large inputs do not blow up memory.
    best = (np.inf, -1, -1)
    for i in range(len(positions) - 1):
        d = np.linalg.norm(positions[i + 1:] - positions[i], axis=1)
        j = int(np.argmin(d))
        if d[j] < best[0]:
            best = (float(d[j]), i, i + 1 + j)
    dist, i, j = best
    if dist < MIN_DISTANCE:
        raise InputError(f"atoms {i + 1} ({symbols[i]}) and {j + 1} ({symbols[j]}) are "
                         f"{dist:.3f} Å apart, closer than {MIN_DISTANCE} Å "
                         "(coordinates must be in Å)")


def _frame_starts(lines: list[str], source: str) -> list[int]:
    """Line index of each frame's atom-count line."""
    starts, k = [], 0
    while k < len(lines):
        if not lines[k].strip():
            if all(not rest.strip() for rest in lines[k:]):
                break  # trailing blank lines are harmless
            raise InputError(f"{source}:{k + 1}: blank line where the atom count was expected")
        try:
            n = int(lines[k].split()[0])
            if n <= 0 or len(lines[k].split()) != 1:
                raise ValueError
        except ValueError:
            hint = ""
            if starts and len(lines[k].split()) >= 4:
                # Looks like a coordinate line: the previous count was too small.
                hint = (f" (does the atom count on line {starts[-1] + 1} match the number "
                        "of coordinate lines?)")
            raise InputError(f"{source}:{k + 1}: expected the number of atoms, "
                             f"got {lines[k].strip()!r}{hint}") from None
        if k + 2 + n > len(lines):
            raise InputError(f"{source}:{k + 1}: says {n} atoms but only "
                             f"{max(len(lines) - k - 2, 0)} coordinate line(s) follow")
        starts.append(k)
        k += 2 + n
    if not starts:
        raise InputError(f"{source}: empty xyz file")
    return starts


def _parse_frame(lines: list[str], start: int, source: str) -> tuple[list[Any], np.ndarray]:
    n = int(lines[start].split()[0])
    sym_col, pos_col = _extxyz_columns(lines[start + 1], source, start + 2)
    symbols: list[Any] = []
    positions = np.empty((n, 3))
    for k in range(start + 2, start + 2 + n):
        fields = lines[k].split()
        try:
            token = fields[sym_col]
            positions[k - start - 2] = [float(v) for v in fields[pos_col:pos_col + 3]]
        except (IndexError, ValueError):
            raise InputError(f"{source}:{k + 1}: bad coordinate line {lines[k].strip()!r} "
                             "(expected: symbol x y z)") from None
        # Some programs write atomic numbers instead of symbols.
        symbols.append(int(token) if token.isdigit() else token)
    return symbols, positions


def _extxyz_columns(comment: str, source: str, line_no: int) -> tuple[int, int]:
    """Columns of species and positions: (0, 1) unless an extended-xyz Properties= says else."""
    if "properties=" not in comment.lower():
        return 0, 1
    spec = comment[comment.lower().index("properties=") + len("properties="):].split()[0]
    parts = spec.strip("\"'").split(":")
    col, cols = 0, {}
    try:
        if len(parts) % 3:
            raise ValueError
        for name, _kind, width in zip(parts[0::3], parts[1::3], parts[2::3], strict=True):
            cols[name.lower()] = col
            col += int(width)
    except ValueError:
        raise InputError(f"{source}:{line_no}: cannot parse Properties={spec}") from None
    if "species" not in cols or "pos" not in cols:
        raise InputError(f"{source}:{line_no}: extended xyz Properties lacks species or pos")
    return cols["species"], cols["pos"]


@functools.lru_cache(maxsize=1)
def _builtin_table() -> tuple[str, ...]:
    data = importlib.resources.files("qptbench") / "geometries"
    sizes = {p.name[:-len(".xyz")]: int(p.read_text().split(maxsplit=1)[0])
             for p in data.iterdir() if p.name.endswith(".xyz")}
    return tuple(sorted(sizes, key=lambda n: (sizes[n], n)))


def builtin_names() -> list[str]:
    """The built-in molecules: one per ``qptbench/geometries/*.xyz``, fewest atoms first."""
    return list(_builtin_table())


def load_molecule(name: str | None = None, xyz: str | None = None, charge: int = 0) -> Molecule:
    """CLI helper: a built-in molecule by name or an xyz file, exactly one of them."""
    if (name is None) == (xyz is None):
        raise InputError("give exactly one of a built-in molecule name "
                         f"({', '.join(_builtin_table())}) or an xyz file (--xyz)")
    if xyz is not None:
        return Molecule.from_xyz(xyz, charge=charge)
    mol = Molecule.builtin(name)  # type: ignore[arg-type]
    return mol if charge == 0 else Molecule(mol.numbers, mol.positions, charge, mol.name)
