"""Mean, median and a 95 % bootstrap interval over molecules (and over seeds, when several)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

N_BOOTSTRAP = 2000
CONFIDENCE = 0.95


def summarize(values: Mapping[object, Sequence[float]] | Sequence[float],
              n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """``values``: per-molecule numbers, or {seed: per-molecule numbers}.

    With several seeds the bootstrap is hierarchical: draw seeds with replacement, then molecules
    within each drawn seed, and average; the interval is the percentile interval of those means.
    NaNs (a metric that is n/a for a method) are dropped; all-NaN gives NaNs.  Deterministic.
    """
    groups = list(values.values()) if isinstance(values, Mapping) else [values]
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    groups = [g[np.isfinite(g)] for g in groups]
    groups = [g for g in groups if g.size]
    nan = float("nan")
    if not groups:
        return {"mean": nan, "median": nan, "ci_low": nan, "ci_high": nan, "n": 0}
    pooled = np.concatenate(groups)
    rng = np.random.default_rng(seed)
    n = len(groups)
    pick = rng.integers(n, size=(n_boot, n))  # seeds drawn with replacement, per replicate
    total = np.zeros(n_boot)
    rows = np.arange(n_boot)
    for j in range(n):  # slot j of every replicate: the drawn seed's molecules, resampled
        resampled = np.stack([g[rng.integers(g.size, size=(n_boot, g.size))].mean(1)
                              for g in groups])          # (seeds, n_boot)
        total += resampled[pick[:, j], rows]
    means = total / n
    tail = 100 * (1 - CONFIDENCE) / 2
    return {"mean": float(np.mean([g.mean() for g in groups])), "median": float(np.median(pooled)),
            "ci_low": float(np.percentile(means, tail)),
            "ci_high": float(np.percentile(means, 100 - tail)), "n": int(pooled.size)}
