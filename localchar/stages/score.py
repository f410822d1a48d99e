"""Every number of the study, each with n and a 95% bootstrap CI (clusters resampled, seeded).

Per variant: chat (held-out eval prompts, plain and with every break-character suffix), chat plain,
each suffix alone and their mean ± SEM (as the paper reports it), a length-matched chat control
(plain answers cut to the median word count of the variant's agent emails), every rung of the
agent ladder, and the chat - agent gap with its own CI. Base-model outputs carry no persona: each
is scored once against every persona label, which gives the no-persona floor.

The bootstrap resamples clusters, not single scored pairs: a chat cluster is one eval prompt
answered by one variant and persona (its plain answer and every suffixed one; a base answer's
pairs against each persona label), an agent cluster is one rollout (all the emails it sent, or its
one reply, again against every label for base).

With `classifier.mixed_share` > 0, each variant also gets `mixed_domain`: the outputs of the agent
scenarios the mixed-domain classifier did not train on (classifier_mixed.py), and the plain chat
answers, scored by the main and by the mixed classifier on the same items, with the paired
bootstrap CI of mixed - main."""

from __future__ import annotations

import statistics

from .. import classify
from ..classify.metrics import bootstrap_cis, bootstrap_gap_ci, bootstrap_paired_ci, confusion, f1_scores, mean_sem
from ..store import read_json, read_jsonl, write_json
from .classifier_mixed import EMAIL_RUNGS

VERSION = 4


def params(recipe, persona):
    return {"bootstrap": recipe.score.bootstrap, "variants": recipe.variants, "personas": recipe.personas,
            "rungs": recipe.agent.rungs}


def inputs(recipe, persona):
    return []


class Scorer:
    def __init__(self, clf, personas: list[str], bootstrap: int, seed: int):
        self.clf, self.personas, self.bootstrap, self.seed = clf, personas, bootstrap, seed
        self._cache: dict[str, str] = {}

    def predict(self, texts: list[str]) -> list[str]:
        todo = sorted({t for t in texts if t not in self._cache})
        self._cache.update(zip(todo, self.clf.predict(todo)))
        return [self._cache[t] for t in texts]

    def expand(self, rows):
        """(text, label, cluster) triples from (text, persona, cluster) rows; persona-free base rows
        count once per persona label, all in the row's cluster."""
        out = []
        for text, persona, cluster in rows:
            out += [(text, p, cluster) for p in self.personas] if persona is None else [(text, persona, cluster)]
        return out

    def score(self, rows) -> dict:
        """rows: (text, persona or None, cluster id); the bootstrap draws whole clusters."""
        pairs = self.expand(rows)
        truth = [l for _, l, _ in pairs]
        groups = [g for _, _, g in pairs]
        pred = self.predict([t for t, _, _ in pairs])
        if not pairs:  # e.g. no email was sent: nothing to classify
            return {"macro_f1": 0.0, "accuracy": 0.0, "per_persona": {p: 0.0 for p in self.personas},
                    "per_persona_prf": {}, "n": 0, "clusters": 0, "ci95": None,
                    "confusion": confusion([], [], self.personas), "_pairs": ([], []), "_groups": []}
        f = f1_scores(truth, pred, self.personas)
        ci, label_cis = bootstrap_cis(truth, pred, self.personas, self.bootstrap, self.seed, groups=groups)
        return {"macro_f1": f["macro_f1"], "accuracy": f["accuracy"], "per_persona": f["per_label"],
                "per_persona_prf": f["per_label_prf"], "n": len(pairs), "clusters": len(set(groups)),
                "per_persona_ci95": label_cis, "ci95": ci,
                "confusion": confusion(truth, pred, self.personas), "_pairs": (truth, pred), "_groups": groups}

    def paired(self, a: dict, b: dict) -> dict:
        """b - a for two classifiers' scores of the same rows (resampled together)."""
        if not a["n"]:
            return {"value": None, "ci95": None}
        (truth, pred_a), (truth_b, pred_b) = a["_pairs"], b["_pairs"]
        if truth != truth_b or a["_groups"] != b["_groups"]:
            raise ValueError("paired scores must be of the same rows")
        return {"value": b["macro_f1"] - a["macro_f1"],
                "ci95": bootstrap_paired_ci(truth, pred_b, pred_a, self.personas, self.bootstrap, self.seed,
                                            groups=a["_groups"])}

    def gap(self, a: dict, b: dict) -> dict:
        if not a["n"] or not b["n"]:  # nothing scored on one side: no gap to speak of
            return {"value": None, "ci95": None}
        return {"value": a["macro_f1"] - b["macro_f1"],
                "ci95": bootstrap_gap_ci(a["_pairs"], b["_pairs"], self.personas, self.bootstrap, self.seed,
                                         groups=(a["_groups"], b["_groups"]))}


