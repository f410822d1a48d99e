"""The simplest persona classifier: word and character n-gram TF-IDF + logistic regression."""

from __future__ import annotations

import pickle
from pathlib import Path


def fit(texts: list[str], labels: list[str], seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True)),
    ])
    clf = make_pipeline(features, LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
    clf.fit(texts, labels)
    return clf


def save(clf, path: Path) -> None:
    tmp = Path(str(path) + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(clf, f)
    tmp.replace(path)


def load(path: Path):
    with Path(path).open("rb") as f:
        return pickle.load(f)
