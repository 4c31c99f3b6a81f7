"""Memory before anything is built: the size of one geometry's DFT tensors from the basis and the
grid's point count alone, what this machine has, and a one-line refusal when a plan will not fit.

The tensors (``tensors.build_tensors``) are dominated by the dense ERIs (N⁴ float64: uracil's 132
AOs 2.4 GB, alanine dipeptide's 200 AOs in def2-SVP 12.8 GB) and the AO values on the grid,
which are stored per block of points for the significant AOs only (``grid_ao``): Σ n_sig · g
values, and 3 × as many gradients for GGA functionals, instead of N × G.  N comes from PySCF's
``Mole``; G and Σ n_sig · g from PySCF's own atomic grids (radial × pruned angular points per
element, before the Becke partition), sorted as the built grid is and screened with the same
shell mask, so no integral is built and not a single AO evaluated.

``check_fits`` compares an estimate with a limit: ``--memory-limit-gb``, else
``QPTBENCH_MEMORY_LIMIT_GB``, else ``LIMIT_FRACTION`` of the memory available now; 0 turns the
check off.  The per-command sums (how many geometries a command holds at once) are in
``qptbench.methods.memory``; ``run_need`` adds them up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from qptbench.dft.energy import XC_CHUNK
from qptbench.dft.geometry import Molecule
from qptbench.dft.grid_ao import SCREEN_BLOCK
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import resolve_ao_budget
from qptbench.errors import InputError
from qptbench.runtime import gb_setting

GB = 1e9
LIMIT_ENV = "QPTBENCH_MEMORY_LIMIT_GB"
LIMIT_FRACTION = 0.8  # of the available memory: the page cache, the shell and the rest need some
REMEDY = ("use --eri df (density fitting), a smaller --window, a lower --grid-level or fewer "
          "workers, cap the stored AO values (qptbench --ao-budget-gb GB COMMAND), or raise "
          "--memory-limit-gb / QPTBENCH_MEMORY_LIMIT_GB (0: no check)")
DEFAULT_AUXBASIS = "def2-universal-jkfit"


def _is_df(level: LevelOfTheory) -> bool:
    return getattr(level, "eri", "dense") == "df"  # the field is newer than this module


def _is_gga(xc: str) -> bool:
    from qptbench.dft.xc import get_functional

    return bool(get_functional(xc).is_gga)


def grid_points(mol, grid_level: int) -> int:
    """Points of PySCF's default grid at ``grid_level`` (``tensors.build_grids``), counted from
    its per-element atomic grids: the Becke partition and the AO screening, which cost more
    than the rest of the estimate, change weights, not the count (``build_tensors`` drops only
    zero weights, PySCF's alignment padding)."""
    from pyscf.dft import gen_grid

    grids = gen_grid.Grids(mol)
    grids.level = grid_level
    # the same settings Grids.build passes (radial scheme, pruning), one grid per element
    per_element = grids.gen_atomic_grids(mol, grids.atom_grid, grids.radi_method,
                                         grids.level, grids.prune)
    return sum(len(per_element[mol.atom_symbol(i)][1]) for i in range(mol.natm))


def significant_ao_values(mol, grid_level: int) -> int:
    """Σ_blocks n_sig · g of ``grid_ao.screen_ao`` on PySCF's default grid at ``grid_level``:
    the same points in the same (box-sorted) order, before the Becke partition, screened with
    the same mask (the built grid also drops its few zero-weight points, a fraction of 1 %)."""
    import numpy as np
    from pyscf.dft import gen_grid

    from qptbench.dft.grid_ao import significant_count

    grids = gen_grid.Grids(mol)
    grids.level = grid_level
    per_element = grids.gen_atomic_grids(mol, grids.atom_grid, grids.radi_method,
                                         grids.level, grids.prune)
    atoms = mol.atom_coords()
    coords = np.vstack([per_element[mol.atom_symbol(i)][0] + atoms[i] for i in range(mol.natm)])
    coords = np.ascontiguousarray(coords[gen_grid.arg_group_grids(mol, coords)])
    return significant_count(mol, coords)


def aux_functions(mol, auxbasis: str | None) -> int:
    """N_aux: functions of the density-fitting basis on ``mol`` (PySCF's auxiliary Mole)."""
    from pyscf.df import addons

    try:
        return int(addons.make_auxmol(mol, auxbasis).nao_nr())
    except Exception:  # PySCF's messages for an unknown basis run over many lines
        raise InputError(f"auxiliary basis {auxbasis!r}: PySCF cannot load it for the elements "
                         f"{', '.join(sorted(set(mol.elements)))}") from None


_SIZES: dict[tuple, dict[str, int]] = {}  # per composition and level (see tensor_sizes)


def tensor_sizes(molecule: Molecule, level: LevelOfTheory | None = None) -> dict[str, int]:
    """N (``n_ao``), G (``n_grid``), N_aux (``n_aux``, 0 unless density-fitted), the AO values
    kept by the screening (``ao_significant``, Σ n_sig · g) and PySCF's ``max_memory`` (MB) for
    a molecule at a level.  All but the screened count depend on the elements only, and that
    one changes little between conformations, so each composition is counted once per process
    (at the first geometry asked for)."""
    level = level or LevelOfTheory()
    auxbasis = getattr(level, "auxbasis", DEFAULT_AUXBASIS) if _is_df(level) else None
    key = (tuple(molecule.symbols), int(molecule.charge), level.basis, level.grid_level,
           auxbasis)
    if key not in _SIZES:
        from qptbench.dft.tensors import build_mole

        mol = build_mole(molecule, level.basis)
        _SIZES[key] = {"n_ao": int(mol.nao), "n_grid": grid_points(mol, level.grid_level),
                       "ao_significant": significant_ao_values(mol, level.grid_level),
                       "n_aux": 0 if auxbasis is None else aux_functions(mol, auxbasis),
                       "max_memory_mb": int(mol.max_memory)}
    return dict(_SIZES[key])


def estimate_tensor_bytes(molecule: Molecule, level: LevelOfTheory | None = None,
                          ao_budget_gb: float | None = None) -> dict[str, int]:
    """Bytes of one geometry's ``DFTTensors`` (``evaluation.evaluator.tensor_bytes`` of what
    ``build_tensors`` returns), by part, without building it.

    Keys: ``eri`` (dense N⁴, 0 when density-fitted), ``df`` (N_aux·N², 0 when dense), ``ao``
    (the screened AO values, Σ n_sig · g; N·G without screening), ``ao_grad`` (3 × as many,
    0 for LDA), ``small`` (S, h, L⁻¹, D_minao, the weights and the screened AO indices),
    ``ao_work`` (0 unless the AO values are over ``ao_budget_gb``, default
    ``QPTBENCH_AO_BUDGET_GB``: then ``ao`` and ``ao_grad`` are 0 and this is the chunk an
    energy evaluates at a time), ``total`` (their sum), and ``build``: what building one needs
    on top of it for a moment (PySCF's 8-fold packed ERIs before they are unpacked, or the
    3-index integrals before the whitening), not held afterwards.
    """
    level = level or LevelOfTheory()
    sizes = tensor_sizes(molecule, level)
    n, g, n_aux, f8 = sizes["n_ao"], sizes["n_grid"], sizes["n_aux"], 8
    pairs = n * (n + 1) // 2
    out = dict.fromkeys(("eri", "df", "ao", "ao_grad", "small", "total", "build"), 0)
    if _is_df(level):
        out["df"] = n_aux * n * n * f8
        out["build"] = 2 * n_aux * pairs * f8  # the packed 3-index integrals and their whitening
    else:
        out["eri"] = n**4 * f8
        out["build"] = pairs * (pairs + 1) // 2 * f8
        if level.eri_threshold > 0:  # |eri| < threshold: np.abs makes a copy, the mask 1/8 more
            out["build"] += n**4 * (f8 + 1)
    sig = sizes["ao_significant"]
    comp = 4 if _is_gga(level.xc) else 1
    out["ao"] = sig * f8
    out["ao_grad"] = (comp - 1) * sig * f8
    out["small"] = 4 * n * n * f8 + g * f8 + (sig // SCREEN_BLOCK + n) * 8  # + AO indices
    out["ao_work"] = 0
    budget = resolve_ao_budget(ao_budget_gb)
    if budget is not None and out["ao"] + out["ao_grad"] > budget * GB:
        # not stored (grid_ao): the points instead, and while an energy runs one chunk of
        # blocks evaluated, with the evaluator's temporaries (about as much again)
        out["ao"] = out["ao_grad"] = 0
        out["small"] += 3 * g * f8
        out["ao_work"] = 2 * comp * n * XC_CHUNK * f8
    out["total"] = sum(out[k] for k in ("eri", "df", "ao", "ao_grad", "small", "ao_work"))
    return out


def pyscf_scf_bytes(molecule: Molecule, level: LevelOfTheory | None = None) -> int:
    """What PySCF's own RKS on this geometry holds at most (a label, a reference, the SCF
    acceleration runs): its integrals in core, 8-fold packed (or the DF 3-index tensor), when
    they fit under its ``max_memory``, and the AO values of a block of grid points with the
    intermediates of the XC potential (the whole grid at once when it fits: about (comp + 1)
    N × G, comp = 4 for GGA, 1 for LDA); all within ``max_memory``.  Measured: ``qptbench scf``
    on uracil (grid level 1) peaked at 3.52 GB resident, 2.65 GB of it our tensors."""
    level = level or LevelOfTheory()
    sizes = tensor_sizes(molecule, level)
    n, g = sizes["n_ao"], sizes["n_grid"]
    pairs = n * (n + 1) // 2
    held = sizes["n_aux"] * pairs * 8 if _is_df(level) else pairs * (pairs + 1) // 2 * 8
    cap = sizes["max_memory_mb"] * 1e6  # PYSCF_MAX_MEMORY, default 4000 MB
    held = held if held < 0.95 * cap else 0  # else computed on the fly
    blocks = ((4 if _is_gga(level.xc) else 1) + 1) * n * g * 8
    return int(min(held + blocks, cap))


# ---- what the machine has ------------------------------------------------------------------

def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """Room left under a container's cgroup-v2 limit, which /proc/meminfo does not show."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((base / "memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Memory a new allocation can have now: /proc/meminfo's MemAvailable (and the cgroup's
    room, when smaller); elsewhere the free physical pages; None where neither is known."""
    found = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    if found:
        return min(found)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def resolve_limit(limit_gb: float | None = None) -> tuple[float | None, str]:
    """(limit in bytes or None for no check, where it came from): ``limit_gb`` (the command's
    ``--memory-limit-gb``), else ``QPTBENCH_MEMORY_LIMIT_GB``, else ``LIMIT_FRACTION`` of
    ``available_bytes()``.  A limit of 0 turns the check off."""
    limit_gb, source = gb_setting(limit_gb, "--memory-limit-gb", LIMIT_ENV, "; 0: no check")
    if limit_gb is not None:
        return (None, source) if limit_gb == 0 else (limit_gb * GB, source)
    free = available_bytes()
    if free is None:
        return None, "unknown available memory"
    return LIMIT_FRACTION * free, (f"{LIMIT_FRACTION:.0%} of {free / GB:.1f} GB available")


def _gb(x: float) -> str:
    return f"{x / GB:.3g} GB" if x >= 0.01 * GB else f"{x / 1e6:.3g} MB"


def check_fits(what: str, need_bytes: float | Mapping[str, float],
               limit_bytes: float | None = None, remedy: str = REMEDY,
               limit_gb: float | None = None) -> float | None:
    """Raise ``InputError`` (one line: estimate, limit, remedy) when ``need_bytes`` exceeds the
    limit; return the limit used (None: no check).

    ``need_bytes``: a number, or a breakdown whose ``total`` is the estimate (its largest parts
    are named in the message).  ``limit_bytes`` wins over ``limit_gb`` (a command's
    ``--memory-limit-gb``), which wins over ``QPTBENCH_MEMORY_LIMIT_GB`` and the default.
    """
    if limit_bytes is None:
        limit, source = resolve_limit(limit_gb)
    else:
        limit, source = float(limit_bytes), "given"
    parts: dict[str, float] = {}
    if isinstance(need_bytes, Mapping):
        parts = {k: float(v) for k, v in need_bytes.items() if k != "total" and v > 0}
        need = float(need_bytes.get("total", sum(parts.values())))
    else:
        need = float(need_bytes)
    if limit is None or need <= limit:
        return limit
    largest = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
    detail = f" ({', '.join(f'{k} {_gb(v)}' for k, v in largest)})" if largest else ""
    raise InputError(f"{what} needs about {_gb(need)} of memory{detail}, over the limit of "
                     f"{_gb(limit)} ({source}); {remedy}")


def run_need(tensor: Mapping[str, int], *, held: float = 0, transient_pyscf: int = 0,
             extra: Mapping[str, float] | None = None, processes: int = 1,
             process_bytes: float = 0.0) -> dict[str, float]:
    """A breakdown (bytes) of a plan that holds ``held`` geometries' tensors (``tensor`` from
    ``estimate_tensor_bytes``) while building one more, or while PySCF runs its own SCF
    (``transient_pyscf``), whichever is larger; ``extra`` parts (a model, labels, an autograd
    graph) are added as given, and ``process_bytes`` per Python process (interpreter, torch,
    PySCF).  ``total`` is the sum."""
    out: dict[str, float] = {"tensors held": held * tensor["total"],
                             "one being built": max(tensor["total"] + tensor["build"],
                                                    transient_pyscf),
                             **(extra or {}),
                             "processes": processes * process_bytes}
    out["total"] = sum(out.values())
    return out
