"""One training loop for every method; the loss is injected.

QPT passes the implicit DFT loss (the sandwich energy, no labels); the supervised baselines pass a
loss on labelled Hamiltonians.  The loop owns what must be identical between them: AdamW, warmup +
cosine schedule, gradient accumulation and clipping, EMA, skipping of non-finite steps,
checkpoint/exact resume, the wall-clock budget, evaluations, the best-validation checkpoint, logs
(JSONL + TensorBoard), progress bar and the wall-clock ledger.

Files in ``out_dir``: ``checkpoint.pt`` (latest, written atomically), ``best.pt`` (the evaluated
weights with the best ``TrainConfig.best_metric``, see :func:`load_best`), ``train.jsonl`` (one
line per logged step), ``metrics.jsonl`` (one line per evaluation), ``tb/`` (TensorBoard scalars).

Checkpoints hold only tensors and plain Python types and are read with ``weights_only=True``: a run
directory received from elsewhere cannot execute code on ``--resume``; a file holding anything else
is refused with an :class:`~qptbench.errors.InputError`.

Progress.  A run's progress is the larger of ``step / config.steps`` and, when a wall-clock budget
``time_limit_s`` is set, ``trained seconds / time_limit_s`` (evaluations excluded).  Schedules run
on it, so a budgeted run cut long before ``config.steps`` still completes them: the cosine learning
rate (warmup stays step-based) and any schedule of the loss, which is told through the optional
hooks ``loss_fn.set_progress(fraction)`` and (older) ``loss_fn.set_step(step)``, both called
before every step.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qptbench.ledger import Ledger
from qptbench.training import distributed
from qptbench.training.checkpoints import load_checkpoint
from qptbench.training.schedule import (
    TrainConfig,
    learning_rate,
    learning_rate_at_fraction,
)
from qptbench.training.state import (
    Evaluate,
    LossFn,
    RunState,
    append_jsonl,
    book_train,
    logged_rows,
)


class SkipStep(Exception):
    """Raised by a loss function for a micro-batch that must not update the model."""


class TrainingFailed(RuntimeError):
    """Too many consecutive skipped steps: something is wrong beyond one bad molecule."""


@dataclass
class TrainResult:
    step: int
    skipped: int
    last_logs: dict[str, float]
    evaluations: list[dict[str, Any]]
    best_step: int | None = None      # step of best.pt (None: no best_metric or never evaluated)
    best_value: float | None = None
    trained_seconds: float = 0.0      # wall time in the loop, all runs of it, evaluations excluded


def load_best(model: nn.Module, out_dir: str | Path) -> int | None:
    """Load ``out_dir/best.pt`` (the evaluated weights with the best ``best_metric``; the EMA
    weights when EMA was used) into ``model``; its step, or None when there is no best.pt."""
    path = Path(out_dir) / "best.pt"
    if not path.exists():
        return None
    best = load_checkpoint(path)
    model.load_state_dict(best["model"])
    return int(best["step"])


def _batch_stream(batches: Iterable | Callable[[int], Iterable],
                  consumed: int) -> tuple[Iterator, bool]:
    """Items from where a previous run stopped: a factory is told how many were consumed.
    Also whether the iterator is ours (made by the factory) to close."""
    if callable(batches) and not isinstance(batches, Iterator):
        return iter(batches(consumed)), True
    return itertools.islice(iter(batches), consumed, None), False


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: logs stay in train.jsonl
        return None
    return SummaryWriter(str(out_dir / "tb"))


def _make_bar(total: int, desc: str, disable: bool, initial: int, unit: str):
    from qptbench.progress import make_bar

    return make_bar(total, desc, disable=disable, initial=initial, unit=unit)


def train(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable | Callable[[int], Iterable],
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    evaluate: Evaluate | None = None,
    ledger: Ledger | None = None,
    progress: bool = True,
    extra_state: dict[str, Any] | None = None,
    time_limit_s: float | None = None,
    desc: str = "training",
) -> TrainResult:
    """Run ``config.steps`` updates (or the rest of them when resuming).

    ``time_limit_s`` (the harness's equal-budget comparisons) ends the run once the wall time
    trained (this loop, all runs of it, resumes included; evaluations excluded) is spent: before
    each step the loop stops if trained + the mean duration of the recent steps would exceed it
    (the first step always runs), so a run stops within about one step of its budget.  Schedules
    then run on the budget fraction (see the module docstring), and with ``config.eval_points``
    evaluations happen at fixed fractions of the budget.

    Evaluations (``evaluate(model, step)``, with the EMA weights when EMA is used) happen every
    ``config.eval_every`` steps, or at ``config.eval_points`` points, and once at the end unless
    the last one was already at the final step.  Each metrics.jsonl row has ``step``,
    ``eval_seconds``, ``trained_seconds`` (wall time trained so far) and, with a time limit,
    ``budget_fraction`` (= trained_seconds / time_limit_s), plus what ``evaluate`` returned.

    ``extra_state``: more entries for checkpoint.pt; tensors and plain types only (dict, list,
    tuple, str, int, float, bool, None): checkpoints are loaded with ``weights_only=True``.
    ``desc`` names the progress bar ("QPT training").

    CPU seconds booked in the ledger include this process's reaped children: DataLoader workers
    count once they have exited and been joined, which is why a stream made by a factory is
    closed before the final booking (its workers are then shut down).

    Under torchrun (``training.distributed``): every rank calls this with its own ``batches``;
    gradients are averaged over the ranks; rank 0 alone evaluates and writes the run directory
    and the ledger (``evaluate``, ``ledger`` and ``progress`` are ignored on the others).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = distributed.current()
    if world.parallel:
        distributed.broadcast_model(model)  # the same start on every rank, as DDP makes sure
    if not world.main:
        evaluate, ledger, progress = None, None, False
    run = _Run(model, loss_fn, config, out_dir, evaluate, ledger, time_limit_s, extra_state)
    run.restore(resume)
    if run.eval_pending and world.main and not any(
            r["step"] == run.step for r in logged_rows(run.metrics_path)):
        run.evaluate()  # killed during the evaluation that followed the checkpoint: do it now
    start_step = run.step
    stream, own_stream = _batch_stream(batches, run.consumed)
    writer = _tensorboard(out_dir) if world.main else None
    bar = run.progress_bar(desc, progress)
    run.start()
    finished = False
    try:
        run.updates(stream, bar, writer)
        finished = True
    finally:
        run.stop(bar, stream if own_stream else None, writer, booked=run.step > start_step,
                 gather=finished)
    run.final_evaluation(start_step)
    return TrainResult(run.step, run.skipped_total, run.logs, run.evaluations, run.best_step,
                       run.best_value, run.clock.trained())


class _Run(RunState):
    """One call of :func:`train`: the state a checkpoint restores and the evaluations
    (:class:`~qptbench.training.state.RunState`), plus the updates.  Each method does one job."""

    def progress_bar(self, desc: str, progress: bool):
        if self.time_limit_s is None:
            return _make_bar(self.config.steps, desc, not progress, self.step, "step")
        # the budget ends the run, long before config.steps: count trained seconds
        total = math.ceil(self.time_limit_s)
        return _make_bar(max(1, total), desc, not progress,
                         min(int(self.clock.trained()), total), "s")

    def start(self) -> None:
        self.model.train()
        self.trained_at_start = self.clock.trained()
        self.clock.start()
        self.last_check, self.attempted = self.clock.trained(), False

    def updates(self, stream: Iterator, bar, writer) -> None:
        """Optimiser updates until ``config.steps`` or the end of the budget."""
        config = self.config
        while self.step < config.steps:
            spent = self.budget_spent()
            fraction = self.fraction()
            if self.world.parallel and self.time_limit_s is not None:
                # rank 0's clock decides for all: every rank stops at the same step, same LR
                spent, fraction = distributed.from_main([spent, fraction], self.device)
            if spent:
                self.save()
                break
            lr = self.schedule(fraction)
            ok, self.logs, sums, grad_norm = self.gradients(stream)
            if not ok:
                self.skip(fraction)
                continue
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.consecutive_skips = 0
            self.step += 1
            self.logs = {**sums, "lr": lr, "grad_norm": grad_norm, "progress": fraction}
            self.report(sums, bar, writer)
            if self.eval_due():
                self.pause_for_eval()  # saves the checkpoint first
            elif self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save()

    def budget_spent(self) -> bool:
        """Time the previous attempt (skipped or not; no evaluations); whether the budget is
        spent, or would be by one more step of the recent mean duration."""
        now = self.clock.trained()
        if self.attempted:  # the previous attempt's duration (skipped or not; no evaluations)
            self.step_seconds.append(now - self.last_check)
        self.last_check, self.attempted = now, True
        limit = self.time_limit_s
        return limit is not None and bool(now >= limit or (
            self.step_seconds and now + sum(self.step_seconds) / len(self.step_seconds) > limit))

    def fraction(self) -> float:
        """The run's progress: of the steps, or of the budget when that is further."""
        done = self.step / self.config.steps
        if self.time_limit_s is None:
            return done
        return max(done, self.clock.trained() / self.time_limit_s)

    def schedule(self, fraction: float) -> float:
        """Tell the loss where the run is and set this step's learning rate (returned)."""
        config, loss_fn = self.config, self.loss_fn
        if self.step >= config.warmup_steps and self.warmup_fraction is None:
            self.warmup_fraction = fraction
        if hasattr(loss_fn, "set_progress"):  # losses with a schedule (QPT's DFT iterations)
            loss_fn.set_progress(fraction)
        if hasattr(loss_fn, "set_step"):
            loss_fn.set_step(self.step)
        lr = (learning_rate(config, self.step) if self.time_limit_s is None else
              learning_rate_at_fraction(config, self.step, fraction, self.warmup_fraction))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def gradients(self, stream: Iterator) -> tuple[bool, dict[str, Any], dict[str, float], float]:
        """Accumulate the gradients of ``config.accumulate`` micro-batches, then clip them.
        Returns (ok, logs, mean logs, gradient norm); not ok: a micro-batch raised
        :class:`SkipStep` or gave a non-finite loss, or the gradient is not finite."""
        config, timers = self.config, self.timers
        self.optimizer.zero_grad(set_to_none=True)
        logs, sums, ok = {}, {}, True
        for _ in range(config.accumulate):
            tic = time.perf_counter()
            batch = next(stream)
            self.consumed += 1
            timers["data"] += time.perf_counter() - tic
            tic = time.perf_counter()
            try:
                loss, logs = self.loss_fn(self.model, batch)
                if not torch.isfinite(loss):
                    raise SkipStep(f"non-finite loss {loss.item()}")
                timers["loss"] += time.perf_counter() - tic
                tic = time.perf_counter()
                (loss / config.accumulate).backward()
                timers["backward"] += time.perf_counter() - tic
            except SkipStep as why:
                ok, logs = False, {"skip_reason": str(why)}
                break
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v) / config.accumulate
        if self.world.parallel:  # one skip skips every rank; the gradient is the ranks' mean
            tic = time.perf_counter()
            if not distributed.average_gradients(self.model, ok, self.world) and ok:
                ok, logs = False, {"skip_reason": "another rank skipped its micro-batch"}
            timers["backward"] += time.perf_counter() - tic
        grad_norm = float("nan")
        if ok:
            params = [p for p in self.model.parameters() if p.grad is not None]
            clip = config.grad_clip if config.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            ok = math.isfinite(grad_norm)
            if not ok:
                logs = {"skip_reason": "non-finite gradient"}
        return ok, logs, sums, grad_norm

    def skip(self, fraction: float) -> None:
        """Log a skipped update; too many in a row end the run."""
        self.skipped_total += 1
        self.consecutive_skips += 1
        if self.world.main:
            append_jsonl(self.out_dir / "train.jsonl", {"step": self.step, "skipped": True,
                                                         "progress": fraction, **self.logs})
        if self.consecutive_skips >= self.config.max_skipped:
            raise TrainingFailed(
                f"{self.consecutive_skips} consecutive steps skipped (last: "
                f"{self.logs.get('skip_reason')}); lower the learning rate or check the data"
            )

    def report(self, sums: dict[str, float], bar, writer) -> None:
        """Advance the bar; every ``log_every`` steps (and at the last) a train.jsonl row, the
        TensorBoard scalars and the bar's fields."""
        step, budgeted = self.step, self.time_limit_s is not None
        if not budgeted:
            bar.update(1)
        else:
            bar.update(min(int(self.clock.trained()), bar.total) - bar.n)
        if self.world.main and (step % self.config.log_every == 0 or step == self.config.steps):
            busy = sum(self.timers.values()) or 1.0
            shares = {f"share_{k}": v / busy for k, v in self.timers.items()}
            append_jsonl(self.out_dir / "train.jsonl", {"step": step, **self.logs, **shares,
                          "skipped_total": self.skipped_total})
            if writer is not None:
                for k, v in self.logs.items():
                    writer.add_scalar(f"train/{k}", v, step)
            bar.set_postfix(_postfix(step, sums, shares["share_data"], budgeted), refresh=False)

    def stop(self, bar, own_stream: Iterator | None, writer, booked: bool,
             gather: bool = True) -> None:
        """Close the bar, our stream (its DataLoader workers exit and are joined: their CPU time
        is booked) and the writer; book the last training segment if it trained anything.

        Under torchrun, after a normal end (``gather``: every rank is here), the entry also
        gets ``world_size`` and each rank's wall seconds trained in this call (the others' wall
        includes waiting for rank 0's evaluations)."""
        bar.close()
        if own_stream is not None and hasattr(own_stream, "close"):
            own_stream.close()
        wall, cpu = self.clock.stop()
        extra = {}
        if self.world.parallel and gather:
            ranks = distributed.gather_floats([self.clock.before - self.trained_at_start],
                                              self.world, self.device)
            extra = {"world_size": self.world.size, "rank_wall_seconds": [r[0] for r in ranks]}
        if booked:  # a resumed, already finished run trained nothing: book nothing
            book_train(self.ledger, wall, cpu, self.step, self.timers, **extra)
        if writer is not None:
            writer.close()


def _postfix(step: int, sums: dict[str, float], data_share: float,
             budgeted: bool) -> dict[str, str]:
    """At most 3 short fields: the step when the bar counts seconds, the loss's first logs, and
    the share of time spent waiting for data."""
    fields = {"step": str(step)} if budgeted else {}
    for k, v in list(sums.items())[:2 - len(fields)]:
        fields[k] = f"{v:.4g}"
    fields["data"] = f"{data_share:.0%}"
    return fields
