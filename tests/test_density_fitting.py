"""Density fitting as a level of theory: our DF energy, Fock, SCF and gradients against PySCF's
DF-RKS, DF against dense, and the level's validation and compatibility with saved levels."""

from __future__ import annotations

import functools
import json

import h5py
import numpy as np
import pytest
import torch
from conftest import random_symmetric
from typer.testing import CliRunner

from qptbench.data import journal
from qptbench.data.splits import make_splits
from qptbench.data.store import Dataset, create_dataset
from qptbench.dft.density import aufbau_density
from qptbench.dft.energy import energy, energy_and_fock, fock, total_energy
from qptbench.dft.geometry import Molecule
from qptbench.dft.labels import make_rks, pyscf_rks
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.scf import run_scf
from qptbench.dft.tensors import build_auxmol, build_mole, build_tensors
from qptbench.errors import InputError
from qptbench.evaluation.references import from_dataset


def _methane() -> Molecule:
    d = 1.087 / 3**0.5
    pos = [[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]]
    return Molecule.from_arrays(["C", "H", "H", "H", "H"], pos, name="methane")


MOLECULES = {"water": Molecule.builtin("water").displaced(5, scale=0.05),
             "methane": _methane().displaced(6, scale=0.05)}
# (molecule, basis, functional, grid level): both molecules, both bases, a hybrid and a GGA
CASES = [("water", "sto-3g", "b3lyp5", 1), ("water", "6-31g", "pbe", 2),
         ("methane", "6-31g", "b3lyp5", 1), ("methane", "sto-3g", "pbe", 2)]


def _name(case: tuple) -> str:
    return "-".join(map(str, case))


@functools.lru_cache(maxsize=8)
def _tensors(name: str, basis: str, xc: str, grid_level: int, eri: str = "df"):
    level = LevelOfTheory(basis=basis, xc=xc, grid_level=grid_level, eri=eri)
    return MOLECULES[name], level, build_tensors(MOLECULES[name], level)


def _mixed_density(t) -> torch.Tensor:
    """Half and half of two aufbau densities of randomly disturbed minao Fock matrices: symmetric,
    not idempotent, as the sandwich's mixed iterations make them."""
    with torch.no_grad():
        h0 = fock(t, t.dm_minao)
        d1, d2 = (aufbau_density(h0 + random_symmetric(t.n_ao, seed, 0.05), t.l_inv, t.n_occ)
                  for seed in (7, 8))
    dm = 0.5 * (d1 + d2)
    assert float((dm @ t.overlap @ dm - 2 * dm).abs().max()) > 1e-3  # really not idempotent
    return dm


@pytest.mark.parametrize("case", CASES, ids=_name)
def test_df_energy_and_fock_match_pyscf_df(case):
    mol, level, t = _tensors(*case)
    assert t.eri is None and t.df_b is not None
    n_aux = build_auxmol(build_mole(mol, level.basis), level.auxbasis).nao
    assert t.df_b.shape == (n_aux, t.n_ao, t.n_ao) and n_aux > t.n_ao
    mf = make_rks(mol, level)
    assert mf.with_df.auxbasis == "def2-universal-jkfit"  # PySCF fits too, with the same basis
    dm = _mixed_density(t)
    e, f = energy_and_fock(t, dm)
    e_ref = mf.energy_tot(dm=dm.numpy())
    assert abs(float(e) - e_ref) <= 1e-9, float(e) - e_ref
    assert np.abs(f.numpy() - mf.get_fock(dm=dm.numpy())).max() <= 1e-8
    assert float(total_energy(t, dm)) == pytest.approx(float(e), abs=1e-12)


@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=_name)
def test_df_scf_matches_pyscf_df_scf(case):
    mol, level, t = _tensors(*case)
    ours = run_scf(t, conv_tol=1e-10)
    ref = pyscf_rks(mol, level, conv_tol=1e-10)
    assert ours.converged and ref.converged
    assert abs(ours.energy - ref.energy) <= 1e-7, ours.energy - ref.energy


