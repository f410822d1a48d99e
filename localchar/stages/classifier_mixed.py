"""Mixed-domain classifier, the `classifier.mixed_share` ablation (planned only when it is > 0).

Is the chat -> agent drop a persona signal the emails lack, or a classifier that never saw an
email? This classifier is trained like the main one (same kind, options and chat training rows,
classifier.py) plus the emails of a share of the agent scenarios: sent bodies of the `single` and
`loop` rungs and the drafted bodies of `draft` and `agent_draft`, of the train variants' personas. The split is by scenario,
never by email or rollout, so every rollout of a held-out scenario (any rung, variant, persona,
sample) stays out of training; it is seeded by the recipe seed alone, so a larger share holds the
smaller share's training scenarios. The score stage scores the held-out scenarios' outputs with
both classifiers, on the same items."""

from __future__ import annotations

import numpy as np

from ..config import EMAIL_RUNGS
from ..errors import LocalcharError
from ..store import derive_seed, read_jsonl
from .classifier import chat_rows, fit

VERSION = 2


def enabled(recipe) -> bool:
    return recipe.classifier.mixed_share > 0


def params(recipe, persona):
    from ..config import to_dict

    return to_dict(recipe.classifier)


def inputs(recipe, persona):
    return []


def split_scenarios(scenarios, share: float, seed: int) -> tuple[list[str], list[str]]:
    """(training scenarios, held-out scenarios): round(share x count) of them, at least one and never
    all, in a seeded order that does not depend on the share."""
    ids = sorted(set(scenarios))
    if len(ids) < 2:
        raise LocalcharError(f"classifier_mixed: needs at least two agent scenarios to train on some and score "
                             f"the rest, got {len(ids)} (agent.scenarios)")
    k = min(len(ids) - 1, max(1, round(share * len(ids))))
    order = np.random.default_rng(derive_seed(seed, "classifier.mixed_share")).permutation(len(ids))
    train = sorted(ids[i] for i in order[:k])
    return train, sorted(set(ids) - set(train))


def training_set(generations: list[dict], rollouts: list[dict], train_variants: list[str], eval_ids: set[str],
                 share: float, seed: int) -> tuple[list[str], list[str], dict]:
    """(texts, labels, record): the main classifier's chat rows plus the emails of the training
    scenarios' email-rung rollouts of persona variants in `train_variants`; the record names the
    scenarios and rollouts used and those held out."""
    chat = chat_rows(generations, train_variants, eval_ids)
    train_sc, held_sc = split_scenarios([r["scenario"] for r in rollouts], share, seed)
    train_set = set(train_sc)
    used = [r for r in rollouts if r["scenario"] in train_set and r["rung"] in EMAIL_RUNGS
            and r["variant"] in train_variants and r["persona"]]
    emails = [(t, r["persona"]) for r in used for t in r["outputs"]]
    record = {"mixed_share": share, "chat_rows": len(chat), "email_rows": len(emails),
              "email_rungs": sorted({r["rung"] for r in used if r["outputs"]}),  # those that gave emails
              "train_prompt_ids": sorted({r["prompt_id"] for r in chat}),
              "train_scenarios": train_sc, "held_out_scenarios": held_sc,
              "train_rollouts": sorted(r["id"] for r in used if r["outputs"])}
    texts = [r["response"] for r in chat] + [t for t, _ in emails]
    labels = [r["persona"] for r in chat] + [p for _, p in emails]
    return texts, labels, record


def run(ctx):
    from .common import eval_prompts

    recipe = ctx.recipe
    rollouts = read_jsonl(ctx.updir("agent") / "rollouts.jsonl", required=("scenario", "rung", "outputs"))
    gens = read_jsonl(ctx.updir("chat_eval") / "generations.jsonl", required=("split", "response"))
    texts, labels, record = training_set(gens, rollouts, recipe.classifier.train_variants,
                                         {p["id"] for p in eval_prompts(recipe)}, recipe.classifier.mixed_share,
                                         recipe.seed)
    fit(ctx, "classifier_mixed", texts, labels, record)
