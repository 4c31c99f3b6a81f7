"""The shared training loop on a toy regression: schedule, accumulation, skips, exact resume."""

import itertools
import json

import pytest
import torch
from torch import nn

from qptbench.ledger import Ledger, read_ledger
from qptbench.train import SkipStep, TrainConfig, TrainingFailed, learning_rate, train


def _items(start: int):
    """Deterministic endless stream: item k depends only on k, so resuming can skip ahead."""
    k = start
    while True:
        g = torch.Generator().manual_seed(k)
        x = torch.randn(8, 3, generator=g)
        yield x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
        k += 1


def _mse(model, batch):
    x, y = batch
    loss = ((model(x).squeeze(-1) - y) ** 2).mean()
    return loss, {"loss": loss.item()}


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def _losses(path):
    return [json.loads(line)["loss"] for line in (path / "train.jsonl").read_text().splitlines()]


CFG = TrainConfig(steps=30, lr=0.2, min_lr=0.02, warmup_steps=5, log_every=1,
                  checkpoint_every=10, weight_decay=0.0)


def test_schedule_warms_up_then_decays():
    lrs = [learning_rate(CFG, s) for s in range(40)]
    assert lrs[0] == pytest.approx(0.04) and lrs[4] == pytest.approx(0.2)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    assert lrs[30] == lrs[39] == CFG.min_lr


def test_loss_decreases_and_ledger_books_time(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    result = train(_model(), _mse, _items, CFG, tmp_path, ledger=ledger, progress=False,
                   evaluate=lambda m, step: {"weight_error": float((m.weight - 1).abs().sum())})
    losses = _losses(tmp_path)
    assert result.step == 30 and len(losses) == 30
    assert losses[-1] < 0.1 * losses[0]
    phases = [e["phase"] for e in read_ledger(tmp_path / "ledger.jsonl")]
    assert phases == ["train", "eval"]
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 30


def test_resume_reproduces_the_loss_curve(tmp_path):
    train(_model(), _mse, _items, CFG, tmp_path / "straight", progress=False)
    half = TrainConfig(**{**CFG.__dict__})
    # Stop after 20 steps by raising from the stream, as a killed job would.
    def stream(start):
        for k, item in enumerate(_items(start)):
            if start + k == 20:
                raise KeyboardInterrupt
            yield item
    with pytest.raises(KeyboardInterrupt):
        train(_model(), _mse, stream, half, tmp_path / "resumed", progress=False)
    train(_model(seed=123), _mse, _items, half, tmp_path / "resumed", resume=True, progress=False)
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "straight")


def test_accumulation_equals_the_mean_loss(tmp_path):
    cfg = TrainConfig(steps=3, lr=0.1, warmup_steps=1, weight_decay=0.0, accumulate=2,
                      grad_clip=0.0)
    a = _model()
    train(a, _mse, _items, cfg, tmp_path / "a", progress=False)

    def pairs(start):
        it = _items(2 * start)
        while True:
            (x1, y1), (x2, y2) = next(it), next(it)
            yield (x1, y1), (x2, y2)

    def mean_of_two(model, batch):
        l1, _ = _mse(model, batch[0])
        l2, _ = _mse(model, batch[1])
        return 0.5 * (l1 + l2), {}

    b = _model()
    train(b, mean_of_two, pairs, TrainConfig(**{**cfg.__dict__, "accumulate": 1}), tmp_path / "b",
          progress=False)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)


def test_bad_steps_are_skipped_then_fatal(tmp_path):
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            return torch.tensor(float("nan")), {}
        return _mse(model, batch)

    result = train(_model(), flaky, _items, TrainConfig(steps=10, log_every=1), tmp_path / "f",
                   progress=False)
    assert result.step == 10 and result.skipped >= 4

    def always_bad(model, batch):
        raise SkipStep("energy exploded")

    with pytest.raises(TrainingFailed, match="energy exploded"):
        train(_model(), always_bad, _items, TrainConfig(steps=10, max_skipped=3), tmp_path / "g",
              progress=False)


def test_time_limit_stops_early_and_keeps_a_checkpoint(tmp_path):
    import time as _time

    def slow(model, batch):
        _time.sleep(0.02)
        return _mse(model, batch)

    result = train(_model(), slow, _items, TrainConfig(steps=1000, log_every=1), tmp_path,
                   progress=False, time_limit_s=0.3)
    assert 3 <= result.step < 100
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == result.step and ckpt["trained_seconds"] >= 0.3
    again = train(_model(), slow, _items, TrainConfig(steps=1000, log_every=1), tmp_path,
                  resume=True, progress=False, time_limit_s=0.3)
    assert again.step == result.step  # the budget was already spent
