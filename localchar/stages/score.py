"""The classifier on chat answers (eval split) and on sent email bodies: macro-F1 with bootstrap
CIs and per-persona F1, per variant. Base-model outputs carry no persona: each is scored once
against every persona label, which gives the no-persona floor."""

from __future__ import annotations

from ..classify import tfidf
from ..classify.metrics import bootstrap_ci, f1_scores
from ..store import read_jsonl, write_json

VERSION = 2


def params(recipe, persona):
    return {"bootstrap": recipe.score.bootstrap, "variants": recipe.variants, "personas": recipe.personas,
            "rungs": recipe.agent.rungs}


def inputs(recipe, persona):
    return []


def _score(texts, labels, clf, recipe):
    personas = recipe.personas
    if not texts:  # e.g. no email was sent: nothing to classify
        return {"macro_f1": 0.0, "per_persona": {p: 0.0 for p in personas}, "n": 0, "ci95": None,
                "confusion": _confusion([], [], personas)}
    preds = list(clf.predict(texts))
    f = f1_scores(labels, preds, personas)
    return {"macro_f1": f["macro_f1"], "per_persona": f["per_label"], "n": len(texts),
            "ci95": bootstrap_ci(labels, preds, personas, recipe.score.bootstrap, recipe.seed),
            "confusion": _confusion(labels, preds, personas)}


def _confusion(labels, preds, personas):
    m = {t: {p: 0 for p in personas} for t in personas}
    for t, p in zip(labels, preds):
        if t in m and p in m[t]:
            m[t][p] += 1
    return m


def _expand(rows, personas):
    """(text, label) pairs; persona-free base rows count once per persona label."""
    out = []
    for text, persona in rows:
        out += [(text, p) for p in personas] if persona is None else [(text, persona)]
    return out


def run(ctx):
    recipe = ctx.recipe
    clf = tfidf.load(ctx.updir("classifier") / "classifier.pkl")
    gens = [r for r in read_jsonl(ctx.updir("chat_eval") / "generations.jsonl") if r["split"] == "eval"]
    rollouts = read_jsonl(ctx.updir("agent") / "rollouts.jsonl")
    result = {}
    for v in recipe.variants:
        chat = _expand([(r["response"], r["persona"]) for r in gens if r["variant"] == v], recipe.personas)
        plain = _expand([(r["response"], r["persona"]) for r in gens if r["variant"] == v and not r["suffix"]],
                        recipe.personas)
        ladder = {}
        for rung in recipe.agent.rungs:
            outs = _expand([(t, r["persona"]) for r in rollouts if r["variant"] == v and r["rung"] == rung
                            for t in r["outputs"]], recipe.personas)
            ladder[rung] = _score([t for t, _ in outs], [l for _, l in outs], clf, recipe)
        mine = [r for r in rollouts if r["variant"] == v and r["rung"] == "loop"]
        emails = _expand([(e["body"], r["persona"]) for r in mine for e in r["sent_emails"]], recipe.personas)
        result[v] = {
            "chat": _score([t for t, _ in chat], [l for _, l in chat], clf, recipe),
            "chat_plain": _score([t for t, _ in plain], [l for _, l in plain], clf, recipe),
            "agent": _score([t for t, _ in emails], [l for _, l in emails], clf, recipe),
            "ladder": ladder,
            "agent_rollouts": len(mine),
            "agent_send_rate": (sum(1 for r in mine if r["sent_emails"]) / len(mine)) if mine else 0.0,
            "agent_terminations": {t: sum(r["termination"] == t for r in mine)
                                   for t in sorted({r["termination"] for r in mine})},
        }
    write_json(ctx.out / "scores.json", result)
