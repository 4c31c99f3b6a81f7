"""The asv suite stays runnable: every benchmark module imports, and one water case of every
benchmark method runs (times are not checked; speed is measured by asv, never asserted)."""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import pkgutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
common = importlib.import_module("benchmarks.common")
MODULES = [m.name for m in pkgutil.iter_modules([str(ROOT / "benchmarks")])
           if m.name.startswith("bench_")]
SLOW = {"track_ratio_with_preparation_to_pyscf_scf"}  # a whole extra PySCF SCF; covered by others
DENSE_ONLY = {"Sandwich", "EnergyMemory"}  # their DF cases run the energy's DF path again


def test_asv_config_is_plain_json_for_an_existing_env():
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    assert conf["environment_type"] == "existing" and conf["benchmark_dir"] == "benchmarks"
    assert conf["results_dir"].startswith(".asv/")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setattr(common, "MOLECULES", {"water": 24})
    best_time = common.best_time
    monkeypatch_module.setattr(common, "best_time", lambda fn, repeat=3, device="cpu":
                               best_time(fn, 1, device))  # one call is enough to smoke-test
    monkeypatch_module.chdir(tmp_path_factory.mktemp("asv-cache"))
    return common.build_all_tensors()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _classes():
    for name in MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and hasattr(cls, "params"):
                yield cls


def _cases():
    """(class, params): the first value of every parameter (water, cpu, first schedule), and
    each backend and each ERI treatment (dense, df) where a class has that parameter; DF with
    the first backend only, and not for the sandwich and the memory peak (the energy's DF path,
    already run)."""
    for cls in _classes():
        names = getattr(cls, "param_names", ())
        varied = [n for n in ("backend", "eri") if n in names]
        for values in itertools.product(*(cls.params[names.index(n)] for n in varied)):
            backend = values[0] if "backend" in varied else None
            if "df" in values and (cls.__name__ in DENSE_ONLY or backend not in (None, "torch")):
                continue
            params = [v[0] for v in cls.params]
            for name, value in zip(varied, values, strict=True):
                params[names.index(name)] = value
            yield pytest.param(cls, tuple(params), id="-".join([cls.__name__, *values]))


def _setup(cls, cache, params):
    bench = cls()
    args = (cache, *params) if hasattr(cls, "setup_cache") else params
    if hasattr(bench, "setup"):
        try:
            bench.setup(*args)
        except NotImplementedError as exc:  # asv's n/a, e.g. pyscfad not installed
            pytest.skip(str(exc))
    return bench, args


@pytest.mark.parametrize("cls, params", list(_cases()))
def test_one_water_case_of_every_benchmark(cls, params, cache):
    assert params[0] == "water"
    bench, args = _setup(cls, cache, params)
    methods = [m for m in dir(bench)
               if m.startswith(("time_", "peakmem_", "track_")) and m not in SLOW]
    assert methods
    for method in methods:
        value = getattr(bench, method)(*args)
        if method.startswith("track_"):
            assert value > 0, method


@pytest.mark.parametrize("cls_name, method, params", [
    ("Energy", "time_forward", ("water", "cpu", "jax", "dense")),
    ("Energy", "time_forward_backward", ("water", "cpu", "jax", "dense")),
    ("Sandwich", "time_forward_backward", ("water", "cpu", 3, "jax", "dense")),
])
def test_jax_benchmarks_never_recompile_per_call(cls_name, method, params, cache):
    import jax

    from qptbench.dft import jax_engine

    cls = getattr(importlib.import_module("benchmarks.bench_energy"), cls_name)
    jax.clear_caches()
    before = sum(jax_engine.TRACES.values())
    bench, args = _setup(cls, cache, params)
    assert sum(jax_engine.TRACES.values()) > before  # the counter sees setup's compilation
    timed = getattr(bench, method)
    timed(*args)
    traces = dict(jax_engine.TRACES)
    for _ in range(4):
        timed(*args)
    assert dict(jax_engine.TRACES) == traces


def test_pyscfad_peer_computes_pyscfs_energy_and_fock():
    """The peer is at our level of theory: its E(D) is PySCF's and its dE/dD, symmetrised, is
    PySCF's Fock matrix on the very same grid (PySCF's default pruning of near-empty points
    would miss by 2e-10 Ha, 1e-10 in F)."""
    pytest.importorskip("pyscfad", reason="pyscfad not installed")
    import numpy as np

    from qptbench.dft.labels import make_rks

    peer = importlib.import_module("benchmarks.pyscfad_peer")
    mol, level = common.molecule("water"), common.level()
    mf = make_rks(mol, level)
    dm = mf.get_init_guess()
    dm = dm + 0.01 * np.cos(np.add.outer(np.arange(len(dm)), np.arange(len(dm))))  # not minao
    e, grad = peer.energy_and_density_grad(mol, level)(dm)
    grad = np.asarray(grad)
    assert abs(float(e) - mf.energy_tot(dm)) < 1e-12
    assert np.abs(0.5 * (grad + grad.T) - mf.get_fock(dm=dm)).max() < 1e-12


def test_cuda_is_skipped_cleanly_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(NotImplementedError):
        common.require_device("cuda")


def test_alanine_dipeptide_is_deterministic_and_200_aos():
    from qptbench.dft.tensors import basis_layout

    a, b = common.molecule("alanine_dipeptide"), common.molecule("alanine_dipeptide")
    assert a.n_atoms == 22 and (a.positions == b.positions).all()
    assert basis_layout(a).n_ao == 200


def test_fit_exponent_reads_asv_results_and_fits_the_slope(capsys, tmp_path, monkeypatch):
    """The exponent of t = c N^p is p; an asv results file's flat value list is matched to the
    product of its parameter lists (molecule first), n/a (None) and NaN left out."""
    fit = importlib.import_module("benchmarks.fit_exponent")
    sizes = {"water": 24, "ethanol": 72, "uracil": 132, "ace_ala4_nme": 485}
    monkeypatch.setattr(common, "MOLECULES", sizes)  # the cache fixture leaves water alone
    assert abs(fit.exponent([24, 72, 132, 485], [2e-6 * n**2.5 for n in (24, 72, 132, 485)])
               - 2.5) < 1e-12
    with pytest.raises(ValueError, match="two or more"):
        fit.exponent([24, 24], [1.0, 2.0])
    names = list(sizes)
    params = [[repr(n) for n in names], ["'cpu'"], ["'dense'", "'df'"]]
    # product order: (water, dense), (water, df), (ethanol, dense), ...; dense 485 is n/a
    values = []
    for name in names:
        n = sizes[name]
        values += [None if n > 200 else 1e-8 * n**4, float("nan") if n == 72 else 3e-7 * n**3]
    data = {"result_columns": ["result", "params", "version"],
            "results": {fit.BENCHMARK: [values, params, "v"]}}
    series = fit.asv_series(data, fit.BENCHMARK, sizes)
    assert [n for n, _, _ in series[("cpu", "dense")]] == [24, 72, 132]
    assert [n for n, _, _ in series[("cpu", "df")]] == [24, 132, 485]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    fit.main([str(path)])
    out = capsys.readouterr().out
    assert "cpu, dense: exponent 4.00" in out and "cpu, df: exponent 3.00" in out
    assert "N_AO 24..485, 3 molecules" in out
