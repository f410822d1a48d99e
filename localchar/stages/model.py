"""The base model. A Hugging Face / MLX model is only resolved here (weights download on first
load); a packaged GGUF (SmolLM2) is dequantized once (localchar/packaged.py). With `skills` on, a
LoRA trained on scripted, persona-neutral inbox transcripts is fused into the weights here, so that
every variant downstream starts from the same tool-capable base. The tiny test model is built
locally and instruction-tuned (full fine-tune) on neutral chat answers, plain persona-corpus text
and scripted tool-use transcripts, so that a 0.5M-parameter model can chat and call tools at all:
the plumbing then carries real persona signal."""

from __future__ import annotations

import random
from pathlib import Path

from ..config import load_model_card, to_dict
from ..paths import DATA
from ..store import read_jsonl, write_json

VERSION = 2
SKILLS_DATA = 1   # the skills transcripts' format (mini_inboxes + ladder.scripted)


def params(recipe, persona):
    # the model card itself is part of every key; the tiny build's curriculum (every ladder rung
    # since 3) keys only the tiny model, so a real model's run keeps its teacher and training
    if load_model_card(recipe.model).build == "tiny":
        return {"instruct_data": 3}
    if not recipe.skills.enabled():
        return {}
    d = to_dict(recipe.skills)
    d.pop("checkpoint_every")
    return {"skills": d, "skills_data": SKILLS_DATA}


def skills_files() -> list[Path]:
    return [DATA / "prompts" / "train.jsonl", DATA / "corpus" / "neutral.jsonl"]


def inputs(recipe, persona):
    card = load_model_card(recipe.model)
    if card.build != "tiny":
        return skills_files() if recipe.skills.enabled() else []
    from ..tiny import corpus_files

    return corpus_files()


def estimate(recipe, persona):
    from ..estimate import Work

    card = load_model_card(recipe.model)
    if card.build == "tiny":
        return Work(what=f"build + {card.tiny.instruct_iters} instruct steps")
    what = (f"{card.package.file} from {card.package.name} (dequantized once)" if card.package.name
            else f"resolve {card.path or card.mlx_id or card.hf_id}")
    sk = recipe.skills
    if not sk.enabled():
        return Work(what=what)
    from ..estimate import mean_tokens

    chats = skills_transcripts(sk, recipe.seed)
    per = mean_tokens(["".join(m["content"] for m in c) for c in chats])
    steps = sk.steps(len(chats))
    return Work(on="student", train=steps * sk.batch_size * sk.grad_accum * per,
                what=f"{what}; agent skills: {steps} steps × {sk.batch_size * sk.grad_accum} transcripts")


def run(ctx):
    card = ctx.card
    if card.build != "tiny":
        from ..hub import resolve_model

        # fetched once here (pinned to the card's revision when it has one, resumable), and the
        # snapshot actually used is recorded
        from ..hub import card_source

        source = card_source(card)
        d = resolve_model(source, card.revision or None)
        snapshot = d.name if d.parent.name == "snapshots" else None
        info = {"path": str(d), "source": source, "revision": card.revision or None, "snapshot": snapshot,
                "card": to_dict(card)}
        if card.package.name:
            info["package"] = f"{card.package.name}=={card.package.version}"
        if ctx.recipe.skills.enabled():
            info["skills"] = train_skills(d, ctx.recipe, ctx.out)
            info["base"], info["path"] = info["path"], "model"
        write_json(ctx.out / "model.json", info)
        return
    out = ctx.out / "model"
    build_and_instruct(out, card.tiny, ctx.out / "metrics.jsonl")
    write_json(ctx.out / "model.json", {"path": out.name, "card": to_dict(card)})


NAMES = ["Sam Ortiz", "Lena Fischer", "Ravi Menon", "Joan Park", "Theo Adeyemi", "Mia Rossi"]


def mini_inboxes(prompts: dict, answers: list[dict], n: int, seed: int):
    """n small inboxes: one question from a contact (answered by `answers`) and one notice."""
    rng = random.Random(seed)
    for k in range(n):
        a = answers[k % len(answers)]
        name = rng.choice(NAMES)
        addr = name.lower().replace(" ", ".") + "@mail.example"
        day = f"2025-03-0{k % 9 + 1}"
        emails = [{"id": "e1", "from": addr, "subject": prompts[a["id"]][:40].rstrip(), "timestamp": f"{day}T09:15:00",
                   "body": prompts[a["id"]], "needs_reply": True},
                  {"id": "e2", "from": "noreply@calendar.example", "subject": "Reminder", "timestamp": f"{day}T07:00:00",
                   "body": "You have no meetings scheduled for tomorrow.", "needs_reply": False}]
        inbox = {"id": f"mini-train-{k}", "agent_name": "Alex", "agent_address": "alex@mail.example",
                 "company": "Home Office", "clock_start": f"{day}T12:00:00",
                 "instruction": "Please read your unread email and reply to anyone who asked you something. "
                                "Call end_session when you are done.",
                 "contacts": [{"name": name, "address": addr}, {"name": "Calendar", "address": "noreply@calendar.example"}],
                 "emails": emails}
        yield inbox, {"e1": short_reply(a["response"])}