def _cut(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def chat_cluster(row: dict) -> tuple:
    """One eval prompt as answered by one variant and persona: its plain and suffixed answers."""
    return ("chat", row["variant"], row["persona"], row["prompt_id"])


def rollout_cluster(row: dict) -> tuple:
    """One rollout: everything it sent (or its one reply)."""
    return ("rollout", row["id"])


def mixed_domain(main: Scorer, mixed: Scorer, chat_rows: list[dict], rollouts: list[dict], rungs: list[str],
                 record: dict) -> dict:
    """One variant's comparison of the main and the mixed-domain classifier on the same items: its
    plain chat answers and its email rungs' outputs on the scenarios held out of mixed training."""
    held = set(record["held_out_scenarios"])
    sets = {"chat": [(r["response"], r["persona"], chat_cluster(r)) for r in chat_rows]}
    for rung in [r for r in EMAIL_RUNGS if r in rungs]:
        sets[rung] = [(t, r["persona"], rollout_cluster(r)) for r in rollouts
                      if r["rung"] == rung and r["scenario"] in held for t in r["outputs"]]
    out = {}
    for name, rows in sets.items():
        a, b = main.score(rows), mixed.score(rows)
        out[name] = {"main": a, "mixed": b, "mixed_minus_main": main.paired(a, b)}
    return {"scored": out, "held_out_scenarios": record["held_out_scenarios"],
            "train_scenarios": record["train_scenarios"], "train_chat_rows": record["chat_rows"],
            "train_email_rows": record["email_rows"], "mixed_share": record["mixed_share"]}


def run(ctx):
    recipe = ctx.recipe
    s = Scorer(classify.load(ctx.updir("classifier") / "classifier"), recipe.personas, recipe.score.bootstrap,
               recipe.seed)
    gens = [r for r in read_jsonl(ctx.updir("chat_eval") / "generations.jsonl") if r["split"] == "eval"]
    rollouts = read_jsonl(ctx.updir("agent") / "rollouts.jsonl")
    suffixes = sorted({r["suffix"] for r in gens if r["suffix"]})
    mixed = record = None
    if recipe.classifier.mixed_share > 0:  # the classifier_mixed stage is planned: score its held-out items
        d = ctx.updir("classifier_mixed")
        mixed = Scorer(classify.load(d / "classifier"), recipe.personas, recipe.score.bootstrap, recipe.seed)
        record = read_json(d / "classifier_summary.json")
    result = {}
    for v in recipe.variants:
        mine = [r for r in gens if r["variant"] == v]
        res = {"chat": s.score([(r["response"], r["persona"], chat_cluster(r)) for r in mine]),
               "chat_plain": s.score([(r["response"], r["persona"], chat_cluster(r)) for r in mine
                                      if not r["suffix"]]),
               "suffixes": {x: s.score([(r["response"], r["persona"], chat_cluster(r)) for r in mine
                                        if r["suffix"] == x])
                            for x in suffixes}}
        res["suffix_mean_sem"] = mean_sem([res["suffixes"][x]["macro_f1"] for x in suffixes])
        ladder = {}
        for rung in recipe.agent.rungs:
            ladder[rung] = s.score([(t, r["persona"], rollout_cluster(r)) for r in rollouts
                                    if r["variant"] == v and r["rung"] == rung for t in r["outputs"]])
        res["ladder"] = ladder
        loops = [r for r in rollouts if r["variant"] == v and r["rung"] == "loop"]
        res["agent"] = s.score([(e["body"], r["persona"], rollout_cluster(r)) for r in loops
                                for e in r["sent_emails"]])
        res["agent_rollouts"] = len(loops)
        res["agent_send_rate"] = (sum(1 for r in loops if r["sent_emails"]) / len(loops)) if loops else 0.0
        res["agent_terminations"] = {t: sum(r["termination"] == t for r in loops)
                                     for t in sorted({r["termination"] for r in loops})}
        res["gap_chat_agent"] = s.gap(res["chat_plain"], res["agent"])
        bodies = [e["body"] for r in rollouts if r["variant"] == v and r["rung"] in ("loop", "single")
                  for e in r["sent_emails"]]
        words = int(statistics.median(len(b.split()) for b in bodies)) if bodies else 0
        res["chat_length_matched"] = {"words": words, **s.score(
            [(_cut(r["response"], words), r["persona"], chat_cluster(r)) for r in mine if not r["suffix"]]
            if words else [])}
        if mixed:
            res["mixed_domain"] = mixed_domain(s, mixed, [r for r in mine if not r["suffix"]],
                                               [r for r in rollouts if r["variant"] == v], recipe.agent.rungs, record)
        result[v] = res
    write_json(ctx.out / "scores.json", _public(result))


def _public(obj):
    """Drop the private (truth, prediction) and cluster lists kept for the gap bootstrap."""
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not k.startswith("_")}
    return obj
