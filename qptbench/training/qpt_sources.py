"""Where QPT's training and validation geometries come from: index -> Molecule, deterministic.

``displaced`` (Gaussian moves of a built-in geometry), ``md`` (a GFN2-xTB trajectory),
``dihedral`` (alanine dipeptide with (φ, ψ) drawn from a box, the paper's Fig. 4) or ``dataset``
(a split of a dataset file); ``make_source`` picks one from a ``QPTRunConfig``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.training.qpt import QPTRunConfig


class DisplacedSource:
    """The built-in geometry with every coordinate moved by N(0, s²) Å; split by seed stream."""

    def __init__(self, base: Molecule, scale: float, seed: int, stream: int) -> None:
        self.base, self.scale, self.seed, self.stream = base, scale, seed, stream

    def __call__(self, index: int) -> Molecule:
        seq = np.random.SeedSequence([self.seed, self.stream, index])
        return self.base.displaced(int(seq.generate_state(1)[0]), self.scale)


class MDSource:
    """Frames of a GFN2-xTB MD trajectory (``data.md``), cached as they are generated."""

    def __init__(self, base: Molecule, seed: int) -> None:
        self.base, self.seed, self.frames, self._it = base, seed, [], None

    def __call__(self, index: int) -> Molecule:
        if self._it is None:
            from qptbench.data.md import md_conformations

            self._it = md_conformations(self.base, seed=self.seed)
        while len(self.frames) <= index:
            self.frames.append(next(self._it))
        return self.frames[index]


class DihedralSource:
    """Alanine dipeptide with (φ, ψ) uniform in ``region`` (``data.regions``), the rest rigid.

    Conformation ``index`` depends on (seed, stream, index) alone, not on what was drawn before,
    so a resumed run or a DataLoader worker gets the same molecule for the same index without
    replaying the stream (unlike MD, nothing here is sequential, so nothing is cached).
    """

    def __init__(self, base: Molecule, region: str | None, seed: int, stream: int) -> None:
        from qptbench.data.regions import parse_region

        box = parse_region(region or "0:180")
        self.base, self.seed, self.stream = base, seed, stream
        self.phi_range, self.psi_range = box.phi.bounds, box.psi.bounds

    def __call__(self, index: int) -> Molecule:
        from qptbench.data.dihedral import dihedral_conformations

        seq = np.random.SeedSequence([self.seed, self.stream, index])
        draws = dihedral_conformations(self.base, int(seq.generate_state(1)[0]),
                                       phi_range=self.phi_range, psi_range=self.psi_range)
        return next(draws)


class DatasetSource:
    """Conformations of a dataset file's split, drawn uniformly with a seeded generator."""

    def __init__(self, path: str, split: str, seed: int) -> None:
        from qptbench.data.store import Dataset

        with Dataset.open(path) as ds:
            self.indices = np.asarray(ds.split(split))
            self.molecules = {int(i): ds.molecule(int(i)) for i in self.indices}
        if self.indices.size == 0:
            raise ValueError(f"{path}: split {split!r} is empty")
        self.seed = seed

    def __call__(self, index: int) -> Molecule:
        rng = np.random.default_rng([self.seed, index])
        return self.molecules[int(rng.choice(self.indices))]


def make_source(cfg: QPTRunConfig, stream: int) -> Callable[[int], Molecule]:
    base = Molecule.builtin(cfg.molecule)
    if cfg.sampler == "displaced":
        return DisplacedSource(base, cfg.displacement_angstrom, cfg.seed, stream)
    if cfg.sampler == "md":
        return MDSource(base, seed=cfg.seed * 1000 + stream)
    if cfg.sampler == "dihedral":
        return DihedralSource(base, cfg.train_region, cfg.seed, stream)
    if cfg.sampler == "dataset":
        if cfg.dataset is None:
            raise ValueError("sampler 'dataset' needs --dataset FILE")
        return DatasetSource(cfg.dataset, "train" if stream == 0 else "val", cfg.seed)
    raise ValueError(f"unknown sampler {cfg.sampler!r}; choose displaced, md, dihedral or "
                     "dataset")