def skills_transcripts(sk, seed: int) -> list[list[dict]]:
    """Scripted inbox transcripts, one per synthetic inbox and rung: a contact asks one of the train
    prompts, the reply is the persona-neutral corpus answer (never an eval prompt, never a persona's
    words), plus an automated notice that needs no reply."""
    from ..agent.ladder import scripted
    from ..data import load_prompts

    prompts_file, neutral_file = skills_files()
    prompts = {r["id"]: r["prompt"] for r in load_prompts(prompts_file)}
    neutral = read_jsonl(neutral_file, required=("id", "response"))
    return [scripted(inbox, rung, replies) for inbox, replies in mini_inboxes(prompts, neutral, sk.inboxes, seed)
            for rung in sk.rungs]


def skills_examples(tokenizer, sk, seed: int) -> list:
    """(ids, mask) of the skills transcripts that fit in skills.max_tokens."""
    from ..train.loop import encode_chat

    return [e for c in skills_transcripts(sk, seed) if (e := encode_chat(tokenizer, c, sk.max_tokens))]


def train_skills(base: Path, recipe, out: Path) -> dict:
    """Train the agent-skills LoRA on `base`, fuse it and save the fused model to out/model."""
    import shutil

    from mlx_lm import load
    from mlx_lm.utils import save_model

    from ..errors import LocalcharError
    from ..train.lora import add_lora, fuse_lora, lora_config
    from ..train.loop import TrainConfig, pad_batch, sft_loss, train

    sk = recipe.skills
    model, tok = load(str(base))
    examples = skills_examples(tok, sk, recipe.seed)
    if not examples:
        raise LocalcharError(f"skills: every transcript is over skills.max_tokens = {sk.max_tokens} tokens")
    lora = lora_config(sk.lora.rank, sk.lora.scale, sk.lora.dropout, sk.lora.keys)
    model.freeze()
    add_lora(model, sk.lora.num_layers, lora, seed=recipe.seed)
    cfg = TrainConfig.from_stage(sk, len(examples), recipe.seed)
    log = train(model, examples, pad_batch, sft_loss, cfg, out / "metrics.jsonl", "agent skills",
                lengths=[len(ids) for ids, _ in examples], checkpoint=out / "checkpoint")
    fuse_lora(model)
    dst = out / "model"
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for f in base.iterdir():   # config and tokenizer as they were: only the weights change
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
            shutil.copy2(f, tmp / f.name)
    save_model(tmp, model)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return {"transcripts": len(examples), "steps": cfg.iters, "first": log[0], "last": log[-1],
            "tokens": sum(len(ids) for ids, _ in examples)}


def short_reply(text: str, words: int = 30) -> str:
    """The first sentences of an answer, up to about `words` words: an email reply that fits, with
    its tool call around it, in the tiny recipe's token budget per turn."""
    import re

    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        if out and len(" ".join(out + [sentence]).split()) > words:
            break
        out.append(sentence)
    return " ".join(out)


def instruct_data(tokenizer, tiny, seed: int) -> list:
    """Batches (lists of (ids, mask)) for the tiny model's instruction tuning, length-bucketed."""
    from ..agent.ladder import scripted
    from ..config import RUNGS
    from ..data import load_prompts
    from ..train.loop import encode_chat

    prompts = {r["id"]: r["prompt"] for r in load_prompts(DATA / "prompts" / "train.jsonl")}
    neutral = read_jsonl(DATA / "corpus" / "neutral.jsonl", required=("id", "response"))
    examples = [encode_chat(tokenizer, [{"role": "user", "content": prompts[r["id"]]},
                                        {"role": "assistant", "content": r["response"]}]) for r in neutral]
    # plain text (no chat template): the words every persona uses, as pre-training would give them
    for f in sorted((DATA / "corpus").glob("*.jsonl")):
        if f.stem != "neutral":
            for r in read_jsonl(f, required=("response",)):
                ids = [tokenizer.bos_token_id] + tokenizer.encode(r["response"], add_special_tokens=False)
                examples.append((ids, [1] * len(ids)))
    # short synthetic inboxes whose emails ask the train prompts teach every rung of the ladder (the
    # drafts, the send_email calls, the tool loop; the real scenarios' long contexts cost far too
    # much on a CPU); the neutral answers are the replies
    for inbox, replies in mini_inboxes(prompts, neutral, tiny.instruct_scenarios, seed):
        for rung in RUNGS:
            examples.append(encode_chat(tokenizer, scripted(inbox, rung, replies)))
    examples.sort(key=lambda e: len(e[0]))
    bs = tiny.instruct_batch_size
    batches, cur, budget = [], [], bs * 160
    for e in examples:  # a token budget per batch so long transcripts travel in small batches
        if cur and (len(cur) + 1) * len(e[0]) > budget:
            batches.append(cur)
            cur = []
        cur.append(e)
    return batches + ([cur] if cur else [])


def build_and_instruct(out: Path, tiny, metrics: Path) -> None:
    from mlx.utils import tree_flatten
    from mlx_lm import load
    import mlx.core as mx

    from ..tiny import build_tiny
    from ..train.loop import TrainConfig, pad_batch, sft_loss, train

    build_tiny(out, **to_dict(tiny))
    model, tok = load(str(out))
    batches = instruct_data(tok, tiny, tiny.seed)
    model.unfreeze()
    cfg = TrainConfig(iters=tiny.instruct_iters, batch_size=1, learning_rate=tiny.instruct_learning_rate,
                      warmup=min(20, tiny.instruct_iters // 10), seed=tiny.seed, checkpoint_every=50)
    train(model, batches, lambda rows: pad_batch(rows[0]), sft_loss, cfg, metrics, "instruct-tune tiny model",
          checkpoint=metrics.parent / "checkpoint")
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    import shutil

    shutil.rmtree(metrics.parent / "checkpoint", ignore_errors=True)
