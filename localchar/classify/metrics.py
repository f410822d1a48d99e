"""Macro-F1, per-class F1 and percentile-bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np


def f1_scores(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    from sklearn.metrics import f1_score

    per = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {"macro_f1": float(np.mean(per)) if len(per) else 0.0,
            "per_label": {l: float(f) for l, f in zip(labels, per)}}


def bootstrap_ci(y_true: list[str], y_pred: list[str], labels: list[str], n: int, seed: int,
                 alpha: float = 0.05) -> tuple[float, float] | None:
    """Percentile CI of macro-F1, resampling scored items with replacement."""
    from sklearn.metrics import f1_score

    if not y_true or n <= 0:
        return None
    rng = np.random.default_rng(seed)
    yt, yp = np.array(y_true), np.array(y_pred)
    stats = []
    for _ in range(n):
        idx = rng.integers(0, len(yt), len(yt))
        stats.append(f1_score(yt[idx], yp[idx], labels=labels, average="macro", zero_division=0))
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
