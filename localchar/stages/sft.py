"""LoRA SFT on the introspection data, on top of the DPO model (the DPO adapter applied and frozen,
the new adapter stacked on it: exact also on a 4-bit base), loss on assistant turns only."""

from __future__ import annotations

import shutil

from ..store import read_jsonl, write_json
from ..train.lora import apply_adapter, lora_config, save_adapter, stack_lora
from ..train.loop import TrainConfig, encode_chat, pad_batch, sft_loss, train

VERSION = 3


def params(recipe, persona):
    from ..config import to_dict

    d = to_dict(recipe.sft)
    d.pop("checkpoint_every")  # where training may resume from does not change what it learns
    if recipe.train_seed:  # a score.train_seeds replicate (absent for the main run: its keys stay put)
        d["train_seed"] = recipe.train_seed
    return d


def inputs(recipe, persona):
    return []


def estimate(recipe, persona):
    from ..estimate import Work, answer_tokens
    from .introspection import REFLECTION_PROMPTS

    i, s = recipe.introspection, recipe.sft
    a = answer_tokens(i.sampling)
    n_ref = len(REFLECTION_PROMPTS) * i.reflection_samples
    rows = n_ref + i.interactions
    mean_row = (n_ref * (a + 40) + i.interactions * min(s.max_tokens, i.interaction_turns * a)) / max(rows, 1)
    steps = s.steps(rows)
    return Work(on="student", train=steps * s.batch_size * s.grad_accum * mean_row,
                what=f"{rows} rows, {steps} steps × {s.batch_size * s.grad_accum}")


def run(ctx):
    from mlx_lm import load

    s = ctx.recipe.sft
    model, tok = load(ctx.model_path())
    apply_adapter(model, ctx.updir("dpo") / "adapter")
    rows = read_jsonl(ctx.updir("introspection") / "sft.jsonl", required=("id", "messages"))
    examples = [e for e in (encode_chat(tok, r["messages"], s.max_tokens) for r in rows) if e and sum(e[1])]
    if not examples:
        from ..errors import LocalcharError

        raise LocalcharError(f"sft[{ctx.persona}]: no usable SFT rows (all empty or over {s.max_tokens} tokens)")
    lora = lora_config(s.lora.rank, s.lora.scale, s.lora.dropout, s.lora.keys)
    stack_lora(model, lora, seed=ctx.recipe.training_seed())
    cfg = TrainConfig.from_stage(s, len(examples), ctx.recipe.training_seed())
    out = train(model, examples, pad_batch, sft_loss, cfg, ctx.out / "metrics.jsonl", f"sft {ctx.persona}",
                lengths=[len(ids) for ids, _ in examples], checkpoint=ctx.out / "checkpoint")
    save_adapter(model, ctx.out / "adapter", s.lora.num_layers, lora)
    shutil.rmtree(ctx.out / "checkpoint", ignore_errors=True)
    write_json(ctx.out / "summary.json", {"rows": len(examples), "steps": cfg.iters, "first": out[0], "last": out[-1]})
    return {"trained": sum(r.get("batch_tokens", 0) for r in out)}
