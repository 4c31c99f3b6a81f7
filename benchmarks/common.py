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
    "ace_ala4_nme": 485,  # the N_AO >= 400 peptide: density fitting only (dense: 440 GB)
}
DEVICES = ["cpu", "cuda"]
ERIS = ["dense", "df"]  # the two-electron treatment (LevelOfTheory.eri): exact or fitted
# PySCF's grid level for every benchmark: 3 is the project's default; 1 lets the 485-AO peptide's
# DF energy + backward fit a 24 GB machine (about 17 GB at level 1, 28 GB estimated at 3)
GRID_LEVEL = int(os.environ.get("QPTBENCH_GRID_LEVEL", "3"))
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

    if name != "alanine_dipeptide":  # ace_ala4_nme: built in since it was added here
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


def df_need_bytes(name: str) -> float:
    """Estimated peak of a DF energy + backward on ``name`` (``qptbench.dft.memory``): the
    tensors, the larger of their build and the autograd graph (two (N, G) arrays and two copies
    of B's size, B·D and its transpose; ``qptbench.methods.memory``)."""
    from qptbench.dft.memory import estimate_tensor_bytes, tensor_sizes
    from qptbench.methods.memory import GRAPH_AO_ARRAYS

    lev = level("df")
    est, sizes = estimate_tensor_bytes(molecule(name), lev), tensor_sizes(molecule(name), lev)
    graph = GRAPH_AO_ARRAYS * sizes["n_ao"] * sizes["n_grid"] * 8 + 2 * est["df"]
    return est["total"] + max(est["build"], graph)


def why_not(name: str, eri: str = "dense") -> str | None:
    """Why ``name`` at ``eri`` is skipped (n/a), or None when it runs: dense ERIs over
    ``QPTBENCH_MAX_ERI_GB``; DF over ``QPTBENCH_MEMORY_LIMIT_GB`` (else 80% of the memory
    available, ``qptbench.dft.memory.resolve_limit``); DF at a commit without it."""
    if eri == "dense":
        if fits_in_memory(MOLECULES[name]):
            return None
        return f"{name}: ERIs exceed QPTBENCH_MAX_ERI_GB={MAX_ERI_GB}"
    from dataclasses import fields

    from qptbench.dft.level import LevelOfTheory

    if "eri" not in {f.name for f in fields(LevelOfTheory)}:
        return "no density fitting at this commit"
    from qptbench.dft.memory import resolve_limit

    limit, source = resolve_limit()
    need = df_need_bytes(name)
    if limit is None or need <= limit:
        return None
    return (f"{name}: DF energy + backward needs about {need / 1e9:.1f} GB, over "
            f"{limit / 1e9:.1f} GB ({source}); try QPTBENCH_GRID_LEVEL=1")


def require_memory(name: str, eri: str = "dense") -> None:
    reason = why_not(name, eri)
    if reason:
        raise NotImplementedError(reason)


def require_pyscf_dense(name: str) -> None:
    """Skip PySCF's own dense work where its 8-fold ERIs exceed ``QPTBENCH_MAX_ERI_GB``: it
    would fall back to direct SCF (485 AOs: 6.9 GB packed), hours on two cores."""
    n = MOLECULES[name]
    if n**4 <= MAX_ERI_GB * 1e9:  # 8 bytes × N⁴ / 8
        return
    raise NotImplementedError(f"{name}: PySCF's packed ERIs exceed QPTBENCH_MAX_ERI_GB")


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


def level(eri: str = "dense"):
    """The suite's level of theory: the project's default at ``QPTBENCH_GRID_LEVEL``, with
    dense or density-fitted ERIs."""
    from qptbench.dft.level import LevelOfTheory

    if eri == "dense":  # a commit from before density fitting has no eri field
        return LevelOfTheory(grid_level=GRID_LEVEL)
    return LevelOfTheory(grid_level=GRID_LEVEL, eri=eri)


