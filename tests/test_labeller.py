"""The labeller (pyscf | gpu4pyscf): refusal without GPU4PySCF, its record in the store, the
labels and the ledger, one labeller per file, and GPU4PySCF's settings through a fake module."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.data import journal
from qptbench.data.labelling import label_dataset
from qptbench.data.splits import make_splits
from qptbench.data.store import FAILED, Dataset, create_dataset
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError

LEVEL = LevelOfTheory(basis="sto-3g", grid_level=0)  # quick: every SCF well under a second


def water_file(path, n=2):
    water = Molecule.builtin("water")
    confs = [water.displaced(k, scale=0.05) for k in range(n)]
    return create_dataset(path, confs, name="water", sampler={"kind": "displaced"},
                          splits=make_splits(n, n - 1, 1, seed=0), split_seed=0)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- refusal -----------------------------------------------------------------------------------

def test_gpu4pyscf_missing_refused_before_anything_is_written(tmp_path, monkeypatch):
    path = water_file(tmp_path / "w.h5")
    before = snapshot(tmp_path)
    monkeypatch.setitem(sys.modules, "gpu4pyscf", None)  # import gpu4pyscf -> ImportError
    with pytest.raises(InputError, match=r"pip install 'qptbench\[gpu\]'") as err:
        label_dataset(path, LEVEL, workers=1, progress=False, labeller="gpu4pyscf")
    assert "\n" not in str(err.value)
    assert snapshot(tmp_path) == before  # no journal, no lock, the file untouched

    result = CliRunner().invoke(app, ["label", str(path), "--labeller", "gpu4pyscf",
                                      "--basis", "sto-3g", "--no-progress"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "qptbench[gpu]" in lines[0], result.output
    assert snapshot(tmp_path) == before

    from qptbench.harness import make_config

    with pytest.raises(InputError, match=r"qptbench\[gpu\]"):  # a run stops before sampling
        make_config("smoke", labeller="gpu4pyscf")


def test_gpu4pyscf_without_cuda_device_refused(tmp_path, monkeypatch):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "gpu4pyscf", types.ModuleType("gpu4pyscf"))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    path = water_file(tmp_path / "w.h5")
    with pytest.raises(InputError, match=r"no usable CUDA device.*cudaErrorNoDevice"):
        label_dataset(path, LEVEL, progress=False, labeller="gpu4pyscf")
    with pytest.raises(InputError, match="unknown labeller 'cuda'"):
        label_dataset(path, LEVEL, progress=False, labeller="cuda")
    assert not journal.journal_dir(path).exists()


# --- the record --------------------------------------------------------------------------------

def test_labeller_recorded_in_store_labels_and_ledger(tmp_path):
    from qptbench.harness import HarnessConfig, _label
    from qptbench.ledger import Ledger, read_ledger

    path = water_file(tmp_path / "w.h5")
    with Dataset.open(path) as ds:
        assert ds.labeller is None  # nothing labelled yet
    cfg = HarnessConfig(methods=(), basis="sto-3g", grid_level=0, label_workers=1)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    _label(cfg, path, ledger, False, lambda text: None)
    with Dataset.open(path) as ds:
        assert len(ds.labelled()) == 2
        assert ds.labeller == "pyscf"
        assert ds.attrs and ds._labels.attrs["labeller"] == "pyscf"
        assert {ds.label(i).labeller for i in range(2)} == {"pyscf"}
    (entry,) = [e for e in read_ledger(ledger.path) if e["phase"] == "reference"]
    assert entry["labeller"] == "pyscf" and entry["summary"].endswith("process pool, pyscf)")
    summary = label_dataset(path, LEVEL, workers=1, progress=False)
    assert summary.as_dict()["labeller"] == "pyscf" and summary.n_skipped == 2


def test_resume_with_the_other_labeller_refused(tmp_path):
    """A file begun on the GPU is not finished on the CPU (nor the other way round)."""
    path = water_file(tmp_path / "w.h5")
    failed = dict(energy=np.nan, wall_seconds=0.5, cpu_seconds=0.1, n_occ=-1, cycles=-1,
                  threads=1, host="gpu-node", pyscf_version="gpu4pyscf x", reason="test",
                  labeller="gpu4pyscf")
    journal.commit(path, 0, FAILED, LEVEL, failed)
    journal.fold(path)
    with Dataset.open(path) as ds:
        assert ds.labeller == "gpu4pyscf"
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="labelled with --labeller gpu4pyscf"):
        label_dataset(path, LEVEL, workers=1, progress=False, labeller="pyscf")
    assert snapshot(tmp_path) == before
    journal.commit(path, 1, FAILED, LEVEL, {**failed, "labeller": "pyscf"})
    with pytest.raises(InputError, match="labelled with pyscf, the file with gpu4pyscf"):
        journal.fold(path)


# --- GPU4PySCF's settings, through a fake module -------------------------------------------------

@pytest.fixture
def fake_gpu4pyscf(monkeypatch):
    """gpu4pyscf.dft backed by PySCF's CPU RKS, whose defaults are set unlike PySCF's: any level
    setting ``make_gpu_rks`` fails to pass shows up in the attributes and in the energy."""
    from pyscf.dft import gen_grid, radi, rks

    calls = {}

    class FakeRKS(rks.RKS):
        def __init__(self, mol, xc="LDA,VWN"):
            super().__init__(mol, xc=xc)
            calls["xc"] = xc
            self.grids.level = 9
            self.grids.prune = None
            self.grids.radi_method = radi.gauss_chebyshev
            self.small_rho_cutoff = 1e-5
            self.direct_scf_tol = 1e-6
            self.conv_tol = 1e-3
            self.max_cycle = 2

        def density_fit(self, auxbasis=None, with_df=None, only_dfj=False):
            calls["density_fit"] = dict(auxbasis=auxbasis, only_dfj=only_dfj)
            return super().density_fit(auxbasis=auxbasis)

    dft = types.ModuleType("gpu4pyscf.dft")
    dft.RKS, dft.gen_grid, dft.radi = FakeRKS, gen_grid, radi
    package = types.ModuleType("gpu4pyscf")
    package.__version__, package.dft = "0.0-fake", dft
    monkeypatch.setitem(sys.modules, "gpu4pyscf", package)
    monkeypatch.setitem(sys.modules, "gpu4pyscf.dft", dft)
    return calls


def test_gpu_rks_receives_our_level(fake_gpu4pyscf):
    from pyscf.dft import gen_grid, radi
    from pyscf.scf import hf

    from qptbench.dft.labels_gpu import make_gpu_rks

    level = LevelOfTheory(basis="6-31g", xc="b3lyp5", grid_level=2)
    mf = make_gpu_rks(Molecule.builtin("water"), level, conv_tol=1e-9, max_cycle=57)
    assert fake_gpu4pyscf["xc"] == "b3lyp5" and mf.xc == "b3lyp5"
    assert mf.mol.basis == "6-31g"
    assert mf.grids.level == 2
    assert mf.grids.prune is gen_grid.nwchem_prune
    assert mf.grids.radi_method is radi.treutler
    assert mf.grids.radii_adjust is radi.treutler_atomic_radii_adjust
    assert mf.grids.becke_scheme is gen_grid.original_becke
    assert mf.small_rho_cutoff == 0
    assert mf.direct_scf_tol == hf.SCF.direct_scf_tol == 1e-13
    assert (mf.conv_tol, mf.conv_tol_grad, mf.max_cycle) == (1e-9, None, 57)
    assert "density_fit" not in fake_gpu4pyscf  # dense level: no fitting by default

    df = LevelOfTheory(basis="sto-3g", grid_level=1, eri="df", auxbasis="def2-svp-jkfit")
    mf = make_gpu_rks(Molecule.builtin("water"), df)
    assert fake_gpu4pyscf["density_fit"] == dict(auxbasis="def2-svp-jkfit", only_dfj=False)
    assert mf.with_df.auxbasis == "def2-svp-jkfit"


def test_gpu_labels_equal_pyscf_labels_in_form_and_value(fake_gpu4pyscf):
    """Through the fake (PySCF underneath), the GPU path's label equals pyscf_rks's: so every
    level setting reached the object (its odd defaults would move E by far more than 1e-9)."""
    from qptbench.dft.labels import pyscf_rks
    from qptbench.dft.labels_gpu import gpu4pyscf_rks

    mol = Molecule.builtin("water").displaced(3, scale=0.05)
    level = LevelOfTheory(basis="sto-3g", grid_level=1)
    gpu, cpu = gpu4pyscf_rks(mol, level, conv_tol=1e-11), pyscf_rks(mol, level, conv_tol=1e-11)
    assert gpu.converged and not gpu.failure
    assert gpu.energy == pytest.approx(cpu.energy, abs=1e-9)
    for got, want in ((gpu.fock, cpu.fock), (gpu.overlap, cpu.overlap),
                      (gpu.mo_energy, cpu.mo_energy)):
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-7)
    assert gpu.pyscf_version.startswith("gpu4pyscf 0.0-fake (pyscf ")
    assert gpu.n_occ == cpu.n_occ == 5 and gpu.cycles > 0 and gpu.seconds > 0


def test_levels_gpu4pyscf_cannot_match_are_refused():
    from qptbench.dft.labels_gpu import check_gpu_level

    with pytest.raises(InputError, match="no dense-ERI threshold"):
        check_gpu_level(LevelOfTheory(eri_threshold=1e-10))
    with pytest.raises(InputError, match="dispersion or VV10"):
        check_gpu_level(LevelOfTheory(xc="wb97m-v"))
    check_gpu_level(LevelOfTheory(eri="df"))  # density fitting itself is matched
