"""The level of theory: every number qptbench reports is tied to one of these."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qptbench.errors import InputError

ERI_MODES = ("dense", "df")


@dataclass(frozen=True)
class LevelOfTheory:
    """Basis, functional (PySCF name), DFT grid level and the two-electron treatment.

    The default functional is ``b3lyp5`` (B3LYP with VWN5), the one the QPT paper actually used.
    PySCF's ``b3lyp`` uses VWN-RPA instead; the two differ by eV in total energy, so a run must
    never mix them, and every result records this object.

    ``eri="dense"`` keeps the exact (ij|kl) (N⁴ memory); ``eri="df"`` is density fitting with
    ``auxbasis`` (N_aux N² memory, 1e-5 to 1e-4 Ha from exact), a different level of theory:
    labels and our energies then both use it.  Levels saved before these two fields existed load
    as dense.
    """

    basis: str = "def2-svp"
    xc: str = "b3lyp5"
    grid_level: int = 3
    eri_threshold: float = 0.0  # |(ij|kl)| below this is dropped; 0 keeps the exact integrals
    eri: str = "dense"          # "dense" | "df"
    auxbasis: str = "def2-universal-jkfit"  # fitting basis for eri="df" (PySCF name)

    def __post_init__(self) -> None:
        object.__setattr__(self, "basis", self.basis.lower())
        object.__setattr__(self, "xc", self.xc.lower())
        object.__setattr__(self, "eri", str(self.eri).strip().lower())
        object.__setattr__(self, "auxbasis", str(self.auxbasis).strip().lower())
        if not 0 <= self.grid_level <= 9:
            raise InputError(f"grid level must be 0..9 (PySCF's levels), got {self.grid_level}")
        if self.eri_threshold < 0:
            raise InputError(f"ERI threshold must be >= 0, got {self.eri_threshold}")
        if self.eri not in ERI_MODES:
            raise InputError(f"eri must be one of {', '.join(ERI_MODES)}, got {self.eri!r}")
        if self.eri == "df" and self.eri_threshold > 0:
            # the threshold screens dense (ij|kl); density fitting never forms them
            raise InputError("an ERI threshold applies to dense ERIs only, not to eri='df'")
        if not self.auxbasis:
            raise InputError("auxbasis must name a fitting basis (PySCF name)")

    @property
    def is_df(self) -> bool:
        return self.eri == "df"

    def as_dict(self) -> dict:
        return asdict(self)
