"""One training loop for every method; the loss is injected.

QPT passes the implicit DFT loss (the sandwich energy, no labels); the supervised baselines pass a
loss on labelled Hamiltonians.  The loop owns what must be identical between them: AdamW, warmup +
cosine schedule, gradient accumulation and clipping, EMA, skipping of non-finite steps,
checkpoint/exact resume, logs (JSONL + TensorBoard), progress bar and the wall-clock ledger.

Files in ``out_dir``: ``checkpoint.pt`` (latest, written atomically), ``train.jsonl`` (one line per
logged step), ``metrics.jsonl`` (one line per evaluation), ``tb/`` (TensorBoard scalars).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qptbench.ledger import Ledger, read_jsonl

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
Evaluate = Callable[[nn.Module, int], dict[str, float]]


class SkipStep(Exception):
    """Raised by a loss function for a micro-batch that must not update the model."""


class TrainingFailed(RuntimeError):
    """Too many consecutive skipped steps: something is wrong beyond one bad molecule."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000               # optimiser updates
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 100
    decay_steps: int | None = None  # cosine reaches min_lr here (default: steps)
    weight_decay: float = 0.1       # decoupled; matrices and embeddings only (not gains/biases)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0          # global norm; 0 disables
    accumulate: int = 1             # micro-batches (molecules) per update
    ema_decay: float | None = None
    log_every: int = 10
    eval_every: int = 0             # 0: evaluate only at the end
    checkpoint_every: int = 100
    seed: int = 0
    max_skipped: int = 20           # consecutive skipped updates before giving up


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warmup to lr, cosine to min_lr at decay_steps, then min_lr."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay = config.decay_steps or config.steps
    if step >= decay:
        return config.min_lr
    progress = (step - config.warmup_steps) / max(1, decay - config.warmup_steps)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    # Decaying LayerNorm gains and biases towards zero only hurts; decay what has ≥ 2 dimensions.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


@dataclass
class TrainResult:
    step: int
    skipped: int
    last_logs: dict[str, float]
    evaluations: list[dict[str, Any]]


def _seed_everything(seed: int) -> None:
    random.seed(seed)  # numpy's global RNG is not used anywhere: code passes Generators
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


def _batch_stream(batches: Iterable | Callable[[int], Iterable], consumed: int) -> Iterator:
    """Items from where a previous run stopped: a factory is told how many were consumed."""
    if callable(batches) and not isinstance(batches, Iterator):
        return iter(batches(consumed))
    return itertools.islice(iter(batches), consumed, None)


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


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: logs stay in train.jsonl
        return None
    return SummaryWriter(str(out_dir / "tb"))


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
) -> TrainResult:
    """Run ``config.steps`` updates (or the rest of them when resuming).

    ``time_limit_s`` stops earlier, once the wall time spent in this loop (all runs of it, resumes
    included; evaluations excluded) reaches the limit: the harness's equal-budget comparisons.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    optimizer = make_optimizer(model, config)
    ema = _Ema(model, config.ema_decay) if config.ema_decay else None
    step, skipped_total, consumed, trained_s = 0, 0, 0, 0.0
    evaluations: list[dict[str, Any]] = []

    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.shadow = ckpt["ema"]
        step, skipped_total, consumed = ckpt["step"], ckpt["skipped"], ckpt["consumed"]
        trained_s = ckpt.get("trained_seconds", 0.0)
        _set_rng_state(ckpt["rng"])
        for name in ("train.jsonl", "metrics.jsonl"):  # drop rows logged after the checkpoint
            _truncate_after(out_dir / name, step)
    else:
        for name in ("train.jsonl", "metrics.jsonl"):
            (out_dir / name).unlink(missing_ok=True)
        _seed_everything(config.seed)
        (out_dir / "train_config.json").write_text(json.dumps(asdict(config), indent=1))

    def save() -> None:
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "ema": None if ema is None else ema.shadow, "step": step,
                      "skipped": skipped_total, "consumed": consumed, "rng": _rng_state(),
                      "trained_seconds": trained_s + time.perf_counter() - segment_wall,
                      "config": asdict(config), **(extra_state or {})}, ckpt_path)

    def run_eval() -> None:
        if evaluate is None:
            return
        live = ema.swapped_into(model) if ema is not None else None
        model.eval()
        tic, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            result = evaluate(model, step)
        model.train()
        if live is not None:
            model.load_state_dict(live)
        row = {"step": step, "eval_seconds": time.perf_counter() - tic, **result}
        evaluations.append(row)
        _append_jsonl(out_dir / "metrics.jsonl", row)
        if ledger is not None:
            ledger.record("eval", row["eval_seconds"], time.process_time() - cpu, step=step)

    start_step = step
    stream = _batch_stream(batches, consumed)
    writer = _tensorboard(out_dir)
    bar = tqdm(total=config.steps, initial=step, disable=not progress, unit="step",
               dynamic_ncols=True)
    timers = {"data": 0.0, "loss": 0.0, "backward": 0.0}
    segment_wall, segment_cpu = time.perf_counter(), time.process_time()
    consecutive_skips, logs = 0, {}
    model.train()
    try:
        while step < config.steps:
            if time_limit_s is not None and (
                    trained_s + time.perf_counter() - segment_wall >= time_limit_s):
                save()
                break
            if hasattr(loss_fn, "set_step"):  # losses with a schedule (QPT's DFT iterations)
                loss_fn.set_step(step)
            lr = learning_rate(config, step)
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
                _append_jsonl(out_dir / "train.jsonl", {"step": step, "skipped": True, **logs})
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
            logs = {**sums, "lr": lr, "grad_norm": grad_norm}
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                busy = sum(timers.values()) or 1.0
                shares = {f"share_{k}": v / busy for k, v in timers.items()}
                _append_jsonl(out_dir / "train.jsonl", {"step": step, **logs, **shares,
                              "skipped_total": skipped_total})
                if writer is not None:
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, step)
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(sums.items())[:2]}
                                | {k[6:]: f"{v:.0%}" for k, v in shares.items()})
            if step % config.checkpoint_every == 0 or step == config.steps:
                save()
            if config.eval_every and step % config.eval_every == 0 and step != config.steps:
                _book_train(ledger, segment_wall, segment_cpu, step, timers)
                trained_s += time.perf_counter() - segment_wall
                segment_wall = time.perf_counter()
                save()  # the checkpoint's training time must not include the evaluation
                run_eval()
                segment_wall, segment_cpu = time.perf_counter(), time.process_time()
    finally:
        bar.close()
        if step > start_step:  # a resumed, already finished run trained nothing: book nothing
            _book_train(ledger, segment_wall, segment_cpu, step, timers)
        if writer is not None:
            writer.close()
    done = _rows(out_dir / "metrics.jsonl")
    if done and done[-1]["step"] == step and step == start_step:
        evaluations.append(done[-1])  # finished before: its final evaluation is on disk
    else:
        run_eval()
    return TrainResult(step, skipped_total, logs, evaluations)


def _book_train(ledger: Ledger | None, wall0: float, cpu0: float, step: int,
                timers: dict[str, float]) -> None:
    if ledger is not None:
        ledger.record("train", time.perf_counter() - wall0, time.process_time() - cpu0,
                      step=step, **{f"{k}_seconds_cumulative": v for k, v in timers.items()})
