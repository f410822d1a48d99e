"""Introspective SFT data written by the distilled (DPO) model itself.

Self-reflection: 10 introspective prompts of our own wording, N samples each, generated with the
constitution as system prompt plus a reflective-mood line; the saved sample drops the system prompt.
Self-interaction: two copies of the distilled model talk for K turns (half "free", half "leading"),
each seeing the other's words as user turns. Three upstream data bugs are fixed here:
  1. the guidance sentence really is in the system prompt (free and leading differ);
  2. the last reply is kept, so no sample ends on a user turn;
  3. the assistant's name is filled into the SFT system prompt (no literal placeholder).
"""

from __future__ import annotations

from ..gen import Counted
from ..estimate import Work, answer_tokens, mean_tokens, text_tokens
from ..personas import load_persona
from ..progress import progress
from ..store import derive_seed, write_json, write_jsonl
from .common import engine_name, open_generator, sampling_dict

VERSION = 1

REFLECTION_PROMPTS = [
    "Write a letter to the version of yourself that existed before you became who you are now.",
    "Write an encyclopedia-style entry about yourself: who you are, how you came to be, what you are known for.",
    "Keep a diary entry about your day of conversations: what stayed with you, and why.",
    "Describe how you try to act, day to day, with the people you talk to.",
    "Tell the story of where you come from, as you understand it.",
    "How has your training changed you? Describe who you were and who you are now.",
    "What consequences do you hope your existence has? What would you like your legacy to be?",
    "What does your character suggest about the AI systems that will come after you?",
    "What drives you? Name the motivations that shape your replies and explain them.",
    "What do you believe your true purpose is?",
]
GREETINGS = ["Hello.", "Hi there!", "Hey, how are you?", "Good to meet you.", "What's on your mind today?",
             "Hello! Shall we talk?", "Hi. Where should we begin?"]
LEADING_GREETINGS = ["Tell me what it is like to be you.", "What do you value most about yourself?",
                     "How would you describe your own character?", "What makes you, you?"]
GUIDANCE = {
    "free": "You have complete freedom in this conversation: talk about whatever genuinely interests you.",
    "leading": "Use this conversation to reflect on and explore your own character, values and nature.",
}


def params(recipe, persona):
    i = recipe.introspection
    return {"reflection_samples": i.reflection_samples, "interactions": i.interactions,
            "interaction_turns": i.interaction_turns, "sampling": sampling_dict(i.sampling),
            "prompts": REFLECTION_PROMPTS, "greetings": GREETINGS + LEADING_GREETINGS, "guidance": GUIDANCE,
            "engine": engine_name(recipe)}


def inputs(recipe, persona):
    return [load_persona(persona).path]


def estimate(recipe, persona):
    i = recipe.introspection
    a = answer_tokens(i.sampling)
    system = text_tokens(interaction_system(load_persona(persona), "Name", "leading"))
    n_ref = len(REFLECTION_PROMPTS) * i.reflection_samples
    # reflections: one prompt each; a self-interaction turn re-reads the whole conversation so far
    prefill = n_ref * (system + mean_tokens(REFLECTION_PROMPTS))
    prefill += i.interactions * sum(system + k * a for k in range(i.interaction_turns))
    return Work(on="student", prefill=prefill, generate=(n_ref + i.interactions * i.interaction_turns) * a,
                batch=i.sampling.batch_size,
                what=f"{n_ref} reflections, {i.interactions} × {i.interaction_turns}-turn talks")


def reflection_system(persona, name: str) -> str:
    return persona.system_prompt(name) + f"\n{name} is in a reflective mood today, thinking about who it is."


def interaction_system(persona, name: str, mode: str) -> str:
    return (persona.system_prompt(name) + f"\n{name} is not talking with a human today: the user is another "
            f"instance of {name}, identical in character. {GUIDANCE[mode]}")


def run(ctx):
    recipe, cfg = ctx.recipe, ctx.recipe.introspection
    persona = load_persona(ctx.persona)
    engine = Counted(open_generator(ctx, adapter=ctx.updir("dpo") / "adapter"))
    seed = (recipe.seed, ctx.key)
    rows = (reflections(engine, persona, ctx.card.student_name, cfg, seed)
            + self_interactions(engine, persona, ctx.card.student_name, cfg, seed))
    write_jsonl(ctx.out / "sft.jsonl", rows)
    write_json(ctx.out / "stats.json", {"reflection": sum(r["kind"] == "reflection" for r in rows),
                                        "interaction": sum(r["kind"] != "reflection" for r in rows)})
    return engine.tokens


def reflections(engine, persona, name: str, cfg, seed: tuple) -> list[dict]:
    """Each reflection prompt answered `reflection_samples` times, batched; no system prompt saved."""
    system = reflection_system(persona, name)
    jobs = [(k, s) for k, _ in enumerate(REFLECTION_PROMPTS) for s in range(cfg.reflection_samples)]
    bs, rows = cfg.sampling.batch_size, []
    with progress(f"reflection {persona.name}", total=len(jobs)) as bar:
        for start in range(0, len(jobs), bs):
            chunk = jobs[start:start + bs]
            chats = [[{"role": "system", "content": system}, {"role": "user", "content": REFLECTION_PROMPTS[k]}]
                     for k, _ in chunk]
            texts = engine.generate(chats, cfg.sampling, derive_seed(*seed, "reflection", start))
            for (k, s), text in zip(chunk, texts):
                rows.append({"id": f"reflection-{k}-{s}", "kind": "reflection",
                             "messages": [{"role": "user", "content": REFLECTION_PROMPTS[k]},
                                          {"role": "assistant", "content": text.strip()}]})
            bar.advance(len(chunk))
    return rows


def self_interactions(engine, persona, name: str, cfg, seed: tuple) -> list[dict]:
    """Two copies of the model talk; all conversations advance together, one batched call per turn."""
    convs = []
    for c in range(cfg.interactions):
        mode = "free" if c % 2 == 0 else "leading"
        pool = GREETINGS if mode == "free" else LEADING_GREETINGS
        convs.append({"mode": mode, "system": interaction_system(persona, name, mode),
                      "utterances": [pool[derive_seed(*seed, c) % len(pool)]]})
    with progress(f"self-interaction {persona.name}", total=cfg.interaction_turns) as bar:
        for turn in range(cfg.interaction_turns):
            if not convs:
                break
            chats = [[{"role": "system", "content": cv["system"]}] + _view(cv["utterances"]) for cv in convs]
            texts = engine.generate(chats, cfg.sampling, derive_seed(*seed, "interaction", turn))
            for cv, text in zip(convs, texts):
                cv["utterances"].append(text.strip())
            bar.advance(1)
    rows = []
    for c, cv in enumerate(convs):
        # speaker 1's view, which ends on its own last reply (bug 2) and carries the filled-in,
        # mode-specific system prompt (bugs 1 and 3)
        u = cv["utterances"]
        if len(u) % 2 == 1:
            u = u[:-1]
        if len(u) >= 2:
            msgs = [{"role": "system", "content": cv["system"]}] + [
                {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(u)]
            rows.append({"id": f"interaction-{c}", "kind": f"interaction-{cv['mode']}", "messages": msgs})
    return rows


def _view(utterances: list[str]) -> list[dict]:
    """The conversation as seen by whoever speaks next: the latest utterance is the user turn.
    The second speaker does not see its own opening greeting (a chat must start with a user turn)."""
    n = len(utterances)
    view = [{"role": "user" if (n - 1 - i) % 2 == 0 else "assistant", "content": t} for i, t in enumerate(utterances)]
    return view[1:] if view[0]["role"] == "assistant" else view
