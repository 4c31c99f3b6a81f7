"""GPU4PySCF's RKS as a labeller, at exactly the level of theory PySCF's labels use.

GPU4PySCF (``pip install 'qptbench[gpu]'``) reuses PySCF's molecule, basis and functional
parser, so ``b3lyp5`` means the same functional (B3LYP with VWN5) in both.  Where its defaults
could differ from the CPU labeller's, ``make_gpu_rks`` sets them explicitly to PySCF's:

* grids: its ``Grids`` has PySCF's defaults (Bragg radii, Treutler radial grid and radii
  adjustment, NWChem pruning, original Becke partition, level 3); we set every one, and the
  level, so a changed default in either code cannot move the level of theory.  It also sorts
  the points by atom and pads them with zero-weight points far away: the same quadrature.
* ``small_rho_cutoff`` (dropping grid points of small density): 0 in both, set to 0.
* integral screening: GPU4PySCF's direct SCF screens Schwarz bounds with ``direct_scf_tol``
  like PySCF; we pass PySCF's value.  A level with ``eri_threshold > 0`` (our own dense-ERI
  screening) has no GPU4PySCF counterpart and is refused.
* density fitting: only when the level says ``eri="df"``, with the level's auxiliary basis and
  J and K both fitted (``only_dfj=False``), as PySCF's ``density_fit``; never by default.
* overlap: GPU4PySCF drops overlap eigenvectors below 1e-6 (canonical orthogonalisation), PySCF
  keeps them; a geometry whose S has such an eigenvalue is a failed label with that reason.
* SCF: same ``conv_tol``, ``conv_tol_grad`` (None: sqrt of conv_tol in both), ``max_cycle``,
  minao guess, DIIS, no level shift; dispersion and non-local (VV10) functionals are refused,
  since their GPU code paths were not checked against PySCF's.
"""

from __future__ import annotations

import socket
import time

import numpy as np

from qptbench.dft.geometry import Molecule
from qptbench.dft.labels import PySCFResult
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_auxmol, build_mole
from qptbench.errors import InputError

LABELLERS = ("pyscf", "gpu4pyscf")
GPU_EXTRA = "pip install 'qptbench[gpu]'"
OVERLAP_DROP = 1e-6  # GPU4PySCF's scf_hf_overlap_zero_eigenvalue_threshold


def gpu4pyscf_missing() -> str:
    """Why GPU4PySCF cannot label here (one line), or "" when it can."""
    try:
        import gpu4pyscf  # noqa: F401
    except ImportError:
        return f"--labeller gpu4pyscf needs GPU4PySCF and CUDA 12: {GPU_EXTRA}"
    try:
        import cupy

        devices = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, no libcuda: cupy raises its own error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"--labeller gpu4pyscf found no usable CUDA device ({first}); {GPU_EXTRA}"
    if devices < 1:
        return f"--labeller gpu4pyscf found no CUDA device; {GPU_EXTRA}"
    return ""


def check_labeller(name: str) -> str:
    """The labeller's canonical name; a one-line InputError if unknown or unusable here."""
    key = str(name).strip().lower()
    if key not in LABELLERS:
        raise InputError(f"unknown labeller {name!r}; choose {' or '.join(LABELLERS)}")
    if key == "gpu4pyscf":
        reason = gpu4pyscf_missing()
        if reason:
            raise InputError(reason)
    return key


def check_gpu_level(level: LevelOfTheory) -> None:
    """Refuse, in one line, a level GPU4PySCF cannot reproduce with PySCF's settings."""
    from pyscf.dft import libxc

    if level.eri_threshold > 0:
        raise InputError("--labeller gpu4pyscf has no dense-ERI threshold (GPU4PySCF screens "
                         "only with direct_scf_tol); use eri_threshold 0 or --labeller pyscf")
    if libxc.is_nlc(level.xc) or any(tag in level.xc for tag in ("-d3", "-d4")):
        raise InputError(f"--labeller gpu4pyscf: {level.xc!r} has a dispersion or VV10 part, "
                         "not checked against PySCF; use --labeller pyscf")


