"""What the training loop keeps across steps, and restores from a checkpoint: ``RunState`` (the
optimiser, the EMA of the weights, the counters, the best evaluation, the run directory's files)
with the checkpoint writes and the evaluations; ``Ema``; ``Clock`` (the wall time trained).
The updates themselves are in ``loop.py``."""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qptbench.ledger import Ledger, cpu_seconds, read_jsonl
from qptbench.training import distributed
from qptbench.training.checkpoints import (
    check_plain,
    load_checkpoint,
    rng_state,
    save_atomic,
    seed_everything,
    set_rng_state,
)
from qptbench.training.schedule import TrainConfig, make_optimizer

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
Evaluate = Callable[[nn.Module, int], dict[str, float]]


class Ema:
    """Exponential moving average of a model's weights (integer buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v, 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def swapped_into(self, model: nn.Module) -> dict[str, torch.Tensor]:
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        return live


class Clock:
    """Wall time trained (all runs; evaluations excluded) and the current segment's CPU time."""

    def __init__(self, trained_s: float) -> None:
        self.before, self.running = trained_s, False
        self.wall0 = self.cpu0 = 0.0

    def start(self) -> None:
        self.wall0, self.cpu0, self.running = time.perf_counter(), cpu_seconds(), True

    def trained(self) -> float:
        return self.before + (time.perf_counter() - self.wall0 if self.running else 0.0)

    def stop(self) -> tuple[float, float]:
        """End the segment; its (wall, CPU) seconds."""
        if not self.running:
            return 0.0, 0.0
        wall, cpu = time.perf_counter() - self.wall0, cpu_seconds() - self.cpu0
        self.before += wall
        self.running = False
        return wall, cpu


