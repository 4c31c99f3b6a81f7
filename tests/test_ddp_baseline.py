"""The QHNet baseline data-parallel under torchrun (2 CPU processes, gloo, float64): one step
with one labelled molecule per rank equals one single-process step on the mean loss of the two;
rank 0 alone writes the run directory; --resume refuses another number of processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_baseline_step import CONFIG, make_labels, make_model, step, weights
from torchrun_two import torchrun_two

from qptbench.baselines.qhnet_train import make_loss_fn
from qptbench.errors import InputError
from qptbench.training.distributed import World, shard
from qptbench.training.loop import train

HERE = Path(__file__).resolve().parent


def _torchrun(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return torchrun_two(args, timeout)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "water.npz"
    return path, make_labels(path)


@pytest.fixture(scope="module")
def ddp_run(labelled, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    proc = _torchrun([str(HERE / "ddp_baseline_step.py"), str(labelled[0]), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_ranks_take_the_mean_loss_step(labelled, ddp_run, tmp_path):
    data = labelled[1]
    assert CONFIG.warmup_steps == 1 and data.fock.dtype == np.float64
    model = make_model(data)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    step(model, data, tmp_path / "both")  # the tiny preset's batch of 4 takes both labels
    both = weights(model)
    model.load_state_dict(start)
    step(model, data.subset([0]), tmp_path / "first")  # the witness: rank 0's label alone
    first = weights(model)
    ranks = [torch.load(ddp_run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    moved = max(float((p - start[n]).abs().max()) for n, p in both.items() if p.numel())
    assert moved > 1e-4  # the step did something
    assert max(float((first[n] - p).abs().max()) for n, p in both.items() if p.numel()) > 1e-6
    for rank in ranks:
        assert rank.keys() == both.keys()
        for n, p in both.items():
            assert p.dtype == torch.float64
            if p.numel():
                assert float((rank[n] - p).abs().max()) <= 1e-10, n
    # the gradient norm before clipping: a sum over the ranks instead of a mean would double it
    norms = [json.loads((d / "train.jsonl").read_text().splitlines()[0])["grad_norm"]
             for d in (ddp_run / "run", tmp_path / "both", tmp_path / "first")]
    assert norms[0] == pytest.approx(norms[1], rel=1e-10)
    assert abs(norms[2] - norms[1]) > 1e-3 * norms[1]
    assert len((ddp_run / "run" / "train.jsonl").read_text().splitlines()) == 1  # rank 0 logs


def test_resume_on_another_world_size_is_refused(ddp_run, tmp_path):
    run = shutil.copytree(ddp_run / "run", tmp_path / "run")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["world_size"] == 2
    with pytest.raises(InputError, match=r"trained on 2 process\(es\); resume it with the same "
                       r"number \(torchrun --nproc-per-node 2\), not 1"):
        # refused before any weight is read: a stand-in model will do
        train(torch.nn.Linear(1, 1), make_loss_fn(np.array([8, 1, 1])), [], CONFIG, run,
              resume=True, progress=False)


def test_shards_are_disjoint_and_cover_the_labels():
    for n, size in ((2, 2), (7, 3), (5, 1)):
        parts = [shard(n, World(r, size)) for r in range(size)]
        assert sorted(i for p in parts for i in p) == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard(7, World(1, 3)) == [1, 4]


@pytest.mark.slow  # about a minute on 2 cores: e3nn builds, evaluation, inference timing
def test_train_baseline_under_torchrun(tmp_path):
    """The command itself: a real label store, each rank its shard, rank 0 books and scores,
    a plain --resume of it is refused in one line."""
    from ddp_baseline_step import LEVEL

    from qptbench.data.labelling import label_dataset
    from qptbench.data.store import create_dataset
    from qptbench.dft.geometry import Molecule
    from qptbench.ledger import read_ledger

    store = tmp_path / "water.h5"
    molecules = [Molecule.builtin("water").displaced(k, scale=0.05) for k in range(3)]
    create_dataset(store, molecules, name="water", split_seed=0,
                   splits={"train": np.arange(2), "val": np.array([2])})
    label_dataset(store, LEVEL, workers=1, progress=False)
    out = tmp_path / "run"
    args = ["train-baseline", "--labels", str(store), "--preset", "tiny", "--steps", "1",
            "--dtype", "float64", "--n-val", "1", "--energy-molecules", "1", "--eval-every",
            "0", "--device", "cpu", "--quiet", "--out", str(out)]
    proc = _torchrun(["-m", "qptbench", *args], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"world_size": 2') == 1  # rank 0 alone prints the summary
    entries = read_ledger(out / "ledger.jsonl")
    assert entries and all(e["world_size"] == 2 for e in entries)
    trained = [e for e in entries if e["phase"] == "train"]
    assert len(trained) == 1 and len(trained[0]["rank_wall_seconds"]) == 2
    summary = json.loads((out / "result.json").read_text())
    assert summary["world_size"] == 2 and summary["n_train"] == 2 and summary["steps"] == 1
    again = subprocess.run([sys.executable, "-m", "qptbench", *args, "--steps", "2",
                            "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "trained on 2 process(es); resume it with the same number (torchrun " \
        "--nproc-per-node 2), not 1" in again.stderr.strip().splitlines()[-1]
