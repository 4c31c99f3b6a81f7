"""Shared pieces of the asv suite: molecules, thread pinning, the tensor cache, timing helpers.

Only cheap imports at module level: asv imports every benchmark file once per benchmark
(``spawn``), so torch and PySCF are imported inside the helpers.
"""

from __future__ import annotations

import os
import time

THREADS = int(os.environ.get("QPTBENCH_THREADS", "2"))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    # effective only before numpy/torch start their pools: asv spawns a fresh interpreter
    os.environ.setdefault(_var, str(THREADS))

# name -> N_AO in def2-SVP (the label asv shows; checked against the built tensors in setup)
MOLECULES = {
    "water": 24,
    "ethanol": 72,
    "malondialdehyde": 90,
    "uracil": 132,
    "alanine_dipeptide": 200,
}
DEVICES = ["cpu", "cuda"]
ALANINE_SMILES = "CC(=O)NC(C)C(=O)NC"  # Ace-Ala-NMe, 22 atoms
ALANINE_SEED = 7


def pin_threads() -> None:
    """Fix torch's and PySCF's thread pools to ``QPTBENCH_THREADS`` (default 2)."""
    import torch
    from pyscf import lib

    torch.set_num_threads(THREADS)
    lib.num_threads(THREADS)


def molecule(name: str):
    """A built-in molecule, or the alanine dipeptide made deterministically with RDKit."""
    from qptbench.dft.geometry import Molecule

    if name != "alanine_dipeptide":
        return Molecule.builtin(name)
    try:
        return Molecule.builtin(name)  # once the geometry file is on main
    except Exception:
        return _alanine_from_rdkit()


def _alanine_from_rdkit():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from qptbench.dft.geometry import Molecule

    mol = Chem.AddHs(Chem.MolFromSmiles(ALANINE_SMILES))
    params = AllChem.ETKDGv3()
    params.randomSeed = ALANINE_SEED
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError("RDKit could not embed alanine dipeptide")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    positions = mol.GetConformer().GetPositions()
    return Molecule.from_arrays(numbers, positions, name="alanine_dipeptide")


MAX_ERI_GB = float(os.environ.get("QPTBENCH_MAX_ERI_GB", "4"))


def fits_in_memory(n_ao: int) -> bool:
    """Whether qptbench's ERI storage for ``n_ao`` stays within ``QPTBENCH_MAX_ERI_GB``."""
    try:
        from qptbench.dft.tensors import eri_nbytes
    except ImportError:  # older commits: dense (N, N, N, N) only
        return 8.0 * n_ao**4 <= MAX_ERI_GB * 1e9
    return eri_nbytes(n_ao) <= MAX_ERI_GB * 1e9


def require_memory(name: str) -> None:
    if not fits_in_memory(MOLECULES[name]):
        raise NotImplementedError(f"{name}: ERIs exceed QPTBENCH_MAX_ERI_GB={MAX_ERI_GB}")


def require_device(device: str) -> None:
    """Skip (asv shows n/a) where the device is missing; cheap before any CUDA work."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise NotImplementedError("no CUDA device")


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def level():
    from qptbench.dft.level import LevelOfTheory

    return LevelOfTheory()


def build_all_tensors() -> dict[str, str]:
    """``setup_cache`` body shared by the whole suite: one .pt file per molecule in asv's cwd."""
    import torch

    from qptbench.dft.tensors import build_tensors

    pin_threads()
    paths = {}
    for name, n_ao in MOLECULES.items():
        if not fits_in_memory(n_ao):
            continue  # load_tensors skips it (n/a)
        t = build_tensors(molecule(name), level())
        path = os.path.abspath(f"tensors-{name}.pt")
        torch.save(to_plain(t), path)
        paths[name] = path
        del t
    return paths


