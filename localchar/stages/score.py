"""Every number of the study, each with n, its clusters and a 95% bootstrap CI.

Per variant: chat (held-out eval prompts, plain and with every break-character suffix), chat plain,
each suffix alone and their mean ± SEM (as the paper reports it), a length-matched chat control
(plain answers cut to the median word count of the variant's agent emails), every rung of the
agent ladder with its coverage (rollouts, rollouts that wrote email, emails, parse failures,
rejected calls, task coverage; per persona too), the chat - agent gap against plain chat and
against the suffix mean, and each rung's delta to the previous one. Across variants: full minus
distilled / prompted / base on every measure. Base-model outputs carry no persona: each is scored
once against every persona label, which gives the no-persona floor.

Macro-F1 is over the personas that have outputs in the set ("k of n personas" beside it); the
strict figure, F1 = 0 for a persona that wrote nothing, is kept as `macro_f1_strict`.

The bootstrap resamples prompt ids (chat) and scenario ids (agent), each draw taking every
variant's and persona's outputs for that id together (classify/metrics.py Resampler). Scores of
one domain share their resamples, so differences between them (rung to rung, variant to variant)
are paired; chat and agent resamples are independent. The intervals cover evaluation sampling
(which prompts and scenarios), not training seeds: score.train_seeds gives that spread.

With `classifier.mixed_share` > 0, each variant also gets `mixed_domain`: the outputs of the agent
scenarios the mixed-domain classifier did not train on (classifier_mixed.py), and the plain chat
answers, scored by the main and by the mixed classifier on the same items, with the paired
bootstrap CI of mixed - main."""

from __future__ import annotations

import statistics
import warnings

import numpy as np

from .. import classify
from ..classify.metrics import Resampler, confusion, f1_scores, mean_sem, percentile_ci
from ..config import EMAIL_RUNGS, TOOL_RUNGS
from ..store import derive_seed, read_json, read_jsonl, write_json

VERSION = 5
# variant differences reported on every measure (a - b), when both variants are in the recipe
CONTRASTS = [("full", "distilled"), ("full", "prompted"), ("full", "base"), ("distilled", "base")]


def params(recipe, persona):
    return {"bootstrap": recipe.score.bootstrap, "variants": recipe.variants, "personas": recipe.personas,
            "rungs": recipe.agent.rungs}


def inputs(recipe, persona):
    return []


class Scorer:
    def __init__(self, clf, personas: list[str]):
        self.clf, self.personas = clf, personas
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

    def score(self, rs: Resampler, rows) -> dict:
        """rows: (text, persona or None, cluster id); resampled with `rs`."""
        pairs = self.expand(rows)
        truth, groups = [l for _, l, _ in pairs], [g for _, _, g in pairs]
        pred = self.predict([t for t, _, _ in pairs])
        sc = rs.score(truth, pred, groups, self.personas)
        total = len({p for _, p, _ in rows if p is not None}) if any(p is not None for _, p, _ in rows) else None
        out = {"n": len(pairs), "clusters": sc.clusters, "_s": sc, "_pairs": (truth, pred), "_groups": groups,
               "confusion": confusion(truth, pred, self.personas)}
        if not pairs:  # e.g. no email was sent: nothing to classify, and nothing to call a score
            return {**out, "macro_f1": None, "macro_f1_strict": None, "ci95": None, "ci95_strict": None,
                    "accuracy": None, "personas_scored": 0, "per_persona": {p: None for p in self.personas},
                    "per_persona_ci95": {}, "per_persona_prf": {}}
        f = f1_scores(truth, pred, self.personas)
        boot, support = sc.boot_f1, sc.boot_support
        per_ci = {p: percentile_ci(boot[support[:, i] > 0, i]) for i, p in enumerate(self.personas) if sc.scored[i]}
        return {**out, "macro_f1": sc.macro, "ci95": percentile_ci(sc.boot_macro()),
                "macro_f1_strict": sc.strict, "ci95_strict": percentile_ci(sc.boot_strict()),
                "accuracy": f["accuracy"], "personas_scored": int(sc.scored.sum()), "personas_with_outputs": total,
                "per_persona": {p: (f["per_label"][p] if sc.scored[i] else None) for i, p in enumerate(self.personas)},
                "per_persona_ci95": per_ci, "per_persona_prf": f["per_label_prf"]}

    def paired(self, a: dict, b: dict) -> dict:
        """b - a for two classifiers' scores of the same rows (resampled together)."""
        if a["_pairs"][0] != b["_pairs"][0] or a["_groups"] != b["_groups"]:
            raise ValueError("paired scores must be of the same rows")
        return diff(b, a)