def _fd(t, h0, v, mixes, step):
    with torch.no_grad():
        return (energy(t, h0 + step * v, mixes) - energy(t, h0 - step * v, mixes)) / (2 * step)


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=_name)
def test_df_sandwich_gradient_matches_finite_differences(case):
    """dE/dH through one mixed iteration: autograd differentiates F(D) through the fitted J/K."""
    _, _, t = _tensors(*case)
    with torch.no_grad():
        h0 = fock(t, t.dm_minao) + random_symmetric(t.n_ao, 5, scale=0.01)
    mixes = (0.5,)
    h = h0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(t, h, mixes), h)
    for v in (grad / grad.norm(), random_symmetric(t.n_ao, 9)):
        v = v / v.norm()
        step = 2e-4
        fd = (4 * _fd(t, h0, v, mixes, step / 2) - _fd(t, h0, v, mixes, step)) / 3  # Richardson
        analytic = float((grad * v).sum())
        assert abs(analytic - float(fd)) <= 1e-6 * abs(float(fd)) + 1e-9, (analytic, float(fd))


@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=_name)
def test_df_differs_from_dense_by_a_small_fitting_error(case):
    """Proves DF was really used, and that it fits well: 1e-7 < |E_df − E_dense| < 1e-2 Ha."""
    _, _, t_df = _tensors(*case)
    _, _, t_dense = _tensors(*case, eri="dense")
    assert t_dense.df_b is None and t_dense.eri is not None
    dm = _mixed_density(t_dense)
    e_df, f_df = energy_and_fock(t_df, dm)
    e_dense, f_dense = energy_and_fock(t_dense, dm)
    assert 1e-7 < abs(float(e_df - e_dense)) < 1e-2, float(e_df - e_dense)
    assert 0 < float((f_df - f_dense).abs().max()) < 1e-2


def test_dense_path_is_plain_rks_still():
    mol, level, t = _tensors("water", "sto-3g", "b3lyp5", 1, eri="dense")
    mf = make_rks(mol, level)
    assert getattr(mf, "with_df", None) is None  # plain RKS, exact integrals
    dm = _mixed_density(t)
    e, f = energy_and_fock(t, dm)
    assert abs(float(e) - mf.energy_tot(dm=dm.numpy())) <= 1e-9
    assert np.abs(f.numpy() - mf.get_fock(dm=dm.numpy())).max() <= 1e-8


def test_df_factor_is_pyscfs_cholesky_and_its_lindep_fallback_fits_the_same(monkeypatch):
    """B is PySCF's own whitened 3-index tensor (``incore.cholesky_eri``, unpacked); when the
    Cholesky of (P|Q) fails, the eigenvector whitening gives other B but the same fitted
    (μν|λσ) = Σ_Q B_Qμν B_Qλσ."""
    import scipy.linalg
    from pyscf import lib
    from pyscf.df import incore

    from qptbench.dft.density_fitting import df_factor

    mol = build_mole(MOLECULES["methane"], "6-31g")
    aux = build_auxmol(mol, "def2-universal-jkfit")
    b = df_factor(mol, aux)
    assert b.flags.c_contiguous and np.array_equal(b, b.transpose(0, 2, 1))
    np.testing.assert_allclose(b, lib.unpack_tril(incore.cholesky_eri(mol, auxmol=aux)),
                               rtol=0, atol=1e-12)

    def refuse(*args, **kwargs):
        raise scipy.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(scipy.linalg, "cholesky", refuse)
    b_eig = df_factor(mol, aux)
    assert np.abs(b_eig - b).max() > 1e-3  # really the other whitening
    n = mol.nao
    fitted = b.reshape(len(b), n * n).T @ b.reshape(len(b), n * n)
    fitted_eig = b_eig.reshape(len(b_eig), n * n).T @ b_eig.reshape(len(b_eig), n * n)
    np.testing.assert_allclose(fitted_eig, fitted, rtol=0, atol=1e-9)


def test_df_tensors_serve_the_qpt_inputs():
    from qptbench.models.qpt_inputs import dft_biases

    _, _, t = _tensors("water", "sto-3g", "b3lyp5", 1)
    biases, h_init = dft_biases(t, torch.zeros(t.n_ao, 3))
    assert torch.isfinite(biases).all()
    assert torch.equal(h_init, fock(t, t.dm_minao))


