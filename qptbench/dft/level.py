"""The level of theory: every number qptbench reports is tied to one of these."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qptbench.errors import InputError


@dataclass(frozen=True)
class LevelOfTheory:
    """Basis, functional (PySCF name), DFT grid level and ERI screening.

    The default functional is ``b3lyp5`` (B3LYP with VWN5), the one the QPT paper actually used.
    PySCF's ``b3lyp`` uses VWN-RPA instead; the two differ by eV in total energy, so a run must
    never mix them, and every result records this object.
    """

    basis: str = "def2-svp"
    xc: str = "b3lyp5"
    grid_level: int = 3
    eri_threshold: float = 0.0  # |(ij|kl)| below this is dropped; 0 keeps the exact integrals

    def __post_init__(self) -> None:
        object.__setattr__(self, "basis", self.basis.lower())
        object.__setattr__(self, "xc", self.xc.lower())
        if not 0 <= self.grid_level <= 9:
            raise InputError(f"grid level must be 0..9 (PySCF's levels), got {self.grid_level}")
        if self.eri_threshold < 0:
            raise InputError(f"ERI threshold must be >= 0, got {self.eri_threshold}")

    def as_dict(self) -> dict:
        return asdict(self)
