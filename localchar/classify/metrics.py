"""Scores of a classifier on labelled items: macro-F1, accuracy, per-label precision / recall / F1,
confusion matrix, and seeded percentile-bootstrap confidence intervals (items resampled with
replacement) on macro-F1 and on the difference of two independent macro-F1s."""

from __future__ import annotations

import numpy as np


def _label_f1(yt: np.ndarray, yp: np.ndarray, labels: list[str]) -> np.ndarray:
    f = np.zeros(len(labels))
    for i, label in enumerate(labels):
        tp = np.sum((yt == label) & (yp == label))
        fp = np.sum((yt != label) & (yp == label))
        fn = np.sum((yt == label) & (yp != label))
        f[i] = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return f


def f1_scores(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {"macro_f1": float(np.mean(f)) if len(f) else 0.0,
            "accuracy": float(np.mean(np.array(y_true) == np.array(y_pred))) if y_true else 0.0,
            "per_label": {l: float(x) for l, x in zip(labels, f)},
            "per_label_prf": {l: {"precision": float(a), "recall": float(b), "f1": float(c), "n": int(d)}
                              for l, a, b, c, d in zip(labels, p, r, f, s)}}


def confusion(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    m = {t: {p: 0 for p in labels} for t in labels}
    for t, p in zip(y_true, y_pred):
        if t in m and p in m[t]:
            m[t][p] += 1
    return m


def _boot(y_true, y_pred, labels, n, seed) -> np.ndarray:
    """(n, labels) per-label F1 over n resamples of the items."""
    rng = np.random.default_rng(seed)
    yt, yp = np.array(y_true), np.array(y_pred)
    out = np.empty((n, len(labels)))
    for i in range(n):
        idx = rng.integers(0, len(yt), len(yt))
        out[i] = _label_f1(yt[idx], yp[idx], labels)
    return out


def _interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(y_true: list[str], y_pred: list[str], labels: list[str], n: int, seed: int,
                 alpha: float = 0.05) -> tuple[float, float] | None:
    """Percentile CI of macro-F1, resampling scored items with replacement."""
    if not y_true or n <= 0:
        return None
    return _interval(_boot(y_true, y_pred, labels, n, seed).mean(axis=1), alpha)


def bootstrap_cis(y_true: list[str], y_pred: list[str], labels: list[str], n: int, seed: int,
                  alpha: float = 0.05) -> tuple[tuple[float, float] | None, dict]:
    """The macro-F1 CI and each label's F1 CI from one set of resamples (the macro CI equals
    bootstrap_ci's with the same seed)."""
    if not y_true or n <= 0:
        return None, {}
    b = _boot(y_true, y_pred, labels, n, seed)
    return _interval(b.mean(axis=1), alpha), {l: _interval(b[:, i], alpha) for i, l in enumerate(labels)}


def bootstrap_gap_ci(a: tuple[list, list], b: tuple[list, list], labels: list[str], n: int, seed: int,
                     alpha: float = 0.05) -> tuple[float, float] | None:
    """CI of macro-F1(a) - macro-F1(b) for two independent sets of (true, predicted) labels, each
    resampled on its own (e.g. chat answers vs agent emails)."""
    if not a[0] or not b[0] or n <= 0:
        return None
    d = _boot(*a, labels, n, seed).mean(axis=1) - _boot(*b, labels, n, seed + 1).mean(axis=1)
    return _interval(d, alpha)


def mean_sem(values: list[float]) -> tuple[float, float | None] | None:
    """Mean and standard error of the mean (as the paper reports F1 over the break-character
    suffixes); the SEM is None for a single value."""
    if not values:
        return None
    v = np.array(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None)
