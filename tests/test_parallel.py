"""``qptbench run --nproc N``: a method's training spread over N spawned processes
(methods/parallel.py), the ledger booking the whole parallel phase, and the refusals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from parallel_fake import CONFIG, OneStep, item, loss, make_model
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.errors import InputError
from qptbench.ledger import Ledger, read_ledger
from qptbench.methods import MethodContext
from qptbench.methods.parallel import BOOKED_AS, check_nproc, train_parallel
from qptbench.training.loop import train

CPU = torch.device("cpu")


def _context(tmp_path: Path) -> MethodContext:
    ledger = Ledger(tmp_path / "ledger.jsonl", "cpu", method="one-step", seed=0, world_size=2)
    return MethodContext(tmp_path / "m", tmp_path / "none.h5", "water", 0, CPU, ledger, None,
                         {}, progress=False)


def test_two_processes_train_one_mean_step_and_book_the_whole_phase(tmp_path):
    ctx = _context(tmp_path)
    tic = time.perf_counter()
    train_parallel(OneStep(), ctx, None, 2, cores=2)
    outside = time.perf_counter() - tic
    model = make_model()

    def mean_loss(net, batch):
        return sum(loss(net, x)[0] for x in batch) / len(batch), {}

    train(model, mean_loss, [(item(0), item(1))], CONFIG, tmp_path / "single", progress=False)
    for rank in (0, 1):
        got = torch.load(ctx.out / f"rank{rank}.pt", weights_only=True)
        for n, p in model.named_parameters():
            assert float((got[n] - p.detach()).abs().max()) <= 1e-12, (rank, n)
    entries = read_ledger(ctx.ledger.path)
    assert all(e["world_size"] == 2 and e["method"] == "one-step" for e in entries)
    loop, rest = entries  # rank 0's training entry, then what it does not cover
    assert len(loop["rank_wall_seconds"]) == 2 and rest["what"] == BOOKED_AS
    # the route is charged the wall-clock of the whole phase: process start-up included
    total = loop["wall_seconds"] + rest["wall_seconds"]
    assert rest["wall_seconds"] > 0 and outside - 0.5 <= total <= outside


@pytest.mark.slow  # another spawn of two processes: ~10 s on 2 cores
def test_a_rank_refusing_is_one_line(tmp_path):
    with pytest.raises(InputError, match=r"^rank 1 refuses$"):
        train_parallel(OneStep(refuse_on=1), _context(tmp_path), None, 2, cores=2)


def test_nproc_checks():
    with pytest.raises(InputError, match="--nproc must be at least 1"):
        check_nproc(0, CPU, 4)
    with pytest.raises(InputError, match="more than the 2 cores"):
        check_nproc(3, CPU, 2)
    check_nproc(2, CPU, 2)


def test_run_refuses_bad_nproc_before_any_work(tmp_path):
    out = tmp_path / "run"
    for n, message in (("0", "--nproc must be at least 1"), ("100000", "cores available")):
        result = CliRunner().invoke(app, ["run", "--nproc", n, "--out", str(out)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()


def test_run_passes_nproc_and_labeller_to_the_harness(monkeypatch, tmp_path):
    from qptbench import harness

    seen = {}
    monkeypatch.setattr(harness, "run", lambda cfg, *a, **k: seen.setdefault("cfg", cfg) and "")
    result = CliRunner().invoke(app, ["run", "--nproc", "2", "--labeller", "pyscf", "--out",
                                      str(tmp_path / "run"), "--memory-limit-gb", "1000"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].nproc == 2 and seen["cfg"].labeller == "pyscf"
    assert harness.make_config("smoke").nproc == 1  # the default: one process, as before


def test_the_evaluator_travels_without_its_pyscf_timers():
    """The ranks get the harness's evaluator by pickling; after a scoring with SCF runs it
    holds PySCF objects (a DF-RKS class made at run time) that do not pickle."""
    import pickle

    from qptbench.dft.geometry import Molecule
    from qptbench.dft.level import LevelOfTheory
    from qptbench.evaluation.evaluator import Evaluator
    from qptbench.evaluation.references import from_pyscf
    from qptbench.evaluation.scf_speedup import SCFTimer

    level = LevelOfTheory(basis="sto-3g", grid_level=1, eri="df")
    water = Molecule.builtin("water")
    evaluator = Evaluator(from_pyscf([water], level), level, CPU, scf_molecules=1)
    evaluator._timers = [SCFTimer(water, level)]
    with pytest.raises(Exception):  # noqa: B017 (whatever pickle raises for it)
        pickle.dumps(evaluator._timers)
    copy = pickle.loads(pickle.dumps(evaluator))
    assert copy._timers is None and evaluator._timers is not None
    assert copy.floor_mev == evaluator.floor_mev


@pytest.mark.slow  # minutes on 2 cores: MD, labels, two routes on 2 processes each
def test_run_with_two_processes_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--preset", "smoke", "--n-train", "2", "--n-val", "1", "--methods",
            "qpt,qhnet", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--nproc", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "results.csv").exists()
    entries = read_ledger(out / "ledger.jsonl")
    for name in ("qpt:energy", "qhnet:labels"):
        trained = [e for e in entries if e["phase"] == "train" and e["method"] == name]
        assert [e.get("what") for e in trained] == [None, BOOKED_AS], name
        assert all(e["world_size"] == 2 for e in trained)
        assert len(trained[0]["rank_wall_seconds"]) == 2
    again = CliRunner().invoke(app, [*args, "--resume"])  # --nproc 1 now
    assert again.exit_code == 2 and "written with other settings" in again.output