class RunState:
    """The state of one call of ``train``: what a checkpoint restores, and the evaluations."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, config: TrainConfig, out_dir: Path,
                 evaluate: Evaluate | None, ledger: Ledger | None, time_limit_s: float | None,
                 extra_state: dict[str, Any] | None) -> None:
        self.model, self.loss_fn, self.config, self.out_dir = model, loss_fn, config, out_dir
        self.evaluate_fn, self.ledger, self.time_limit_s = evaluate, ledger, time_limit_s
        self.ckpt_path, self.best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
        self.metrics_path = out_dir / "metrics.jsonl"
        if extra_state:
            check_plain(extra_state, "extra_state")
        self.extra_state = extra_state
        self.optimizer = make_optimizer(model, config)
        self.ema = Ema(model, config.ema_decay) if config.ema_decay else None
        self.step, self.skipped_total, self.consumed = 0, 0, 0
        self.warmup_fraction: float | None = None
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.eval_pending = False  # the checkpoint was written just before an evaluation
        self.next_point = 1        # eval_points: the next point k to evaluate at
        self.step_seconds: deque[float] = deque(maxlen=20)  # recent durations of one step
        self.evaluations: list[dict[str, Any]] = []
        self.timers = {"data": 0.0, "loss": 0.0, "backward": 0.0}
        self.clock = Clock(0.0)
        self.consecutive_skips, self.logs = 0, {}
        self.last_check, self.attempted = 0.0, False
        self.trained_at_start = 0.0
        # under torchrun rank 0 alone writes the run directory (training.distributed)
        self.world = distributed.current()
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))

    # -- start, checkpoints ---------------------------------------------------------------------

    def restore(self, resume: bool) -> None:
        """Continue from checkpoint.pt when resuming and it exists; else start afresh: clear the
        logs and best.pt, seed, write train_config.json."""
        trained_s = 0.0
        if resume and self.ckpt_path.exists():
            trained_s = self._load(load_checkpoint(self.ckpt_path))
        else:
            seed_everything(self.config.seed)
            if self.world.main:
                for name in ("train.jsonl", "metrics.jsonl", "best.pt"):
                    (self.out_dir / name).unlink(missing_ok=True)
                (self.out_dir / "train_config.json").write_text(
                    json.dumps(asdict(self.config), indent=1))
        self.clock = Clock(trained_s)

    def _load(self, ckpt: dict[str, Any]) -> float:
        """Weights, optimiser, EMA, counters and RNG from a checkpoint; logs written after it are
        dropped.  Returns the wall time trained before it."""
        config = self.config
        distributed.check_resume(ckpt.get("world_size"), self.world, self.ckpt_path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.shadow = ckpt["ema"]
        self.step, self.skipped_total = ckpt["step"], ckpt["skipped"]
        self.consumed = ckpt["consumed"]
        trained_s = ckpt.get("trained_seconds", 0.0)
        self.warmup_fraction = ckpt.get("warmup_fraction")
        if self.warmup_fraction is None and self.step >= config.warmup_steps:  # older checkpoints
            self.warmup_fraction = config.warmup_steps / config.steps
        self.best_step, self.best_value = ckpt.get("best_step"), ckpt.get("best_value")
        self.eval_pending = ckpt.get("eval_pending", False)
        self.next_point = ckpt.get("next_eval_point", 1)
        self.step_seconds.extend(ckpt.get("step_seconds", []))
        set_rng_state(ckpt["rng"])
        for name in ("train.jsonl", "metrics.jsonl"):  # drop rows logged after the checkpoint
            if self.world.main:
                truncate_after(self.out_dir / name, self.step)
        if self.best_path.exists():  # written after the checkpoint it belongs to: it is the newer
            best = load_checkpoint(self.best_path)
            if best.get("metric") == config.best_metric and best["step"] <= self.step:
                self.best_step, self.best_value = best["step"], best["value"]
        return trained_s

    def save(self, pending: bool = False) -> None:
        if not self.world.main:
            return
        save_atomic({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "ema": None if self.ema is None else self.ema.shadow, "step": self.step,
                     "skipped": self.skipped_total, "consumed": self.consumed,
                     "rng": rng_state(), "trained_seconds": self.clock.trained(),
                     "warmup_fraction": self.warmup_fraction, "best_step": self.best_step,
                     "best_value": self.best_value, "eval_pending": pending,
                     "next_eval_point": self.next_point, "step_seconds": list(self.step_seconds),
                     "config": asdict(self.config), "world_size": self.world.size,
                     **(self.extra_state or {})}, self.ckpt_path)

    # -- evaluations ----------------------------------------------------------------------------

    def evaluate(self) -> None:
        """Evaluate the current weights; the clock must be stopped (evaluations are not
        training time)."""
        if self.evaluate_fn is None:
            return
        model, config = self.model, self.config
        live = self.ema.swapped_into(model) if self.ema is not None else None
        model.eval()
        tic, cpu = time.perf_counter(), cpu_seconds()
        with torch.no_grad():
            result = self.evaluate_fn(model, self.step)
        row: dict[str, Any] = {"step": self.step, "eval_seconds": time.perf_counter() - tic,
                               "trained_seconds": self.clock.trained()}
        if self.time_limit_s is not None:
            row["budget_fraction"] = self.clock.trained() / self.time_limit_s
        row.update(result)
        value = row.get(config.best_metric) if config.best_metric else None
        if value is not None and math.isfinite(value) and (self.best_value is None
                                                           or value < self.best_value):
            self.best_step, self.best_value = self.step, float(value)
            save_atomic({"model": model.state_dict(), "step": self.step,
                         "metric": config.best_metric, "value": self.best_value},
                        self.best_path)
        model.train()
        if live is not None:
            model.load_state_dict(live)
        self.evaluations.append(row)
        append_jsonl(self.metrics_path, row)
        if self.ledger is not None:
            self.ledger.record("eval", row["eval_seconds"], cpu_seconds() - cpu, step=self.step)

    def _reached(self) -> float:
        """The fraction of the run evaluation points are counted on: of the budget, else of the
        steps."""
        if self.time_limit_s:
            return self.clock.trained() / self.time_limit_s
        return self.step / self.config.steps

    def eval_due(self) -> bool:
        config = self.config
        if self.evaluate_fn is None:
            return False
        if config.eval_points:
            if self.next_point >= config.eval_points:  # the last point is the final evaluation
                return False
            return self._reached() * config.eval_points >= self.next_point - 1e-9
        return bool(config.eval_every) and self.step % config.eval_every == 0 and \
            self.step != config.steps

    def pause_for_eval(self) -> None:
        """Stop the clock, book the training so far, checkpoint, evaluate, restart the clock."""
        wall, cpu = self.clock.stop()
        book_train(self.ledger, wall, cpu, self.step, self.timers)
        if self.config.eval_points:
            self.next_point = max(self.next_point, math.floor(
                self._reached() * self.config.eval_points + 1e-9) + 1)
        self.save(pending=True)  # at this step, without the evaluation's time
        self.evaluate()
        self.clock.start()

    def final_evaluation(self, start_step: int) -> None:
        """Evaluate at the final step unless that was done already: in this call, or before a
        resume of a run that had finished (its final evaluation is on disk)."""
        done = logged_rows(self.metrics_path)
        if self.evaluations and self.evaluations[-1]["step"] == self.step:
            pass  # the last evaluation was at the final step already
        elif done and done[-1]["step"] == self.step and self.step == start_step:
            self.evaluations.append(done[-1])  # finished before: its final evaluation is on disk
        else:
            self.evaluate()


# -- logs --------------------------------------------------------------------------------------


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def logged_rows(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path) if path.exists() else []


def truncate_after(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (and any line torn by a kill)."""
    if path.exists():
        keep = [row for row in read_jsonl(path) if row.get("step", step + 1) <= step]
        path.write_text("".join(json.dumps(row) + "\n" for row in keep))


def book_train(ledger: Ledger | None, wall: float, cpu: float, step: int,
               timers: dict[str, float], **extra: Any) -> None:
    """Book a training segment: wall and CPU seconds (``ledger.cpu_seconds``: reaped children
    included); ``extra``: more fields for the entry."""
    if ledger is not None:
        ledger.record("train", wall, cpu, step=step,
                      **{f"{k}_seconds_cumulative": v for k, v in timers.items()}, **extra)
