"""MD17-like conformations: Langevin molecular dynamics at 500 K with GFN2-xTB (tblite via ASE).

MD17 ran ab initio MD at 500 K and kept its frames; here the force field is GFN2-xTB, which is
cheap enough to generate frames on the fly.  After ``equilibration_steps`` every
``interval``-th step is kept, so kept frames are decorrelated (tests check it on water).  The
run is deterministic for a seed: the initial Maxwell–Boltzmann momenta and the Langevin noise
come from ``numpy.random.RandomState(seed)``, the gaps between kept frames (uniform in
[interval/2, 3 interval/2] steps) from a generator seeded with it too.  tblite runs with
``threads`` OpenMP threads (default 1: bit-identical reruns, and a 3-atom molecule only loses
to thread start-up and spinning; the caller's thread count is restored after every step batch).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.errors import InputError

DEFAULTS = dict(temperature_K=500.0, timestep_fs=0.5, interval=50, equilibration_steps=1000,
                friction=0.01)


def _openmp_runtimes() -> list:
    """The OpenMP runtimes loaded in this process (tblite shares whichever is loaded first)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/lib" in line}
    except OSError:  # not Linux: leave threads to OMP_NUM_THREADS
        return []
    libs = []
    for path in sorted(paths):
        name = path.rsplit("/", 1)[-1]
        if name.startswith(("libgomp", "libiomp", "libomp")):
            with contextlib.suppress(OSError):
                libs.append(ctypes.CDLL(path))
    return libs


@contextlib.contextmanager
def _omp_threads(n: int | None) -> Iterator[None]:
    libs = _openmp_runtimes() if n else []
    before = [lib.omp_get_max_threads() for lib in libs]
    for lib in libs:
        lib.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        for lib, old in zip(libs, before, strict=True):
            lib.omp_set_num_threads(old)


def _check(temperature_K: float, timestep_fs: float, interval: int, equilibration_steps: int,
           friction: float) -> None:
    if not temperature_K > 0:
        raise InputError(f"temperature must be > 0 K, got {temperature_K}")
    if not 0 < timestep_fs <= 2.0:
        raise InputError(f"timestep must be in (0, 2] fs for bonds to H, got {timestep_fs}")
    if interval < 1 or equilibration_steps < 0:
        raise InputError(f"interval must be >= 1 and equilibration >= 0 steps, got "
                         f"{interval} and {equilibration_steps}")
    if not friction > 0:
        raise InputError(f"Langevin friction must be > 0 per fs, got {friction}")


def md_conformations(molecule: Molecule, seed: int = 0, temperature_K: float = 500.0,
                     timestep_fs: float = 0.5, interval: int = 50,
                     equilibration_steps: int = 1000, friction: float = 0.01,
                     method: str = "GFN2-xTB", threads: int | None = 1) -> Iterator[Molecule]:
    """Endless iterator of conformations (Å) from Langevin MD; ``friction`` is per fs."""
    _check(temperature_K, timestep_fs, interval, equilibration_steps, friction)
    from ase import units
    from ase.md.langevin import Langevin
    from tblite.ase import TBLite

    atoms = molecule.to_ase()
    atoms.calc = TBLite(method=method, charge=float(molecule.charge), verbosity=0)
    rng = np.random.RandomState(seed)
    masses = atoms.get_masses()
    # Maxwell–Boltzmann momenta drawn here (ASE renamed its helper across versions); no drift
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * temperature_K)[:, None]
    momenta -= masses[:, None] * momenta.sum(axis=0) / masses.sum()
    atoms.set_momenta(momenta)
    # fixcm=False: ASE deprecates its fixcm; a drifting centre of mass is removed per frame
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=friction / units.fs, fixcm=False, rng=rng)
    with _omp_threads(threads):
        dyn.run(equilibration_steps)
    # Gaps jitter around ``interval`` so no vibration whose period divides it stays in phase
    # with the sampling (water's O-H stretch, ~9 fs, would alias at a fixed 20 fs interval).
    gaps = np.random.default_rng([seed, 1])
    low, high = (interval + 1) // 2, interval + interval // 2
    while True:
        with _omp_threads(threads):
            dyn.run(int(gaps.integers(low, high + 1)))
        pos = atoms.get_positions()
        pos -= masses @ pos / masses.sum()
        yield Molecule(molecule.numbers, pos, molecule.charge, molecule.name)


def sample_md(molecule: Molecule, n: int, seed: int = 0, progress: bool = False,
              **settings: Any) -> list[Molecule]:
    """The first ``n`` conformations of ``md_conformations`` (with a progress bar if asked)."""
    from tqdm.auto import tqdm

    if n < 1:
        raise InputError(f"number of conformations must be >= 1, got {n}")
    frames = itertools.islice(md_conformations(molecule, seed=seed, **settings), n)
    return list(tqdm(frames, total=n, unit="conf", desc="MD", disable=not progress))


def md_settings(seed: int = 0, **settings: Any) -> dict[str, Any]:
    """The sampler attributes stored in a dataset file."""
    out = {"kind": "md", "engine": "ASE Langevin + tblite", "method": "GFN2-xTB", "seed": seed,
           **DEFAULTS, **settings}
    for pkg in ("tblite", "ase"):
        try:
            out[f"{pkg}_version"] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[f"{pkg}_version"] = "unknown"
    return out
