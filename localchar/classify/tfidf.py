"""Word and character n-gram TF-IDF + logistic regression (scikit-learn only, no torch).

Stored without pickle: the two vocabularies and IDF vectors as JSON, the head as safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import linear

KIND = "tfidf"
SPECS = {"word": {"analyzer": "word", "ngram_range": [1, 2], "min_df": 1},
         "char": {"analyzer": "char_wb", "ngram_range": [2, 4], "min_df": 2}}


def _vectorizer(spec: dict, vocabulary: dict | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=spec["analyzer"], ngram_range=tuple(spec["ngram_range"]),
                           min_df=1 if vocabulary else spec["min_df"], sublinear_tf=True, vocabulary=vocabulary)


def fit_vectorizers(texts: list[str]) -> dict:
    vecs = {}
    for name, spec in SPECS.items():
        v = _vectorizer(spec)
        try:
            v.fit(texts)
        except ValueError:  # e.g. no char n-gram seen twice in a tiny set: keep every one
            v = _vectorizer({**spec, "min_df": 1}).fit(texts)
        vecs[name] = v
    return vecs


def save_vectorizers(vecs: dict, out: Path) -> str:
    state = {name: {"spec": SPECS[name], "idf": [float(x) for x in v.idf_],
                    "vocabulary": {t: int(i) for t, i in v.vocabulary_.items()}} for name, v in vecs.items()}
    (out / "tfidf.json").write_text(json.dumps(state, ensure_ascii=False))
    return "tfidf.json"


def load_vectorizers(d: Path) -> dict:
    state = json.loads((d / "tfidf.json").read_text())
    vecs = {}
    for name in SPECS:
        v = _vectorizer(state[name]["spec"], state[name]["vocabulary"])
        v.idf_ = np.array(state[name]["idf"])
        vecs[name] = v
    return vecs


def _features(vecs: dict, texts: list[str]):
    from scipy.sparse import hstack

    return hstack([vecs[k].transform(texts) for k in SPECS]).tocsr()


class TfidfClassifier:
    kind = KIND

    def __init__(self, vecs: dict, head: dict):
        self.vecs, self.head = vecs, head
        self.labels = head["classes"]

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], seed: int, **_):
        vecs = fit_vectorizers(texts)
        return cls(vecs, linear.fit(_features(vecs, texts), labels, seed))

    def features(self, texts: list[str]):
        return _features(self.vecs, texts)

    def predict(self, texts: list[str]) -> list[str]:
        return linear.predict(self.head, self.features(texts)) if texts else []

    def save(self, out: Path) -> list[str]:
        linear.save(self.head, out / "head.safetensors")
        return [save_vectorizers(self.vecs, out), "head.safetensors"]

    @classmethod
    def load(cls, d: Path, manifest: dict):
        return cls(load_vectorizers(d), linear.load(d / "head.safetensors", manifest["labels"]))
