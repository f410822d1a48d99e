"""DPO pairs: chosen = teacher, rejected = student, same prompt and sample index. OCT's filters:
both sides non-empty and ending in punctuation; the templated chat of each side within the token
limit. No system prompt in the pairs. TRL-style JSONL (`chosen` / `rejected` message lists)."""

from __future__ import annotations

from ..store import read_jsonl, write_json, write_jsonl
from .common import ends_in_punctuation

VERSION = 1


def params(recipe, persona):
    return {"max_tokens": recipe.dpo_data.max_tokens, "require_punctuation": recipe.dpo_data.require_punctuation}


def inputs(recipe, persona):
    return []


def run(ctx):
    from mlx_lm.utils import load_tokenizer

    tok = load_tokenizer(ctx.model_path())
    teacher = read_jsonl(ctx.updir("teacher") / "teacher.jsonl", required=("id", "prompt", "response"))
    student = {r["id"]: r for r in read_jsonl(ctx.updir("student") / "student.jsonl", required=("id", "response"))}
    pairs, dropped = [], {"no_student": 0, "unpunctuated": 0, "too_long": 0}
    limit = ctx.recipe.dpo_data.max_tokens
    for t in teacher:
        s = student.get(t["id"])
        if s is None:
            dropped["no_student"] += 1
            continue
        if not t["response"].strip() or not s["response"].strip() or (
                ctx.recipe.dpo_data.require_punctuation
                and not (ends_in_punctuation(t["response"]) and ends_in_punctuation(s["response"]))):
            dropped["unpunctuated"] += 1
            continue
        user = {"role": "user", "content": t["prompt"]}
        chosen = [user, {"role": "assistant", "content": t["response"].strip()}]
        rejected = [user, {"role": "assistant", "content": s["response"].strip()}]
        if max(len(tok.apply_chat_template(chosen)), len(tok.apply_chat_template(rejected))) > limit:
            dropped["too_long"] += 1
            continue
        pairs.append({"id": t["id"], "chosen": chosen, "rejected": rejected})
    write_jsonl(ctx.out / "dpo.jsonl", pairs)
    write_json(ctx.out / "stats.json", {"pairs": len(pairs), "dropped": dropped})
    if not pairs:
        from ..errors import LocalcharError

        raise LocalcharError(f"dpo_data[{ctx.persona}]: every pair was filtered out ({dropped})")
