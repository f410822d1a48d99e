"""Scores of a classifier on labelled items: macro-F1, accuracy, per-label precision / recall / F1,
confusion matrix, and seeded percentile-bootstrap confidence intervals on macro-F1, on the
difference of two independent macro-F1s and on that of two classifiers on the same items.

Items are resampled with replacement, or, given `groups` (a cluster id per item), whole clusters
are: items that share a source (one text scored against several labels, the plain and suffixed
answers to one prompt, the emails of one rollout) are not independent, and resampling them one by
one would make the intervals too narrow."""

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


def _boot(y_true, y_pred, labels, n, seed, groups=None) -> np.ndarray:
    """(n, labels) per-label F1 over n resamples. Without groups each item is drawn on its own; with
    groups (one hashable per item) whole clusters are drawn, all their items together: a resample
    is len(clusters) draws with replacement, clusters numbered in order of first appearance, so
    all-singleton groups give exactly the ungrouped resamples for the same seed."""
    if groups is not None and len(groups) != len(y_true):
        raise ValueError(f"groups: {len(groups)} for {len(y_true)} items")
    rng = np.random.default_rng(seed)
    index = {l: i for i, l in enumerate(labels)}
    other = len(labels)  # a label outside `labels` lands in a bin that is dropped
    yt = np.array([index.get(y, other) for y in y_true], dtype=np.int64)
    yp = np.array([index.get(y, other) for y in y_pred], dtype=np.int64)
    if groups is None:
        cluster, size = np.arange(len(yt)), len(yt)
    else:
        ids: dict = {}
        cluster = np.array([ids.setdefault(g, len(ids)) for g in groups], dtype=np.int64)
        size = len(ids)
    hit = np.where(yt == yp, yt, other)
    out = np.empty((n, len(labels)))
    for i in range(n):
        w = np.bincount(rng.integers(0, size, size), minlength=size)[cluster]  # times each item is drawn
        tp = np.bincount(hit, w, other + 1)[:other]
        both = np.bincount(yt, w, other + 1)[:other] + np.bincount(yp, w, other + 1)[:other]  # 2tp + fp + fn
        out[i] = np.divide(2 * tp, both, out=np.zeros(other), where=tp > 0)
    return out


def _interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(y_true: list[str], y_pred: list[str], labels: list[str], n: int, seed: int,
                 alpha: float = 0.05, groups: list | None = None) -> tuple[float, float] | None:
    """Percentile CI of macro-F1, resampling scored items (or, with groups, clusters) with replacement."""
    if not y_true or n <= 0:
        return None
    return _interval(_boot(y_true, y_pred, labels, n, seed, groups).mean(axis=1), alpha)


def bootstrap_cis(y_true: list[str], y_pred: list[str], labels: list[str], n: int, seed: int,
                  alpha: float = 0.05, groups: list | None = None) -> tuple[tuple[float, float] | None, dict]:
    """The macro-F1 CI and each label's F1 CI from one set of resamples (the macro CI equals
    bootstrap_ci's with the same seed)."""
    if not y_true or n <= 0:
        return None, {}
    b = _boot(y_true, y_pred, labels, n, seed, groups)
    return _interval(b.mean(axis=1), alpha), {l: _interval(b[:, i], alpha) for i, l in enumerate(labels)}


def bootstrap_gap_ci(a: tuple[list, list], b: tuple[list, list], labels: list[str], n: int, seed: int,
                     alpha: float = 0.05, groups: tuple[list | None, list | None] | None = None
                     ) -> tuple[float, float] | None:
    """CI of macro-F1(a) - macro-F1(b) for two independent sets of (true, predicted) labels, each
    resampled on its own (e.g. chat answers vs agent emails); groups: (clusters of a, clusters of b),
    either may be None."""
    if not a[0] or not b[0] or n <= 0:
        return None
    ga, gb = groups or (None, None)
    d = _boot(*a, labels, n, seed, ga).mean(axis=1) - _boot(*b, labels, n, seed + 1, gb).mean(axis=1)
    return _interval(d, alpha)


def bootstrap_paired_ci(y_true: list[str], pred_a: list[str], pred_b: list[str], labels: list[str], n: int,
                        seed: int, alpha: float = 0.05, groups: list | None = None) -> tuple[float, float] | None:
    """CI of macro-F1(pred_a) - macro-F1(pred_b) for two classifiers on the same items: both are
    scored on the same resamples (same seed, truth and clusters draw the same items), so what the
    two share does not widen the interval."""
    if not y_true or n <= 0:
        return None
    d = _boot(y_true, pred_a, labels, n, seed, groups).mean(axis=1) - \
        _boot(y_true, pred_b, labels, n, seed, groups).mean(axis=1)
    return _interval(d, alpha)


def mean_sem(values: list[float]) -> tuple[float, float | None] | None:
    """Mean and standard error of the mean (as the paper reports F1 over the break-character
    suffixes); the SEM is None for a single value."""
    if not values:
        return None
    v = np.array(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None)
