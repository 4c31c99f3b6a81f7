"""Data-parallel training under torchrun (2 CPU processes, gloo): one step with one molecule
per rank equals one single-process step on the mean loss of the two molecules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from ddp_one_step import CONFIG, CPU, make_model, prepared, weights_and_grads
from torchrun_two import torchrun_two

from qptbench.errors import InputError
from qptbench.training.distributed import RANK_SEED_STRIDE, World, rank_seed
from qptbench.training.loop import train
from qptbench.training.signals import SignalLoss

HERE = Path(__file__).resolve().parent


def _torchrun(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return torchrun_two(args, timeout)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    proc = _torchrun([str(HERE / "ddp_one_step.py"), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _one_step(samples: tuple, out: Path) -> tuple[dict, dict]:
    """One single-process step on the mean loss of ``samples``: (weights and grads, its log)."""
    loss = SignalLoss("energy", CPU)

    def mean_loss(model, batch):
        losses = [loss(model, item)[0] for item in batch]
        return sum(losses) / len(losses), {}

    model = make_model()
    train(model, mean_loss, [samples], CONFIG, out, progress=False)
    log = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    return weights_and_grads(model), log


def test_two_ranks_take_the_mean_loss_step(ddp_run, tmp_path):
    start = {n: p.detach() for n, p in make_model().named_parameters()}
    both, log = _one_step((prepared(0), prepared(1)), tmp_path / "mean")
    alone, _ = _one_step((prepared(0),), tmp_path / "alone")
    ranks = [torch.load(ddp_run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    moved = max(float((p - start[n]).abs().max()) for n, p in both["params"].items())
    assert moved > 1e-4  # the step did something
    # the witness: rank 0's molecule alone gives another gradient, so averaging is visible
    assert max(float((g - both["grads"][n]).abs().max())
               for n, g in alone["grads"].items()) > 1e-6
    for rank in ranks:
        assert rank["params"].keys() == both["params"].keys()
        assert rank["grads"].keys() == both["grads"].keys()
        for n, p in both["params"].items():
            assert float((rank["params"][n] - p).abs().max()) <= 1e-10, n
            assert float((rank["grads"][n] - both["grads"][n]).abs().max()) <= 1e-10, n
    # the gradient norm before clipping (clipping and Adam would hide a sum instead of a mean)
    rows = (ddp_run / "run" / "train.jsonl").read_text().splitlines()
    assert len(rows) == 1  # rank 0 alone logs
    assert json.loads(rows[0])["grad_norm"] == pytest.approx(log["grad_norm"], rel=1e-10)


def test_resume_on_another_world_size_is_refused(ddp_run, tmp_path):
    run = shutil.copytree(ddp_run / "run", tmp_path / "run")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["world_size"] == 2
    more = replace(CONFIG, steps=2)
    with pytest.raises(InputError, match=r"trained on 2 process\(es\); resume it with the same "
                       r"number \(torchrun --nproc-per-node 2\), not 1"):
        train(make_model(), SignalLoss("energy", CPU), [prepared(0)] * 2, more, run,
              resume=True, progress=False)


def test_ranks_skip_together_and_stop_together_on_a_budget(tmp_path):
    """Rank 1 skips its first molecule and is slower; the budget is rank 0's clock.  Without
    the collective skip or the shared stop, one rank would wait in an all-reduce the other
    never reaches (the subprocess timeout would end the test)."""
    proc = _torchrun([str(HERE / "ddp_one_step.py"), str(tmp_path), "budget"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"budget{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] >= 2
    assert ranks[0]["skipped"] == ranks[1]["skipped"] == 1
    for n, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][n]), n
    first = json.loads((tmp_path / "budget" / "train.jsonl").read_text().splitlines()[0])
    assert first["skipped"] and first["skip_reason"] == "another rank skipped its micro-batch"


def test_single_process_checkpoints_say_one(tmp_path):
    _one_step((prepared(0),), tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["world_size"] == 1


def test_each_rank_draws_its_own_conformations():
    from qptbench.training.qpt import make_config
    from qptbench.training.qpt_sources import make_source

    cfg = make_config("smoke")
    first = [make_source(replace(cfg, seed=rank_seed(cfg.seed, World(r, 2))), stream=0)(0)
             for r in (0, 1)]
    assert rank_seed(cfg.seed, World(0, 2)) == cfg.seed  # rank 0 draws a plain run's molecules
    assert (first[0].positions == make_source(cfg, stream=0)(0).positions).all()
    assert abs(first[0].positions - first[1].positions).max() > 1e-3
    assert rank_seed(5, World(3, 4)) == 5 + 3 * RANK_SEED_STRIDE


@pytest.mark.slow  # about a minute on 2 cores: PySCF references, evaluation, inference timing
def test_train_qpt_under_torchrun(tmp_path):
    from qptbench.ledger import read_ledger

    out = tmp_path / "run"
    args = ["train-qpt", "--preset", "smoke", "--steps", "2", "--basis", "sto-3g", "--n-val",
            "1", "--device", "cpu", "--out", str(out)]
    proc = _torchrun(["-m", "qptbench", *args], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("validation after 2 steps") == 1  # rank 0 alone reports
    entries = read_ledger(out / "ledger.jsonl")
    assert entries and all(e["world_size"] == 2 for e in entries)
    trained = [e for e in entries if e["phase"] == "train"]
    assert len(trained[-1]["rank_wall_seconds"]) == 2
    assert len((out / "train.jsonl").read_text().splitlines()) == 1  # smoke logs every 10 steps
    again = subprocess.run([sys.executable, "-m", "qptbench", *args[:4], "3", *args[5:],
                            "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    last = again.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "trained on 2 process(es); resume it with the same " \
        "number (torchrun --nproc-per-node 2), not 1" in last
