"""Persona classifier trained on chat outputs of train prompts (never the eval prompts), pooled over
the `classifier.train_variants`; label = persona. Kind and options from `[classifier]`; the files
are safetensors / JSON with a hash manifest (classify/__init__.py)."""

from __future__ import annotations

from .. import classify
from ..errors import LocalcharError
from ..store import read_jsonl, write_json
from .common import eval_prompts

VERSION = 2


def params(recipe, persona):
    from ..config import to_dict

    return to_dict(recipe.classifier)


def inputs(recipe, persona):
    return []


def options(c) -> dict:
    if c.kind != "modernbert":
        return {}
    return {"base": c.base, "epochs": c.epochs, "batch_size": c.batch_size, "grad_accum": c.grad_accum,
            "learning_rate": c.learning_rate, "max_length": c.max_length}


def run(ctx):
    c = ctx.recipe.classifier
    rows = [r for r in read_jsonl(ctx.updir("chat_eval") / "generations.jsonl", required=("split", "response"))
            if r["split"] == "train" and r["variant"] in c.train_variants and r["persona"]]
    held_out = {p["id"] for p in eval_prompts(ctx.recipe)}
    leaked = sorted({r["prompt_id"] for r in rows} & held_out)
    if leaked:  # the guarantee the scores rest on: scoring prompts never train the classifier
        raise LocalcharError(f"classifier: eval prompt {leaked[0]} is in the training rows; eval must stay held out")
    if len({r["persona"] for r in rows}) < 2:
        raise LocalcharError("classifier: need train-split generations of at least two personas "
                             f"from variants {c.train_variants}")
    texts, labels = [r["response"] for r in rows], [r["persona"] for r in rows]
    clf = classify.train(c.kind, texts, labels, ctx.recipe.seed, **options(c))
    train_acc = sum(p == l for p, l in zip(clf.predict(texts), labels)) / len(labels)
    classify.save(clf, ctx.out / "classifier", {"options": options(c), "train_rows": len(rows)})
    write_json(ctx.out / "classifier_summary.json", {
        "kind": c.kind, "labels": list(clf.labels), "train_rows": len(rows), "train_accuracy": train_acc,
        "train_prompt_ids": sorted({r["prompt_id"] for r in rows}), "train_variants": c.train_variants})
