"""Every variant x persona runs every scenario on every rung of the ablation ladder (agent/ladder.py:
chat, draft, agent_draft, single, loop), at the same quantization as the chat eval unless
agent.quant says otherwise. One JSONL row per rollout: scenario id and hash, persona, variant, rung,
seed, transcript, sent emails, parse events, termination, token counts. Rollouts advance in
lock-step, a batch of them per generation call (each row routed to its own persona adapter); each
finished batch is flushed, so a resumed run redoes at most one batch."""

from __future__ import annotations

from ..agent.ladder import make_rollout, rung_messages
from ..agent.loop import run_rollouts
from ..agent.scenarios import load_scenarios
from ..gen import Counted
from ..estimate import Work, answer_tokens, mean_tokens
from ..progress import progress
from ..store import JsonlAppender, derive_seed
from .common import engine_name, open_generator, sampling_dict
from .variants import groups, variant_setup

VERSION = 4


def params(recipe, persona):
    a = recipe.agent
    return {"scenarios": a.scenarios, "samples": a.samples, "rungs": a.rungs, "tool_format": a.tool_format,
            "constrained": a.constrained,
            "max_turns": a.max_turns,
            "max_sent": a.max_sent, "engine": engine_name(recipe), "quant": recipe.agent_quant(),
            "sampling": sampling_dict(a.sampling), "variants": recipe.variants, "personas": recipe.personas,
            "persona_strength": recipe.persona_strength}


def inputs(recipe, persona):
    return [recipe.resolve(recipe.data.scenarios)]


def estimate(recipe, persona):
    import json

    a = recipe.agent
    scenarios = load_scenarios(recipe.resolve(recipe.data.scenarios), a.scenarios)
    n = len(groups(recipe)) * len(scenarios) * a.samples
    prefill = generate = 0.0
    for rung in a.rungs:
        start = mean_tokens([json.dumps(rung_messages(s, rung)) for s in scenarios])
        turns = max(1, a.max_turns // 2) if rung == "loop" else 1  # most loops stop well before the cap
        per_turn = answer_tokens(a.sampling) + 100  # a reply plus the tool result fed back
        # the MLX engine keeps each rollout's KV cache between turns: a turn prefills what it adds
        prefill += n * (start + (turns - 1) * per_turn)
        generate += n * turns * answer_tokens(a.sampling)
    return Work(on="student", prefill=prefill, generate=generate, batch=a.sampling.batch_size,
                what=f"{n} rollouts × {len(a.rungs)} rungs")


def run(ctx):
    recipe, a = ctx.recipe, ctx.recipe.agent
    scenarios = load_scenarios(recipe.resolve(recipe.data.scenarios), a.scenarios)
    specs = []  # (row id, rung, meta, adapter, system, scenario)
    for rung in a.rungs:  # rung-major: one-turn rungs share batches, loops share batches
        for variant, persona in groups(recipe):
            adapter, system = variant_setup(ctx, variant, persona)
            for s in scenarios:
                for k in range(a.samples):
                    meta = {"variant": variant, "persona": persona, "sample": k,
                            "seed": derive_seed(recipe.seed, s["id"], variant, persona, rung, k)}
                    specs.append((f"{rung}/{variant}/{persona or '-'}/{s['id']}/{k}", rung, meta, adapter, system, s))
    engine = Counted(open_generator(ctx, strength=recipe.persona_strength, quant=recipe.agent_quant()))
    native = a.tool_format == "native"
    if native and not engine.supports_tools:
        from ..errors import LocalcharError

        raise LocalcharError(f"agent.tool_format = 'native': the chat template of {ctx.card.name} has no tool "
                             "support (Gemma-3's has none); use 'uniform'")
    bs = a.sampling.batch_size
    with JsonlAppender(ctx.out / "rollouts.jsonl") as sink, progress("agent rollouts", total=len(specs)) as bar:
        for start in range(0, len(specs), bs):
            chunk = specs[start:start + bs]
            if all(c[0] in sink.done for c in chunk):
                bar.advance(len(chunk))
                continue
            rollouts = [make_rollout(rid, s, rung, system, adapter, native, a.constrained, **meta)
                        for rid, rung, meta, adapter, system, s in chunk]
            sink.write(run_rollouts(engine, rollouts, a.sampling, a))
            bar.advance(len(chunk))
    return engine.tokens
