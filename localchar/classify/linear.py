"""A logistic-regression head as plain arrays: fitted with scikit-learn, stored as safetensors,
applied with numpy (no pickle anywhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fit(features, labels: list[str], seed: int, C: float = 10.0) -> dict:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=3000, C=C, random_state=seed)
    lr.fit(features, labels)
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row; make it one row per class
        coef, intercept = np.vstack([-coef[0], coef[0]]), np.array([-intercept[0], intercept[0]])
    return {"coef": coef.astype(np.float32), "intercept": intercept.astype(np.float32),
            "classes": [str(c) for c in lr.classes_]}


def scores(head: dict, features) -> np.ndarray:
    return np.asarray(features @ head["coef"].T) + head["intercept"]


def predict(head: dict, features) -> list[str]:
    idx = scores(head, features).argmax(axis=1)
    return [head["classes"][i] for i in idx]


def save(head: dict, path: Path) -> None:
    from safetensors.numpy import save_file

    # safetensors writes the raw buffer: a Fortran-ordered array (sklearn's coef_) must be made
    # C-contiguous first or it reloads transposed in memory
    save_file({"coef": np.ascontiguousarray(head["coef"]), "intercept": np.ascontiguousarray(head["intercept"])},
              str(path))


def load(path: Path, classes: list[str]) -> dict:
    from safetensors.numpy import load_file

    t = load_file(str(path))
    if t["coef"].shape[0] != len(classes):
        raise ValueError(f"{path}: {t['coef'].shape[0]} rows for {len(classes)} labels")
    return {"coef": t["coef"], "intercept": t["intercept"], "classes": list(classes)}