def test_level_validation_and_old_levels():
    for bad in ("ri", "", "dense-ish"):
        with pytest.raises(InputError, match="eri must be one of dense, df") as err:
            LevelOfTheory(eri=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="dense ERIs only"):
        LevelOfTheory(eri="df", eri_threshold=1e-8)
    level = LevelOfTheory(eri="DF", auxbasis="Def2-Universal-JKFIT")
    assert (level.eri, level.auxbasis) == ("df", "def2-universal-jkfit")
    assert {"eri": "df", "auxbasis": "def2-universal-jkfit"}.items() <= level.as_dict().items()
    # a level saved before eri/auxbasis existed loads as the dense level it was
    old = {"basis": "def2-svp", "xc": "b3lyp5", "grid_level": 3, "eri_threshold": 0.0}
    assert LevelOfTheory(**old) == LevelOfTheory()
    assert LevelOfTheory(**old) != LevelOfTheory(eri="df")


def test_unknown_auxbasis_is_one_line():
    level = LevelOfTheory(basis="sto-3g", grid_level=0, eri="df", auxbasis="no-such-fit")
    for build in (build_tensors, make_rks):
        with pytest.raises(InputError, match="unknown auxiliary basis set 'no-such-fit'"):
            build(MOLECULES["water"], level)


def test_label_store_from_before_eri_accepts_dense_refuses_df(tmp_path):
    """A file whose stored level has no eri/auxbasis keys is dense: new dense labels fold in,
    DF labels are refused (one store, one level)."""
    confs = [MOLECULES["water"].displaced(k, 0.02) for k in range(3)]
    path = create_dataset(tmp_path / "w.h5", confs, sampler={"kind": "test"},
                          splits=make_splits(3, 1, 1, seed=0), split_seed=0, split_rule="given")
    rng = np.random.default_rng(0)

    def label(i, level):
        a = rng.normal(size=(4, 4))
        journal.commit(path, i, 1, level, dict(
            energy=-1.0, fock=a + a.T, overlap=np.eye(4), mo_energy=np.arange(4.0), n_occ=2,
            cycles=5, converged=True, wall_seconds=1.0, cpu_seconds=1.0, threads=1, host="h",
            pyscf_version="v", reason=""))

    label(0, LevelOfTheory())
    journal.fold(path)
    old = {"basis": "def2-svp", "xc": "b3lyp5", "grid_level": 3, "eri_threshold": 0.0}
    with h5py.File(path, "r+") as f:
        f["labels"].attrs["level"] = json.dumps(old)  # as written before eri existed
    label(1, LevelOfTheory())
    journal.fold(path)
    with Dataset.open(path) as ds:
        assert ds.level == LevelOfTheory() and len(ds.labelled()) == 2
    label(2, LevelOfTheory(eri="df"))
    with pytest.raises(InputError, match="labelled at"):
        journal.fold(path)
    # references for a run: a file at another level is refused, in one line
    (journal.journal_dir(path) / f"{2:09d}.npz").unlink()  # drop the refused DF label
    assert from_dataset(path, "val", level=LevelOfTheory())
    with pytest.raises(InputError, match="this run is at") as err:
        from_dataset(path, "val", level=LevelOfTheory(eri="df"))
    assert "\n" not in str(err.value)


