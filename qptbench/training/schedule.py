"""The training loop's settings (``TrainConfig``), its learning-rate schedule (linear warmup, then
cosine, on the steps or on the fraction of a wall-clock budget) and its optimiser (AdamW)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


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
    # Evaluate when the run crosses k/eval_points of its wall-clock budget (of its steps without
    # a budget), k = 1..eval_points-1; the final evaluation is point k = eval_points.  Replaces
    # eval_every when > 0.
    eval_points: int = 0
    best_metric: str | None = None  # evaluation key, lower is better: keep best.pt


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warmup to lr, cosine to min_lr at decay_steps, then min_lr."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay = config.decay_steps or config.steps
    if step >= decay:
        return config.min_lr
    progress = (step - config.warmup_steps) / max(1, decay - config.warmup_steps)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def learning_rate_at_fraction(config: TrainConfig, step: int, fraction: float,
                              warmup_fraction: float | None = None) -> float:
    """:func:`learning_rate` on the fraction of the run done (of a wall-clock budget, say).

    Warmup is step-based (``step < warmup_steps``); the cosine then runs from ``warmup_fraction``
    (the fraction at which warmup ended; default ``warmup_steps / steps``) to min_lr at
    ``decay_steps / steps``.  With ``fraction = step / steps`` this is :func:`learning_rate`.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    end = (config.decay_steps or config.steps) / config.steps
    start = config.warmup_steps / config.steps if warmup_fraction is None else warmup_fraction
    if fraction >= end or end <= start:
        return config.min_lr
    progress = max(0.0, (fraction - start) / (end - start))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    # Decaying LayerNorm gains and biases towards zero only hurts; decay what has ≥ 2 dimensions.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)