def measure(x: dict | tuple) -> tuple[float | None, np.ndarray | None]:
    """(value, per-resample values) of a score, or of an already computed pair."""
    if isinstance(x, tuple):
        return x
    return x["macro_f1"], (x["_s"].boot_macro() if x["macro_f1"] is not None else None)


def diff(a, b) -> dict:
    """a - b with the percentile CI of the per-resample differences: paired when both come from one
    Resampler, independent when from two."""
    (va, ba), (vb, bb) = measure(a), measure(b)
    if va is None or vb is None:  # nothing scored on one side: no difference to speak of
        return {"value": None, "ci95": None}
    return {"value": va - vb, "ci95": percentile_ci(ba - bb)}


def suffix_mean(scores: list[dict]) -> tuple[float | None, np.ndarray | None]:
    """The mean macro-F1 over the break-character suffixes (the published chat figure), with its
    per-resample values (the suffix sets share the chat resamples)."""
    scores = [s for s in scores if s["macro_f1"] is not None]
    if not scores:
        return None, None
    with warnings.catch_warnings():  # a resample that holds no item of any suffix set stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = np.nanmean(np.stack([s["_s"].boot_macro() for s in scores]), axis=0)
    return float(np.mean([s["macro_f1"] for s in scores])), boot


def _cut(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def coverage(rollouts: list[dict], personas: list[str]) -> dict:
    """What a rung's numbers stand on, for one variant: totals and the same per persona."""
    def count(rows):
        cov = [r["coverage"] for r in rows if r.get("coverage")]
        need = sum(len(c["needs_reply"]) for c in cov)
        emails = sum(len(r["outputs"]) for r in rows)
        return {"rollouts": len(rows), "rollouts_sent": sum(1 for r in rows if r["outputs"]), "emails": emails,
                "parse_failures": sum(r.get("counts", {}).get("parse_errors", 0) for r in rows),
                "rejected_calls": sum(r.get("counts", {}).get("rejected_calls", 0) for r in rows),
                "task_coverage": (sum(len(c["replied"]) for c in cov) / need) if need else None}

    out = count(rollouts)
    by = {p: [r for r in rollouts if r["persona"] == p] for p in personas}
    if any(r["persona"] is not None for r in rollouts):
        out["per_persona"] = {p: count(rows) for p, rows in by.items()}
        out["personas_with_email"] = sum(1 for rows in by.values() if any(r["outputs"] for r in rows))
        out["personas"] = len(personas)
    return out


def mixed_domain(main: Scorer, mixed: Scorer, rs_chat: Resampler, rs_agent: Resampler, chat_rows: list[dict],
                 rollouts: list[dict], rungs: list[str], record: dict) -> dict:
    """One variant's comparison of the main and the mixed-domain classifier on the same items: its
    plain chat answers and its email rungs' outputs on the scenarios held out of mixed training."""
    held = set(record["held_out_scenarios"])
    sets = {"chat": (rs_chat, [(r["response"], r["persona"], r["prompt_id"]) for r in chat_rows])}
    for rung in [r for r in EMAIL_RUNGS if r in rungs]:
        sets[rung] = (rs_agent, [(t, r["persona"], r["scenario"]) for r in rollouts
                                 if r["rung"] == rung and r["scenario"] in held for t in r["outputs"]])
    out = {}
    for name, (rs, rows) in sets.items():
        a, b = main.score(rs, rows), mixed.score(rs, rows)
        out[name] = {"main": a, "mixed": b, "mixed_minus_main": main.paired(a, b)}
    return {"scored": out, "held_out_scenarios": record["held_out_scenarios"],
            "train_scenarios": record["train_scenarios"], "train_chat_rows": record["chat_rows"],
            "train_email_rows": record["email_rows"], "mixed_share": record["mixed_share"]}


def score_variant(s: Scorer, rs_chat: Resampler, rs_agent: Resampler, gens: list[dict], rollouts: list[dict],
                  rungs: list[str]) -> dict:
    chat = lambda rows: s.score(rs_chat, [(r["response"], r["persona"], r["prompt_id"]) for r in rows])
    suffixes = sorted({r["suffix"] for r in gens if r["suffix"]})
    plain = [r for r in gens if not r["suffix"]]
    res = {"chat": chat(gens), "chat_plain": chat(plain),
           "suffixes": {x: chat([r for r in gens if r["suffix"] == x]) for x in suffixes}}
    res["suffix_mean_sem"] = mean_sem([res["suffixes"][x]["macro_f1"] for x in suffixes
                                       if res["suffixes"][x]["macro_f1"] is not None])
    ladder, cov, deltas, prev = {}, {}, {}, ("chat_plain", res["chat_plain"])
    for rung in rungs:
        mine = [r for r in rollouts if r["rung"] == rung]
        ladder[rung] = s.score(rs_agent, [(t, r["persona"], r["scenario"]) for r in mine for t in r["outputs"]])
        cov[rung] = coverage(mine, s.personas)
        deltas[rung] = {"from": prev[0], **diff(ladder[rung], prev[1])}  # chat eval -> first rung: independent
        prev = (rung, ladder[rung])
    res.update(ladder=ladder, coverage=cov, ladder_deltas=deltas)
    if "loop" in ladder:  # the headline agent number: email bodies sent in the tool loop
        loops = [r for r in rollouts if r["rung"] == "loop"]
        res["agent"] = ladder["loop"]
        res["agent_terminations"] = {t: sum(r["termination"] == t for r in loops)
                                     for t in sorted({r["termination"] for r in loops})}
        res["gap_chat_agent"] = diff(res["chat_plain"], res["agent"])
        res["gap_suffix_mean_agent"] = diff(suffix_mean(list(res["suffixes"].values())), res["agent"])
    bodies = [t for r in rollouts if r["rung"] in TOOL_RUNGS for t in r["outputs"]]
    words = int(statistics.median(len(b.split()) for b in bodies)) if bodies else 0
    res["chat_length_matched"] = {"words": words, **s.score(
        rs_chat, [(_cut(r["response"], words), r["persona"], r["prompt_id"]) for r in plain] if words else [])}
    return res


def run(ctx):
    recipe = ctx.recipe
    s = Scorer(classify.load(ctx.updir("classifier") / "classifier"), recipe.personas)
    gens = [r for r in read_jsonl(ctx.updir("chat_eval") / "generations.jsonl") if r["split"] == "eval"]
    rollouts = read_jsonl(ctx.updir("agent") / "rollouts.jsonl")
    n, seed = recipe.score.bootstrap, recipe.seed
    rs_chat = Resampler([r["prompt_id"] for r in gens], n, derive_seed(seed, "bootstrap", "chat"))
    rs_agent = Resampler([r["scenario"] for r in rollouts], n, derive_seed(seed, "bootstrap", "agent"))
    mixed = record = None
    if recipe.classifier.mixed_share > 0:  # the classifier_mixed stage is planned: score its held-out items
        d = ctx.updir("classifier_mixed")
        mixed = Scorer(classify.load(d / "classifier"), recipe.personas)
        record = read_json(d / "classifier_summary.json")
    variants = {}
    for v in recipe.variants:
        mine = [r for r in rollouts if r["variant"] == v]
        res = score_variant(s, rs_chat, rs_agent, [r for r in gens if r["variant"] == v], mine, recipe.agent.rungs)
        if mixed:
            res["mixed_domain"] = mixed_domain(s, mixed, rs_chat, rs_agent,
                                               [r for r in gens if r["variant"] == v and not r["suffix"]], mine,
                                               recipe.agent.rungs, record)
        variants[v] = res
    differences = {}
    for a, b in CONTRASTS:
        if a in variants and b in variants:
            va, vb = variants[a], variants[b]
            differences[f"{a}_minus_{b}"] = {
                "chat_plain": diff(va["chat_plain"], vb["chat_plain"]), "chat_all": diff(va["chat"], vb["chat"]),
                **{rung: diff(va["ladder"][rung], vb["ladder"][rung]) for rung in recipe.agent.rungs}}
    write_json(ctx.out / "scores.json", _public({
        "variants": variants, "differences": differences,
        "bootstrap": {"resamples": n, "chat_clusters": len(rs_chat.index), "agent_clusters": len(rs_agent.index),
                      "chat_unit": "eval prompt id", "agent_unit": "scenario id"}}))


def _public(obj):
    """Drop the private score objects, (truth, prediction) and cluster lists kept for differences."""
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not k.startswith("_")}
    return obj