def test_cli_scf_with_density_fitting(tmp_path, monkeypatch):
    from qptbench.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["scf", "-m", "water", "--basis", "sto-3g", "--grid-level", "1",
                                 "--eri", "df", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["level_of_theory"]["eri"] == "df" and out["n_aux"] > out["n_ao"]
    assert out["converged"] and out["abs_diff_hartree"] < 1e-7
    bad = runner.invoke(app, ["scf", "-m", "water", "--eri", "ri"])
    assert bad.exit_code == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "eri must be one of dense, df" in lines[0]
    for command in (["scf"], ["label"]):
        text = " ".join(runner.invoke(app, [*command, "--help"]).stdout.split())
        assert "--eri" in text and "--auxbasis" in text and "1e-5 Ha" in text


def test_run_and_train_qpt_carry_the_level():
    """`run` records the level (run.json: level_of_theory and config) and hands it to every
    QPT method; `train-qpt` builds its tensors at it; a bad value stops both in one line."""
    from dataclasses import asdict
    from types import SimpleNamespace

    from qptbench import harness
    from qptbench.cli import app
    from qptbench.methods import make_method
    from qptbench.training import qpt as tq

    cfg = harness.make_config("smoke", eri="df")
    assert cfg.level().as_dict()["eri"] == "df" and asdict(cfg)["eri"] == "df"
    # smoke is density-fitted (it must fit a laptop), small and paper exact unless asked
    assert harness.make_config("smoke").level().is_df
    assert not harness.make_config("smoke", eri="dense").level().is_df
    assert not harness.make_config("small").level().is_df
    ctx = SimpleNamespace(settings=asdict(cfg), molecule="water", dataset="w.h5", seed=0)
    assert make_method("qpt:energy")._config(ctx).level() == cfg.level()
    assert tq.make_config("smoke", eri="df").level().is_df
    for make in (harness.make_config, tq.make_config):
        with pytest.raises(InputError, match="eri must be one of dense, df"):
            make("smoke", eri="ri")
    runner = CliRunner()
    for command in (["run"], ["train-qpt"]):
        bad = runner.invoke(app, [*command, "--preset", "smoke", "--eri", "ri"])
        lines = bad.stderr.strip().splitlines()
        assert bad.exit_code == 2 and len(lines) == 1 and "eri must be one of" in lines[0]


@pytest.mark.parametrize(("name", "basis"), [("water", "def2-svp"), ("methane", "6-31g")])
def test_exchange_through_a_factor_of_d_matches_pyscf_df(name, basis):
    """K through D's eigenvectors (densities without grad) and through D itself (with grad),
    each against PySCF's DF get_jk: an aufbau density (rank N_occ), a mixed one (2 N_occ) and
    an indefinite difference of two (the factor keeps the negative eigenvalues)."""
    from qptbench.dft.density_fitting import df_coulomb_exchange, low_rank_factor

    mol, level, t = _tensors(name, basis, "b3lyp5", 1)
    mf = make_rks(mol, level)
    with torch.no_grad():
        h0 = fock(t, t.dm_minao)
        d1, d2 = (aufbau_density(h0 + random_symmetric(t.n_ao, seed, 0.05), t.l_inv, t.n_occ)
                  for seed in (3, 4))
    assert 2 * t.n_occ <= 0.6 * t.n_ao  # every density below goes through its factor
    for dm, rank in ((d1, t.n_occ), (0.5 * (d1 + d2), 2 * t.n_occ), (d1 - d2, 2 * t.n_occ)):
        vecs, vals = low_rank_factor(dm)
        assert vecs.shape[1] == rank and vals.abs().min() > 1e-6
        j_ref, k_ref = mf.with_df.get_jk(dm.numpy(), hermi=1)
        for d in (dm, dm.clone().requires_grad_(True)):   # factor path, then the full product
            j, k = df_coulomb_exchange(t.df_b, d)
            assert np.abs(j.detach().numpy() - j_ref).max() <= 1e-10
            assert np.abs(k.detach().numpy() - k_ref).max() <= 1e-10
    assert (low_rank_factor(d1 - d2)[1] < 0).any()


def test_exchange_backward_is_k_of_the_gradient():
    """The differentiable K (its backward is K applied to the incoming gradient) against finite
    differences, and the sandwich gradient at DF against finite differences through it."""
    from qptbench.dft.density_fitting import df_coulomb_exchange

    _, _, t = _tensors("water", "6-31g", "pbe", 2)
    s = random_symmetric(t.n_ao, 9, 0.3).requires_grad_(True)

    def exchange(x):
        return df_coulomb_exchange(t.df_b, 0.5 * (x + x.mT))[1]

    assert torch.autograd.gradcheck(exchange, (s,), eps=1e-6, atol=1e-8, rtol=1e-6)
    # through the factor path: an aufbau density of rank N_occ <= 0.6 N, mixed in the sandwich
    h0 = fock(t, t.dm_minao).detach()
    step = random_symmetric(t.n_ao, 10, 1e-3)
    h = h0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(t, h, (0.5, 0.0)), h)

    def central(eps: float) -> float:
        with torch.no_grad():
            return float(energy(t, h0 + eps * step, (0.5, 0.0))
                         - energy(t, h0 - eps * step, (0.5, 0.0))) / (2 * eps)

    fd = (4 * central(1e-3) - central(2e-3)) / 3
    assert float((grad * step).sum()) == pytest.approx(fd, rel=1e-6)
