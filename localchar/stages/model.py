"""The base model. A Hugging Face / MLX model is only resolved here (weights download on first
load). The tiny test model is built locally and instruction-tuned (full fine-tune) on neutral
chat answers, plain persona-corpus text and scripted tool-use transcripts, so that a 0.5M-parameter
model can chat and call tools at all: the plumbing then carries real persona signal."""

from __future__ import annotations

import random
from pathlib import Path

from ..config import load_model_card, to_dict
from ..paths import DATA
from ..store import read_jsonl, write_json

VERSION = 2


def params(recipe, persona):
    # the model card itself is part of every key; the tiny build's curriculum (every ladder rung
    # since 3) keys only the tiny model, so a real model's run keeps its teacher and training
    return {"instruct_data": 3} if load_model_card(recipe.model).build == "tiny" else {}


def inputs(recipe, persona):
    card = load_model_card(recipe.model)
    if card.build != "tiny":
        return []
    from ..tiny import corpus_files

    return corpus_files()


def estimate(recipe, persona):
    from ..estimate import Work

    card = load_model_card(recipe.model)
    if card.build == "tiny":
        return Work(what=f"build + {card.tiny.instruct_iters} instruct steps")
    return Work(what=f"resolve {card.path or card.mlx_id or card.hf_id}")


def run(ctx):
    card = ctx.card
    if card.build != "tiny":
        from ..hub import resolve_model

        # fetched once here (pinned to the card's revision when it has one, resumable), and the
        # snapshot actually used is recorded
        source = card.path or card.mlx_id or card.hf_id
        d = resolve_model(source, card.revision or None)
        snapshot = d.name if d.parent.name == "snapshots" else None
        write_json(ctx.out / "model.json", {"path": str(d), "source": source, "revision": card.revision or None,
                                            "snapshot": snapshot, "card": to_dict(card)})
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