def make_gpu_rks(molecule: Molecule, level: LevelOfTheory, conv_tol: float = 1e-10,
                 max_cycle: int = 100):
    """A GPU4PySCF RKS object at ``level``, every setting that defines the level set explicitly
    to what PySCF's labeller uses (see the module docstring)."""
    from gpu4pyscf import dft as gdft
    from gpu4pyscf.dft import gen_grid, radi
    from pyscf.scf import hf as cpu_hf

    check_gpu_level(level)
    mol = build_mole(molecule, level.basis)
    mf = gdft.RKS(mol, xc=level.xc)
    if level.is_df:
        build_auxmol(mol, level.auxbasis)  # a bad name fails here, in one line, not on the GPU
        mf = mf.density_fit(auxbasis=level.auxbasis, only_dfj=False)
    mf.xc = level.xc
    grids = mf.grids
    grids.atomic_radii = radi.BRAGG_RADII
    grids.radii_adjust = radi.treutler_atomic_radii_adjust
    grids.radi_method = radi.treutler
    grids.becke_scheme = gen_grid.original_becke
    grids.prune = gen_grid.nwchem_prune
    grids.level = level.grid_level
    mf.small_rho_cutoff = 0.0
    mf.direct_scf_tol = cpu_hf.SCF.direct_scf_tol
    mf.conv_tol = conv_tol
    mf.conv_tol_grad = None
    mf.max_cycle = max_cycle
    mf.init_guess = "minao"
    mf.disp = None  # no level shift either: both codes default to none, left untouched
    mf.verbose = 0
    return mf


def _host(array) -> np.ndarray:
    # CuPy arrays come back to the host with .get(); NumPy ones (a fake in tests) as they are
    return np.asarray(array.get() if hasattr(array, "get") else array, dtype=np.float64)


def gpu4pyscf_rks(molecule: Molecule, level: LevelOfTheory | None = None,
                  conv_tol: float = 1e-10, max_cycle: int = 100,
                  threads: int | None = None) -> PySCFResult:
    """GPU4PySCF RKS to convergence, returned exactly as ``labels.pyscf_rks`` returns PySCF's:
    H* and S in PySCF AO order (GPU4PySCF sorts AOs internally, never in what it returns),
    float64 on the host.  ``pyscf_version`` reads "gpu4pyscf X (pyscf Y)"; ``cpu_seconds`` is
    host CPU time only and ``threads`` PySCF's OpenMP count on the host."""
    import gpu4pyscf
    import pyscf
    from pyscf import lib

    level = level or LevelOfTheory()
    if threads is not None:
        lib.num_threads(int(threads))
    tic, cpu = time.perf_counter(), time.process_time()
    mf = make_gpu_rks(molecule, level, conv_tol, max_cycle)
    versions = f"gpu4pyscf {gpu4pyscf.__version__} (pyscf {pyscf.__version__})"
    n_occ = molecule.n_electrons // 2
    smallest = float(np.linalg.eigvalsh(mf.mol.intor_symmetric("int1e_ovlp"))[0])
    if smallest < OVERLAP_DROP:
        failure = (f"overlap eigenvalue {smallest:.1e} < {OVERLAP_DROP:.0e}: GPU4PySCF drops it,"
                   " PySCF does not; label this geometry with --labeller pyscf")
        return PySCFResult(energy=float("nan"), converged=False, cycles=0,
                           fock=np.zeros((0, 0)), overlap=np.zeros((0, 0)),
                           mo_energy=np.zeros(0), n_occ=n_occ,
                           seconds=time.perf_counter() - tic,
                           cpu_seconds=time.process_time() - cpu,
                           threads=int(lib.num_threads()), host=socket.gethostname(),
                           pyscf_version=versions, failure=failure)
    mf.kernel()
    cycles = int(getattr(mf, "cycles", -1))
    failure = "" if mf.converged else (f"SCF not converged in {cycles} cycles (max_cycle "
                                       f"{max_cycle}, conv_tol {conv_tol:.0e}, GPU4PySCF)")
    return PySCFResult(
        energy=float(mf.e_tot), converged=bool(mf.converged), cycles=cycles,
        fock=_host(mf.get_fock()), overlap=_host(mf.get_ovlp()),
        mo_energy=_host(mf.mo_energy), n_occ=n_occ,
        seconds=time.perf_counter() - tic, cpu_seconds=time.process_time() - cpu,
        threads=int(lib.num_threads()), host=socket.gethostname(), pyscf_version=versions,
        failure=failure)
