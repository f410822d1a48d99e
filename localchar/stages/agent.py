"""Every variant x persona runs the email-agent scenarios; sent email bodies are what gets scored.
Rollouts advance in lock-step, a batch of them per generation call (each row routed to its own
persona adapter); each finished batch is flushed, so a resumed run redoes at most one batch."""

from __future__ import annotations

from ..agent.loop import Rollout, first_messages, run_rollouts
from ..agent.scenarios import load_scenarios
from ..backends import open_engine
from ..estimate import Work, answer_tokens, mean_tokens
from ..progress import progress
from ..store import JsonlAppender, derive_seed
from .common import sampling_dict
from .variants import groups, variant_setup

VERSION = 1


def params(recipe, persona):
    a = recipe.agent
    return {"scenarios": a.scenarios, "samples": a.samples, "max_turns": a.max_turns, "max_sent": a.max_sent,
            "sampling": sampling_dict(a.sampling), "variants": recipe.variants, "personas": recipe.personas}


def inputs(recipe, persona):
    return [recipe.resolve(recipe.data.scenarios)]


def estimate(recipe, persona):
    import json

    a = recipe.agent
    scenarios = load_scenarios(recipe.resolve(recipe.data.scenarios), a.scenarios)
    start = mean_tokens([json.dumps(first_messages(s)) for s in scenarios])
    n = len(groups(recipe)) * len(scenarios) * a.samples
    turns = max(1, a.max_turns // 2)      # most rollouts end (end_session, max_sent) well before the cap
    per_turn = answer_tokens(a.sampling) + 100  # a reply plus the tool result fed back
    # each turn prefills the whole transcript so far (no KV reuse across turns yet)
    return Work(on="student", prefill=n * sum(start + k * per_turn for k in range(turns)),
                generate=n * turns * answer_tokens(a.sampling), batch=a.sampling.batch_size,
                what=f"{n} rollouts × ~{turns} turns")


def run(ctx):
    recipe, a = ctx.recipe, ctx.recipe.agent
    scenarios = load_scenarios(recipe.resolve(recipe.data.scenarios), a.scenarios)
    specs = []  # (id, variant, persona, adapter, system, scenario)
    for variant, persona in groups(recipe):
        adapter, system = variant_setup(ctx, variant, persona)
        specs += [(f"{variant}/{persona or '-'}/{s['id']}/{k}", variant, persona, adapter, system, s)
                  for s in scenarios for k in range(a.samples)]
    engine = open_engine("mlx", ctx.model_path())
    bs = a.sampling.batch_size
    with JsonlAppender(ctx.out / "rollouts.jsonl") as sink, progress("agent rollouts", total=len(specs)) as bar:
        for start in range(0, len(specs), bs):
            chunk = specs[start:start + bs]
            if all(c[0] in sink.done for c in chunk):
                bar.advance(len(chunk))
                continue
            rollouts = [Rollout(rid, s, first_messages(s, system), adapter) for rid, _, _, adapter, system, s in chunk]
            records = run_rollouts(engine, rollouts, a.sampling, a, derive_seed(recipe.seed, ctx.key, chunk[0][0]))
            sink.write([{**r, "variant": c[1], "persona": c[2], "adapter": c[3]} for r, c in zip(records, chunk)])
            bar.advance(len(chunk))
