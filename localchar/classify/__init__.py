"""Persona classifiers behind one interface: `train(kind, texts, labels, seed)` returns an object
with `.predict(texts)`, `.labels`, `.kind`; `save(clf, dir)` writes its files (safetensors and JSON,
no pickle) plus `classifier.json`, a manifest with each file's sha256; `load(dir)` verifies every
hash before it reads anything.

Kinds: tfidf (word + char n-grams, logistic regression; scikit-learn only), embed (MiniLM
sentence embeddings + logistic regression), tfidf+embed (both feature sets), modernbert (the
protocol's fine-tuned ModernBERT; torch + transformers)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LocalcharError
from ..store import sha256_file, write_json

KINDS = ("tfidf", "embed", "tfidf+embed", "modernbert")
DEFAULT_KIND = "tfidf"   # chosen by measurement: see docs/classifier.md
MANIFEST = "classifier.json"


def _cls(kind: str):
    if kind == "tfidf":
        from .tfidf import TfidfClassifier
        return TfidfClassifier
    if kind == "embed":
        from .embed import EmbedClassifier
        return EmbedClassifier
    if kind == "tfidf+embed":
        from .embed import TfidfEmbedClassifier
        return TfidfEmbedClassifier
    if kind == "modernbert":
        from .modernbert import ModernBertClassifier
        return ModernBertClassifier
    raise LocalcharError(f"classifier kind '{kind}' is unknown (kinds: {', '.join(KINDS)})")


def train(kind: str, texts: list[str], labels: list[str], seed: int, **options):
    if len(set(labels)) < 2:
        raise LocalcharError(f"classifier: need at least two labels to train, got {sorted(set(labels))}")
    return _cls(kind).fit(list(texts), list(labels), seed, **options)


def save(clf, out: Path, extra: dict | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = clf.save(out)
    manifest = {"kind": clf.kind, "labels": list(clf.labels),
                "files": {f: sha256_file(out / f) for f in files}, **(extra or {})}
    write_json(out / MANIFEST, manifest)  # last: a directory without it is not a classifier
    return manifest


def load(d: Path):
    from ..inputs import directory, read_json, regular_file

    d = directory(d, "classifier")
    if not (d / MANIFEST).exists():
        raise LocalcharError(f"{d}: not a classifier directory (no {MANIFEST})")
    where = d / MANIFEST
    manifest = read_json(where, limit=16 << 20)
    if not isinstance(manifest, dict) or manifest.get("kind") not in KINDS or not isinstance(manifest.get("labels"), list):
        raise LocalcharError(f"{where}: needs 'kind' (one of {', '.join(KINDS)}) and a 'labels' list")
    if len(manifest["labels"]) < 2 or not all(isinstance(x, str) and x for x in manifest["labels"]):
        raise LocalcharError(f"{where}: labels: expected two or more non-empty strings")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise LocalcharError(f"{where}: files: expected an object of file name -> sha256")
    root = d.resolve()
    for name, digest in files.items():
        p = d / name
        # the manifest names files inside its own directory only (no '..', no absolute paths, no
        # symlinks leading out)
        if Path(name).is_absolute() or ".." in Path(name).parts or not p.resolve().is_relative_to(root):
            raise LocalcharError(f"{where}: files: '{name[:80]}' is outside the classifier directory")
        if not p.exists():
            raise LocalcharError(f"{p}: missing (listed in {MANIFEST})")
        regular_file(p)
        if sha256_file(p) != digest:
            raise LocalcharError(f"{p}: hash mismatch: the file changed after the classifier was saved; retrain it")
    try:
        return _cls(manifest["kind"]).load(d, manifest)
    except (OSError, KeyError, ValueError, TypeError) as e:  # a file the manifest does not list, or odd contents
        raise LocalcharError(f"{d}: {manifest['kind']} classifier files unreadable ({type(e).__name__}: "
                             f"{str(e)[:120]})") from None
