"""Regions of the alanine-dipeptide (φ, ψ) map: the training box, the band around it, the rest.

The QPT paper (Fig. 4) trains on φ, ψ ∈ [0, 180] and maps the error over the whole torus
[0, 360)².  Angles live on a circle, so every interval here is an *arc*: a start and a width,
"300:60" running through 360 = 0.  A map point is

- ``train``: both angles inside the training arcs (closed: the edges belong to the region);
- ``band``: not ``train``, but both angles within ``band_deg`` of their arc (the box grown by
  the band on every side, wrapping: for 0:180 that is [180, 200] and [340, 360) on either angle);
- ``far``: everything else.

The map itself is the G × G grid of cell centres ((i + ½) 360/G): cell edges, not points, then
sit on the training box's edges 0 and 180 for every even G, so no map point is ambiguous.
Pure functions of the angles (degrees, any real number; wrapped here), no RDKit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qptbench.errors import InputError

REGIONS = ("train", "band", "far")
BAND_DEG = 20.0      # the paper looks at [180, 200]: 20° beyond the training box
_EPS = 1e-9          # degrees: an angle this close to an arc's edge counts as on it


@dataclass(frozen=True)
class Arc:
    """The angles start .. start + width (degrees, counter-clockwise), start in [0, 360)."""

    start: float
    width: float  # (0, 360]; 360 is the whole circle

    def offset(self, angle: float | np.ndarray) -> np.ndarray:
        """How far past ``start`` an angle lies, going round: in [0, 360)."""
        return np.mod(np.asarray(angle, dtype=np.float64) - self.start, 360.0)

    def contains(self, angle: float | np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Inside the arc grown by ``margin`` degrees at both ends (closed)."""
        if self.width + 2 * margin >= 360.0 - _EPS:
            return np.ones(np.shape(angle), dtype=bool)
        d = np.mod(self.offset(angle) + margin, 360.0)
        return (d <= self.width + 2 * margin + _EPS) | (d >= 360.0 - _EPS)

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) with low ≤ high ≤ low + 360, for a uniform draw (the dihedral sampler
        accepts any real angle and sets it modulo 360)."""
        return self.start, self.start + self.width

    def pieces(self) -> list[tuple[float, float]]:
        """The arc as intervals of [0, 360] (two when it wraps through 0), for drawing."""
        end = self.start + self.width
        if end <= 360.0 + _EPS:
            return [(self.start, min(end, 360.0))]
        return [(self.start, 360.0), (0.0, end - 360.0)]

    def __str__(self) -> str:
        end = self.start + self.width
        return f"{self.start:g}:{end if end <= 360.0 else end - 360.0:g}"


def parse_arc(text: str) -> Arc:
    """"LOW:HIGH" in degrees, going counter-clockwise from LOW to HIGH ("300:60" wraps;
    "0:360" is the whole circle)."""
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"an angle range is 'LOW:HIGH' in degrees (e.g. 0:180), got "
                         f"{text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"angle range {text!r} is not finite")
    width = (high - low) % 360.0
    if width == 0.0:
        if low == high:
            raise InputError(f"angle range {text!r} is empty")
        width = 360.0  # "0:360", "-180:180": the whole circle
    return Arc(low % 360.0, width)


@dataclass(frozen=True)
class Region:
    """The training box: an arc of φ and an arc of ψ."""

    phi: Arc
    psi: Arc

    def __str__(self) -> str:
        return str(self.phi) if self.phi == self.psi else f"{self.phi},{self.psi}"


def parse_region(text: str) -> Region:
    """"0:180" (the same range for φ and ψ) or "0:180,0:90" (φ, then ψ)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) not in (1, 2) or not all(parts):
        raise InputError(f"a training region is 'LOW:HIGH' or 'LOW:HIGH,LOW:HIGH' (φ then ψ, "
                         f"degrees), got {text!r}")
    arcs = [parse_arc(p) for p in parts]
    return Region(arcs[0], arcs[-1])


def classify(phi: float | np.ndarray, psi: float | np.ndarray, region: Region,
             band_deg: float = BAND_DEG) -> np.ndarray:
    """``train``, ``band`` or ``far`` for each (φ, ψ) (see the module docstring)."""
    if not band_deg >= 0:
        raise InputError(f"the band must be >= 0 degrees, got {band_deg}")
    inside = region.phi.contains(phi) & region.psi.contains(psi)
    near = region.phi.contains(phi, band_deg) & region.psi.contains(psi, band_deg)
    return np.where(inside, "train", np.where(near, "band", "far"))


def grid_angles(n: int) -> np.ndarray:
    """The centres of n equal cells of [0, 360), degrees: (i + ½) 360/n."""
    if n < 1:
        raise InputError(f"the map grid needs at least 1 cell per angle, got {n}")
    return (np.arange(n) + 0.5) * (360.0 / n)


def grid_points(n: int) -> list[tuple[float, float]]:
    """The n × n map points (φ, ψ), φ-major: φ₀ with every ψ, then φ₁, ..."""
    axis = grid_angles(n)
    return [(float(a), float(b)) for a in axis for b in axis]
