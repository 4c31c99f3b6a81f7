"""The shared training loop on a toy regression: schedule, accumulation, skips, exact resume."""

import itertools
import json
import time

import pytest
import torch
from torch import nn

from qptbench.errors import InputError
from qptbench.ledger import Ledger, read_ledger
from qptbench.training.loop import (
    SkipStep,
    TrainConfig,
    TrainingFailed,
    learning_rate,
    learning_rate_at_fraction,
    load_best,
    train,
)


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
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == result.step and abs(ckpt["trained_seconds"] - 0.3) <= 0.03
    again = train(_model(), slow, _items, TrainConfig(steps=1000, log_every=1), tmp_path,
                  resume=True, progress=False, time_limit_s=0.3)
    assert again.step == result.step  # the budget was already spent


class _CreatesAFile:
    """Unpickling this calls open(path, "w"): what a tampered checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_tampered_checkpoint_is_refused_and_not_executed(tmp_path):
    cfg = TrainConfig(steps=2, log_every=1, checkpoint_every=1)
    train(_model(), _mse, _items, cfg, tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    marker = tmp_path / "pwned"
    torch.save({**ckpt, "note": _CreatesAFile(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(InputError, match=r"checkpoint\.pt: refused .* other than tensors"):
        train(_model(), _mse, _items, TrainConfig(steps=4), tmp_path, resume=True,
              progress=False)
    assert not marker.exists()
    with pytest.raises(TypeError, match="extra_state"):
        train(_model(), _mse, _items, cfg, tmp_path / "x", progress=False,
              extra_state={"spec": {"bad": _CreatesAFile(marker)}})


def test_fraction_schedule_matches_the_step_schedule():
    for step in range(40):
        assert learning_rate_at_fraction(CFG, step, step / CFG.steps) == pytest.approx(
            learning_rate(CFG, step))
    # warmup ended late in the budget: the cosine starts from the peak there
    assert learning_rate_at_fraction(CFG, 5, 0.5, warmup_fraction=0.5) == pytest.approx(CFG.lr)
    assert learning_rate_at_fraction(CFG, 6, 1.0, warmup_fraction=0.5) == CFG.min_lr


class _SlowScheduledLoss:
    def __init__(self):
        self.fractions, self.steps = [], []

    def set_progress(self, fraction):
        self.fractions.append(fraction)

    def set_step(self, step):
        self.steps.append(step)

    def __call__(self, model, batch):
        time.sleep(0.02)
        return _mse(model, batch)


def test_budget_drives_schedules_stop_and_evaluation_points(tmp_path):
    limit = 1.5
    cfg = TrainConfig(steps=100_000, lr=0.2, min_lr=0.02, warmup_steps=5, log_every=1,
                      checkpoint_every=10_000, weight_decay=0.0, eval_points=3)
    loss = _SlowScheduledLoss()
    calls = []

    def evaluate(model, step):
        calls.append(step)
        time.sleep(0.1)  # evaluations are not training time
        return {"weight_error": float((model.weight - 1).abs().sum())}

    result = train(_model(), loss, _items, cfg, tmp_path, evaluate=evaluate, progress=False,
                   time_limit_s=limit, desc="toy training")
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert abs(result.trained_seconds - limit) <= 0.1 * limit
    assert ckpt["trained_seconds"] == pytest.approx(result.trained_seconds, abs=0.05)
    assert ckpt["step"] == result.step < cfg.steps
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] <= cfg.min_lr + 0.05 * (cfg.lr - cfg.min_lr)
    assert rows[-1]["progress"] == pytest.approx(loss.fractions[-1])
    assert max(loss.fractions) >= 0.9 and loss.steps[-1] == result.step - 1
    metrics = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == len(calls) == 3 and len(set(calls)) == 3  # no duplicate final one
    fractions = [m["budget_fraction"] for m in metrics]
    assert fractions[0] == pytest.approx(1 / 3, abs=0.08)  # crossed within a step
    assert fractions[1] == pytest.approx(2 / 3, abs=0.08)
    assert fractions[2] == pytest.approx(1.0, abs=0.1)
    for m in metrics:
        assert m["trained_seconds"] == pytest.approx(m["budget_fraction"] * limit)
    assert metrics[-1]["step"] == result.step


def test_eval_points_without_a_budget_use_steps(tmp_path):
    cfg = TrainConfig(steps=12, eval_points=3, eval_every=5, log_every=1)
    result = train(_model(), _mse, _items, cfg, tmp_path, progress=False,
                   evaluate=lambda m, step: {"x": 1.0})
    assert [e["step"] for e in result.evaluations] == [4, 8, 12]
    assert all("budget_fraction" not in e and e["trained_seconds"] > 0
               for e in result.evaluations)


def test_best_checkpoint_holds_the_evaluated_weights_and_survives_resume(tmp_path):
    cfg = TrainConfig(steps=20, lr=0.1, warmup_steps=2, log_every=1, checkpoint_every=5,
                      eval_every=5, ema_decay=0.5, best_metric="err", weight_decay=0.0)
    scores = {5: 3.0, 10: 1.0, 15: 2.0, 20: 4.0}
    seen = {}

    def evaluate(model, step):
        seen[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"err": scores[step]}

    assert load_best(_model(), tmp_path / "straight") is None
    result = train(_model(), _mse, _items, cfg, tmp_path / "straight", evaluate=evaluate,
                   progress=False)
    assert (result.best_step, result.best_value) == (10, 1.0)
    model = _model(seed=7)
    assert load_best(model, tmp_path / "straight") == 10
    for k, v in model.state_dict().items():
        assert torch.equal(v, seen[10][k])  # the EMA weights that were evaluated
    ckpt = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    assert (ckpt["best_step"], ckpt["best_value"]) == (10, 1.0)

    def killed_at_15(model, step):
        if step == 15:
            raise KeyboardInterrupt  # killed during the evaluation after the step-15 checkpoint
        return evaluate(model, step)

    with pytest.raises(KeyboardInterrupt):
        train(_model(), _mse, _items, cfg, tmp_path / "killed", evaluate=killed_at_15,
              progress=False)
    again = train(_model(), _mse, _items, cfg, tmp_path / "killed", evaluate=evaluate,
                  resume=True, progress=False)
    assert [e["step"] for e in again.evaluations] == [15, 20]  # the lost one is redone first
    metrics = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text()
               .splitlines()]
    assert [m["step"] for m in metrics] == [5, 10, 15, 20]
    assert (again.best_step, again.best_value) == (10, 1.0)
    assert load_best(model, tmp_path / "killed") == 10


def test_the_loop_closes_a_stream_it_made(tmp_path):
    closed = []

    def factory(start):
        try:
            yield from _items(start)
        finally:
            closed.append(True)  # WindowedStream shuts its DataLoader workers down here

    train(_model(), _mse, factory, TrainConfig(steps=3), tmp_path, progress=False)
    assert closed == [True]