def cache_key(name: str, eri: str = "dense") -> str:
    return name if eri == "dense" else f"{name}-{eri}"


def build_all_tensors() -> dict[str, str]:
    """``setup_cache`` body shared by the whole suite: one .pt file per molecule and ERI
    treatment in asv's cwd (dense keeps its old name)."""
    import torch

    from qptbench.dft.tensors import build_tensors

    pin_threads()
    paths = {}
    for name in MOLECULES:
        for eri in ERIS:
            if why_not(name, eri):
                continue  # load_tensors skips it (n/a)
            t = build_tensors(molecule(name), level(eri))
            path = os.path.abspath(f"tensors-{cache_key(name, eri)}.pt")
            torch.save(to_plain(t), path)
            paths[cache_key(name, eri)] = path
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
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple: keep its class
        cls = type(value)
        if cls.__module__.startswith("qptbench."):
            return {OBJECT: f"{cls.__module__}:{cls.__qualname__}",
                    "fields": {k: to_plain(v) for k, v in value._asdict().items()}}
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
    if issubclass(cls, tuple):  # a NamedTuple (immutable: built from its fields)
        return cls(**{k: from_plain(v) for k, v in value["fields"].items()})
    obj = cls.__new__(cls)
    for key, field_value in value["fields"].items():
        object.__setattr__(obj, key, from_plain(field_value))  # frozen dataclasses too
    return obj


def load_tensors(cache: dict[str, str], name: str, device: str, eri: str = "dense"):
    import torch

    pin_threads()
    key = cache_key(name, eri)
    if key not in cache:
        raise NotImplementedError(why_not(name, eri) or f"{key}: not in the tensor cache")
    t = from_plain(torch.load(cache[key], weights_only=True))
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


build_all_tensors.timeout = 3600  # uracil, alanine dipeptide, the DF peptide; asv's default: 60 s


def flops_energy(n_ao: int, n_occ: int, n_grid: int, eri_elements: int, backward: bool,
                 jk_flops: float | None = None) -> float:
    """Approximate FLOPs of one-iteration E(aufbau(H)) (+ backward), from sizes alone.

    eigh ≈ 9 N³ with vectors plus 4 N³ for the two orthogonaliser products; J and K read each
    stored ERI once per matrix–vector product (2 flops an element, J and K: 2 products);
    XC ≈ ρ (2GN² + 2GN), ∇ρ (6GN), V_xc (8GN + 2GN²), functional ~200 flops a point. The
    backward of E is the Fock matrix kept from the forward; aufbau's backward ≈ 10 N³.
    ``jk_flops`` replaces the dense J/K count (``jk_flops(t)`` for density fitting).
    """
    n, g = float(n_ao), float(n_grid)
    eigh = 13 * n**3 + 2 * n * n * n_occ
    jk = 4.0 * eri_elements if jk_flops is None else jk_flops
    xc = g * (4 * n * n + 16 * n + 200)
    return eigh + jk + xc + (10 * n**3 if backward else 0.0)


def eri_elements(t) -> int:
    """Number of stored two-electron values a J/K build reads (dense: N⁴; DF: N_aux N²)."""
    if getattr(t, "df_b", None) is not None:
        return int(t.df_b.numel())
    eri = t.eri
    return int(eri.numel()) if hasattr(eri, "numel") else int(eri.stored_elements)


def jk_flops(t) -> float:
    """FLOPs of J and K: dense, 2 per stored ERI per product; DF (``density_fitting``), J two
    (N_aux, N²) matrix–vector products and K the N_aux products B_Q D then one (N, N_aux N) @
    (N_aux N, N) product: 4 N_aux N² + 4 N_aux N³."""
    if getattr(t, "df_b", None) is None:
        return 4.0 * eri_elements(t)
    n_aux, n = t.df_b.shape[0], t.n_ao
    return 4.0 * n_aux * n * n + 4.0 * n_aux * n**3
