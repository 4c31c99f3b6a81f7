"""The asv suite stays runnable: every benchmark module imports, and one water case of every
benchmark method runs (times are not checked; speed is measured by asv, never asserted)."""

from __future__ import annotations

import importlib
import inspect
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


@pytest.mark.parametrize("cls", list(_classes()), ids=lambda c: c.__name__)
def test_one_water_case_of_every_benchmark(cls, cache):
    params = tuple(values[0] for values in cls.params)  # water, cpu, first schedule
    assert params[0] == "water"
    bench = cls()
    args = (cache, *params) if hasattr(cls, "setup_cache") else params
    if hasattr(bench, "setup"):
        bench.setup(*args)
    methods = [m for m in dir(bench)
               if m.startswith(("time_", "peakmem_", "track_")) and m not in SLOW]
    assert methods
    for method in methods:
        value = getattr(bench, method)(*args)
        if method.startswith("track_"):
            assert value > 0, method


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
