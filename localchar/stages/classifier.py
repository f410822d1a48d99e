"""Persona classifier trained on chat outputs of train prompts (never the eval prompts), pooled over
the `classifier.train_variants`; label = persona."""

from __future__ import annotations

from ..classify import tfidf
from ..store import read_jsonl, write_json

VERSION = 1


def params(recipe, persona):
    return {"kind": recipe.classifier.kind, "train_variants": recipe.classifier.train_variants}


def inputs(recipe, persona):
    return []


def run(ctx):
    rows = [r for r in read_jsonl(ctx.updir("chat_eval") / "generations.jsonl", required=("split", "response"))
            if r["split"] == "train" and r["variant"] in ctx.recipe.classifier.train_variants and r["persona"]]
    if len({r["persona"] for r in rows}) < 2:
        from ..errors import LocalcharError

        raise LocalcharError("classifier: need train-split generations of at least two personas "
                             f"from variants {ctx.recipe.classifier.train_variants}")
    clf = tfidf.fit([r["response"] for r in rows], [r["persona"] for r in rows], ctx.recipe.seed)
    tfidf.save(clf, ctx.out / "classifier.pkl")
    train_acc = float((clf.predict([r["response"] for r in rows]) == [r["persona"] for r in rows]).mean())
    write_json(ctx.out / "classifier.json", {"kind": "tfidf", "labels": list(clf.classes_), "train_rows": len(rows),
                                             "train_accuracy": train_acc})
