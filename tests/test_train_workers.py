"""CPU booked by the training loop includes its DataLoader workers (joined before booking)."""

import os
import time

import torch
from torch import nn

from qptbench.data.stream import WindowedStream
from qptbench.ledger import Ledger, read_ledger
from qptbench.training.loop import TrainConfig, train


def _source(i):
    return i


def _busy_prepare(i):
    """0.1 s of worker CPU per molecule."""
    t = time.process_time()
    while time.process_time() - t < 0.1:
        pass
    g = torch.Generator().manual_seed(i)
    x = torch.randn(4, 3, generator=g)
    return x, x.sum(-1)


def _mse(model, batch):
    x, y = batch
    loss = ((model(x).squeeze(-1) - y) ** 2).mean()
    return loss, {"loss": loss.item()}


def test_booked_cpu_includes_dataloader_workers(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    stream = WindowedStream(_source, _busy_prepare, window=1, workers=1)
    before = os.times()
    train(nn.Linear(3, 1), _mse, stream, TrainConfig(steps=4, log_every=1), tmp_path,
          ledger=ledger, progress=False)
    after = os.times()
    children = (after.children_user + after.children_system
                - before.children_user - before.children_system)
    assert children >= 0.3  # 4 molecules (+ prefetched ones) prepared in the worker, joined
    (booked,) = [e for e in read_ledger(tmp_path / "ledger.jsonl") if e["phase"] == "train"]
    assert booked["cpu_seconds"] >= children