# The tensor cache holds only what ``torch.load(weights_only=True)`` accepts (tensors, dicts,
# lists, tuples, numbers, strings, None): a qptbench object (DFTTensors and the dataclasses in it,
# whatever their fields at the commit asv measures) becomes {OBJECT: "module:Class", "fields":
# {...}}, and only classes from qptbench modules are rebuilt from it.
OBJECT = "__qptbench_object__"
NDARRAY = "__ndarray__"


def to_plain(value):
    """``value`` as nested dicts/lists/tuples of tensors and plain Python values."""
    import dataclasses

    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {NDARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, (list, tuple)):
        items = [to_plain(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    cls = type(value)
    if not cls.__module__.startswith("qptbench."):
        raise TypeError(f"cannot cache a {cls.__module__}.{cls.__qualname__}")
    if dataclasses.is_dataclass(value):
        state = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    else:
        state = dict(vars(value))
    return {OBJECT: f"{cls.__module__}:{cls.__qualname__}",
            "fields": {k: to_plain(v) for k, v in state.items()}}


def from_plain(value):
    """Inverse of ``to_plain``."""
    import importlib

    if isinstance(value, list):
        return [from_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_plain(v) for v in value)
    if not isinstance(value, dict):
        return value
    if NDARRAY in value:
        return value[NDARRAY].numpy()
    if OBJECT not in value:
        return {k: from_plain(v) for k, v in value.items()}
    module, _, qualname = value[OBJECT].partition(":")
    if not module.startswith("qptbench."):
        raise TypeError(f"refusing to rebuild {value[OBJECT]} from the tensor cache")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    obj = cls.__new__(cls)
    for key, field_value in value["fields"].items():
        object.__setattr__(obj, key, from_plain(field_value))  # frozen dataclasses too
    return obj


def load_tensors(cache: dict[str, str], name: str, device: str):
    import torch

    pin_threads()
    if name not in cache:
        raise NotImplementedError(f"{name}: ERIs exceed QPTBENCH_MAX_ERI_GB")
    t = from_plain(torch.load(cache[name], weights_only=True))
    if t.n_ao != MOLECULES[name]:
        raise RuntimeError(f"{name}: N_AO {t.n_ao}, expected {MOLECULES[name]}")
    return t.to(device)


def best_time(fn, repeat: int = 3, device: str = "cpu") -> float:
    """Minimum wall time of ``repeat`` calls (seconds), synchronised on GPU."""
    best = float("inf")
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - tic)
    return best


def initial_h(t):
    """QPT's starting Hamiltonian F(minao), detached."""
    from qptbench.dft.energy import fock

    return fock(t, t.dm_minao).detach()


class Benchmark:
    """Timing attributes for ms–s kernels: one call per sample, a few samples, no asv warm-up
    (each ``setup`` warms up explicitly)."""

    number = 1
    repeat = (3, 10, 30.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 600


build_all_tensors.timeout = 1800  # uracil + alanine dipeptide tensors; asv's default is 60 s


def flops_energy(n_ao: int, n_occ: int, n_grid: int, eri_elements: int, backward: bool) -> float:
    """Approximate FLOPs of one-iteration E(aufbau(H)) (+ backward), from sizes alone.

    eigh ≈ 9 N³ with vectors plus 4 N³ for the two orthogonaliser products; J and K read each
    stored ERI once per matrix–vector product (2 flops an element, J and K: 2 products);
    XC ≈ ρ (2GN² + 2GN), ∇ρ (6GN), V_xc (8GN + 2GN²), functional ~200 flops a point. The
    backward of E is the Fock matrix kept from the forward; aufbau's backward ≈ 10 N³.
    """
    n, g = float(n_ao), float(n_grid)
    eigh = 13 * n**3 + 2 * n * n * n_occ
    jk = 4.0 * eri_elements
    xc = g * (4 * n * n + 16 * n + 200)
    return eigh + jk + xc + (10 * n**3 if backward else 0.0)


def eri_elements(t) -> int:
    """Number of stored ERI values a J/K build reads (dense: N⁴)."""
    eri = t.eri
    return int(eri.numel()) if hasattr(eri, "numel") else int(eri.stored_elements)
