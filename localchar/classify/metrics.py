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


class Resampler:
    """One set of cluster bootstrap resamples shared by every score of a domain: chat (clusters are
    eval prompt ids) or agent (scenario ids). A resample draws cluster ids with replacement and takes
    everything of each drawn id together, every variant's and persona's outputs for it, so what a
    prompt or a scenario does to all personas at once is resampled, and scores computed on the same
    resampler are paired (their differences get their own CIs). Two resamplers with different seeds
    are independent (chat vs agent)."""

    def __init__(self, clusters, n: int, seed: int):
        self.index = {c: i for i, c in enumerate(sorted(set(clusters), key=str))}
        k, self.n = len(self.index), max(0, n)
        rng = np.random.default_rng(seed)
        self.weights = np.stack([np.bincount(rng.integers(0, k, k), minlength=k) for _ in range(self.n)]) \
            if k and self.n else np.zeros((self.n, k), dtype=np.int64)

    def score(self, truth: list[str], pred: list[str], groups: list, labels: list[str]) -> "Scored":
        return Scored(self, truth, pred, groups, labels)


class Scored:
    """Per-label F1 of one scored set, at the point and on every resample of its Resampler.

    Macro-F1 is over the labels with support (true items) in the set: a persona that wrote nothing
    is not scored as lost, and on a resample the labels that resample still holds count. `strict`
    is over every label, F1 = 0 for those without support (the figure a pooled score would give)."""

    def __init__(self, rs: Resampler, truth, pred, groups, labels):
        self.labels, self.n = list(labels), len(truth)
        self.clusters = len(set(groups))
        index = {l: i for i, l in enumerate(self.labels)}
        L, K = len(self.labels), len(rs.index)
        tp, pp, sup = (np.zeros((K, L)) for _ in range(3))
        for t, p, g in zip(truth, pred, groups):
            k = rs.index[g]
            if t in index:
                sup[k, index[t]] += 1
            if p in index:
                pp[k, index[p]] += 1
            if t == p and t in index:
                tp[k, index[t]] += 1
        self.support = sup.sum(0)
        self.f1 = _f1(tp.sum(0), pp.sum(0) + self.support)
        w = rs.weights
        self.boot_f1 = _f1(w @ tp, w @ pp + w @ sup)           # (resamples, labels)
        self.boot_support = w @ sup
        self.scored = self.support > 0                          # the labels the macro is over

    @property
    def macro(self) -> float | None:
        return float(self.f1[self.scored].mean()) if self.scored.any() else None

    @property
    def strict(self) -> float:
        return float(self.f1.sum() / len(self.labels)) if self.labels else 0.0

    def boot_macro(self) -> np.ndarray:
        """Macro-F1 per resample over the scored labels that the resample holds (NaN if none)."""
        m = (self.boot_support > 0) & self.scored
        count = m.sum(1)
        return np.divide((self.boot_f1 * m).sum(1), count, out=np.full(len(count), np.nan), where=count > 0)

    def boot_strict(self) -> np.ndarray:
        return self.boot_f1.sum(1) / max(1, len(self.labels))


def _f1(tp, both):
    return np.divide(2 * tp, both, out=np.zeros_like(tp, dtype=float), where=tp > 0)


def percentile_ci(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float] | None:
    s = np.asarray(samples, dtype=float)
    s = s[~np.isnan(s)]
    return _interval(s, alpha) if len(s) else None
