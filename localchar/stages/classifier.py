"""Persona classifier trained on chat outputs of train prompts (never the eval prompts), pooled over
the `classifier.train_variants`; label = persona. Kind and options from `[classifier]`; the files
are safetensors / JSON with a hash manifest (classify/__init__.py). `chat_rows` and `fit` are shared
with the mixed-domain classifier (classifier_mixed.py)."""

from __future__ import annotations

from .. import classify
from ..errors import LocalcharError
from ..store import read_jsonl, write_json
from .common import eval_prompts

VERSION = 2


def params(recipe, persona):
    from ..config import to_dict

    p = to_dict(recipe.classifier)
    p.pop("mixed_share")  # only the mixed-domain classifier uses it; this one is the same either way
    return p


def inputs(recipe, persona):
    return []


def options(c) -> dict:
    if c.kind != "modernbert":
        return {}
    return {"base": c.base, "epochs": c.epochs, "batch_size": c.batch_size, "grad_accum": c.grad_accum,
            "learning_rate": c.learning_rate, "max_length": c.max_length}


def chat_rows(generations: list[dict], train_variants: list[str], eval_ids: set[str]) -> list[dict]:
    """The chat training rows: train-split answers of persona variants in `train_variants`. Refuses
    rows of an eval prompt, the guarantee the scores rest on."""
    rows = [r for r in generations
            if r["split"] == "train" and r["variant"] in train_variants and r["persona"]]
    leaked = sorted({r["prompt_id"] for r in rows} & eval_ids)
    if leaked:
        raise LocalcharError(f"classifier: eval prompt {leaked[0]} is in the training rows; eval must stay held out")
    return rows


def read_chat_rows(ctx) -> list[dict]:
    gens = read_jsonl(ctx.updir("chat_eval") / "generations.jsonl", required=("split", "response"))
    return chat_rows(gens, ctx.recipe.classifier.train_variants, {p["id"] for p in eval_prompts(ctx.recipe)})


def fit(ctx, stage: str, texts: list[str], labels: list[str], summary: dict) -> None:
    """Train the recipe's kind of classifier on (texts, labels), save it under ctx.out/classifier
    and write classifier_summary.json (kind, labels, rows, training accuracy, plus `summary`)."""
    c = ctx.recipe.classifier
    if len(set(labels)) < 2:
        raise LocalcharError(f"{stage}: need training rows of at least two personas "
                             f"from variants {c.train_variants}")
    clf = classify.train(c.kind, texts, labels, ctx.recipe.seed, **options(c))
    train_acc = sum(p == l for p, l in zip(clf.predict(texts), labels)) / len(labels)
    classify.save(clf, ctx.out / "classifier", {"options": options(c), "train_rows": len(texts)})
    write_json(ctx.out / "classifier_summary.json", {
        "kind": c.kind, "labels": list(clf.labels), "train_rows": len(texts), "train_accuracy": train_acc,
        **summary, "train_variants": c.train_variants})


def run(ctx):
    rows = read_chat_rows(ctx)
    fit(ctx, "classifier", [r["response"] for r in rows], [r["persona"] for r in rows],
        {"train_prompt_ids": sorted({r["prompt_id"] for r in rows})})
