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
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qptbench.ledger import Ledger, cpu_seconds, read_jsonl
from qptbench.training.checkpoints import (
    check_plain,
    load_checkpoint,
    rng_state,
    save_atomic,
    seed_everything,
    set_rng_state,
)
from qptbench.training.schedule import (
    TrainConfig,
    learning_rate,
    learning_rate_at_fraction,
    make_optimizer,
)

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
Evaluate = Callable[[nn.Module, int], dict[str, float]]


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


# -- logs --------------------------------------------------------------------------------------


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _rows(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path) if path.exists() else []


def _truncate_after(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (and any line torn by a kill)."""
    if path.exists():
        keep = [row for row in read_jsonl(path) if row.get("step", step + 1) <= step]
        path.write_text("".join(json.dumps(row) + "\n" for row in keep))


def _batch_stream(batches: Iterable | Callable[[int], Iterable],
                  consumed: int) -> tuple[Iterator, bool]:
    """Items from where a previous run stopped: a factory is told how many were consumed.
    Also whether the iterator is ours (made by the factory) to close."""
    if callable(batches) and not isinstance(batches, Iterator):
        return iter(batches(consumed)), True
    return itertools.islice(iter(batches), consumed, None), False


class _Ema:
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


class _Clock:
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
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    metrics_path = out_dir / "metrics.jsonl"
    if extra_state:
        check_plain(extra_state, "extra_state")
    optimizer = make_optimizer(model, config)
    ema = _Ema(model, config.ema_decay) if config.ema_decay else None
    step, skipped_total, consumed, trained_s = 0, 0, 0, 0.0
    warmup_fraction: float | None = None
    best_step: int | None = None
    best_value: float | None = None
    eval_pending = False  # the checkpoint was written just before an evaluation
    next_point = 1        # eval_points: the next point k to evaluate at
    step_seconds: deque[float] = deque(maxlen=20)  # recent durations of one step, trained time
    evaluations: list[dict[str, Any]] = []

    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.shadow = ckpt["ema"]
        step, skipped_total, consumed = ckpt["step"], ckpt["skipped"], ckpt["consumed"]
        trained_s = ckpt.get("trained_seconds", 0.0)
        warmup_fraction = ckpt.get("warmup_fraction")
        if warmup_fraction is None and step >= config.warmup_steps:  # older checkpoints
            warmup_fraction = config.warmup_steps / config.steps
        best_step, best_value = ckpt.get("best_step"), ckpt.get("best_value")
        eval_pending = ckpt.get("eval_pending", False)
        next_point = ckpt.get("next_eval_point", 1)
        step_seconds.extend(ckpt.get("step_seconds", []))
        set_rng_state(ckpt["rng"])
        for name in ("train.jsonl", "metrics.jsonl"):  # drop rows logged after the checkpoint
            _truncate_after(out_dir / name, step)
        if best_path.exists():  # written after the checkpoint it belongs to: it is the newer
            best = load_checkpoint(best_path)
            if best.get("metric") == config.best_metric and best["step"] <= step:
                best_step, best_value = best["step"], best["value"]
    else:
        for name in ("train.jsonl", "metrics.jsonl", "best.pt"):
            (out_dir / name).unlink(missing_ok=True)
        seed_everything(config.seed)
        (out_dir / "train_config.json").write_text(json.dumps(asdict(config), indent=1))

    clock = _Clock(trained_s)

    def fraction_now() -> float:
        done = step / config.steps
        if time_limit_s is None:
            return done
        return max(done, clock.trained() / time_limit_s)

    def save(pending: bool = False) -> None:
        save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "ema": None if ema is None else ema.shadow, "step": step,
                      "skipped": skipped_total, "consumed": consumed, "rng": rng_state(),
                      "trained_seconds": clock.trained(), "warmup_fraction": warmup_fraction,
                      "best_step": best_step, "best_value": best_value,
                      "eval_pending": pending, "next_eval_point": next_point,
                      "step_seconds": list(step_seconds),
                      "config": asdict(config), **(extra_state or {})}, ckpt_path)

    def run_eval() -> None:
        """Evaluate the current weights; the clock must be stopped (evaluations are not
        training time)."""
        nonlocal best_step, best_value
        if evaluate is None:
            return
        live = ema.swapped_into(model) if ema is not None else None
        model.eval()
        tic, cpu = time.perf_counter(), cpu_seconds()
        with torch.no_grad():
            result = evaluate(model, step)
        row: dict[str, Any] = {"step": step, "eval_seconds": time.perf_counter() - tic,
                               "trained_seconds": clock.trained()}
        if time_limit_s is not None:
            row["budget_fraction"] = clock.trained() / time_limit_s
        row.update(result)
        value = row.get(config.best_metric) if config.best_metric else None
        if value is not None and math.isfinite(value) and (best_value is None
                                                           or value < best_value):
            best_step, best_value = step, float(value)
            save_atomic({"model": model.state_dict(), "step": step,
                          "metric": config.best_metric, "value": best_value}, best_path)
        model.train()
        if live is not None:
            model.load_state_dict(live)
        evaluations.append(row)
        _append_jsonl(metrics_path, row)
        if ledger is not None:
            ledger.record("eval", row["eval_seconds"], cpu_seconds() - cpu, step=step)

    def pause_for_eval() -> None:
        nonlocal next_point
        wall, cpu = clock.stop()
        _book_train(ledger, wall, cpu, step, timers)
        if config.eval_points:
            reached = clock.trained() / time_limit_s if time_limit_s else step / config.steps
            next_point = max(next_point, math.floor(reached * config.eval_points + 1e-9) + 1)
        save(pending=True)  # at this step, without the evaluation's time
        run_eval()
        clock.start()

    def eval_due() -> bool:
        if evaluate is None:
            return False
        if config.eval_points:
            if next_point >= config.eval_points:  # the last point is the final evaluation
                return False
            reached = clock.trained() / time_limit_s if time_limit_s else step / config.steps
            return reached * config.eval_points >= next_point - 1e-9
        return bool(config.eval_every) and step % config.eval_every == 0 and \
            step != config.steps

    timers = {"data": 0.0, "loss": 0.0, "backward": 0.0}
    if eval_pending and not any(r["step"] == step for r in _rows(metrics_path)):
        run_eval()  # killed during the evaluation that followed the checkpoint: do it now
    start_step = step
    stream, own_stream = _batch_stream(batches, consumed)
    writer = _tensorboard(out_dir)
    if time_limit_s is None:
        bar = _make_bar(config.steps, desc, not progress, step, "step")
    else:  # the budget ends the run, long before config.steps: count trained seconds
        bar = _make_bar(max(1, math.ceil(time_limit_s)), desc, not progress,
                        min(int(trained_s), math.ceil(time_limit_s)), "s")
    consecutive_skips, logs = 0, {}
    model.train()
    clock.start()
    last_check, attempted = clock.trained(), False
    try:
        while step < config.steps:
            now = clock.trained()
            if attempted:  # the previous attempt's duration (skipped or not; no evaluations)
                step_seconds.append(now - last_check)
            last_check, attempted = now, True
            if time_limit_s is not None and (now >= time_limit_s or (
                    step_seconds and now + sum(step_seconds) / len(step_seconds)
                    > time_limit_s)):
                save()
                break
            fraction = fraction_now()
            if step >= config.warmup_steps and warmup_fraction is None:
                warmup_fraction = fraction
            if hasattr(loss_fn, "set_progress"):  # losses with a schedule (QPT's DFT iterations)
                loss_fn.set_progress(fraction)
            if hasattr(loss_fn, "set_step"):
                loss_fn.set_step(step)
            lr = (learning_rate(config, step) if time_limit_s is None else
                  learning_rate_at_fraction(config, step, fraction, warmup_fraction))
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            logs, sums, ok = {}, {}, True
            for _ in range(config.accumulate):
                tic = time.perf_counter()
                batch = next(stream)
                consumed += 1
                timers["data"] += time.perf_counter() - tic
                tic = time.perf_counter()
                try:
                    loss, logs = loss_fn(model, batch)
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
            grad_norm = float("nan")
            if ok:
                params = [p for p in model.parameters() if p.grad is not None]
                clip = config.grad_clip if config.grad_clip > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                ok = math.isfinite(grad_norm)
                if not ok:
                    logs = {"skip_reason": "non-finite gradient"}
            if not ok:
                skipped_total += 1
                consecutive_skips += 1
                _append_jsonl(out_dir / "train.jsonl", {"step": step, "skipped": True,
                                                        "progress": fraction, **logs})
                if consecutive_skips >= config.max_skipped:
                    raise TrainingFailed(
                        f"{consecutive_skips} consecutive steps skipped (last: "
                        f"{logs.get('skip_reason')}); lower the learning rate or check the data"
                    )
                continue
            optimizer.step()
            if ema is not None:
                ema.update(model)
            consecutive_skips = 0
            step += 1
            logs = {**sums, "lr": lr, "grad_norm": grad_norm, "progress": fraction}
            if time_limit_s is None:
                bar.update(1)
            else:
                bar.update(min(int(clock.trained()), bar.total) - bar.n)
            if step % config.log_every == 0 or step == config.steps:
                busy = sum(timers.values()) or 1.0
                shares = {f"share_{k}": v / busy for k, v in timers.items()}
                _append_jsonl(out_dir / "train.jsonl", {"step": step, **logs, **shares,
                              "skipped_total": skipped_total})
                if writer is not None:
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, step)
                bar.set_postfix(_postfix(step, sums, shares["share_data"],
                                         time_limit_s is not None), refresh=False)
            if eval_due():
                pause_for_eval()  # saves the checkpoint first
            elif step % config.checkpoint_every == 0 or step == config.steps:
                save()
    finally:
        bar.close()
        if own_stream and hasattr(stream, "close"):
            stream.close()  # DataLoader workers exit and are joined: their CPU time is booked
        wall, cpu = clock.stop()
        if step > start_step:  # a resumed, already finished run trained nothing: book nothing
            _book_train(ledger, wall, cpu, step, timers)
        if writer is not None:
            writer.close()
    done = _rows(metrics_path)
    if evaluations and evaluations[-1]["step"] == step:
        pass  # the last evaluation was at the final step already
    elif done and done[-1]["step"] == step and step == start_step:
        evaluations.append(done[-1])  # finished before: its final evaluation is on disk
    else:
        run_eval()
    return TrainResult(step, skipped_total, logs, evaluations, best_step, best_value,
                       clock.trained())


def _postfix(step: int, sums: dict[str, float], data_share: float,
             budgeted: bool) -> dict[str, str]:
    """At most 3 short fields: the step when the bar counts seconds, the loss's first logs, and
    the share of time spent waiting for data."""
    fields = {"step": str(step)} if budgeted else {}
    for k, v in list(sums.items())[:2 - len(fields)]:
        fields[k] = f"{v:.4g}"
    fields["data"] = f"{data_share:.0%}"
    return fields


def _book_train(ledger: Ledger | None, wall: float, cpu: float, step: int,
                timers: dict[str, float]) -> None:
    """Book a training segment: wall and CPU seconds (``ledger.cpu_seconds``: reaped children
    included)."""
    if ledger is not None:
        ledger.record("train", wall, cpu, step=step,
                      **{f"{k}_seconds_cumulative": v for k, v in timers.items()})
