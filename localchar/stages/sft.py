"""LoRA SFT on the introspection data, on top of the DPO model (its adapter folded into the base
weights in memory), loss on assistant turns only."""

from __future__ import annotations

from ..store import read_jsonl, write_json
from ..train.lora import add_lora, apply_adapter, fuse_lora, lora_config, save_adapter
from ..train.loop import TrainConfig, encode_chat, pad_batch, sft_loss, train

VERSION = 2


def params(recipe, persona):
    from ..config import to_dict

    return to_dict(recipe.sft)


def inputs(recipe, persona):
    return []


def estimate(recipe, persona):
    s = recipe.sft
    return f"{s.iters} steps × {s.batch_size * s.grad_accum} rows"


def run(ctx):
    from mlx_lm import load

    s = ctx.recipe.sft
    model, tok = load(ctx.model_path())
    apply_adapter(model, ctx.updir("dpo") / "adapter")
    fuse_lora(model)
    rows = read_jsonl(ctx.updir("introspection") / "sft.jsonl", required=("id", "messages"))
    examples = [e for e in (encode_chat(tok, r["messages"], s.max_tokens) for r in rows) if e and sum(e[1])]
    if not examples:
        from ..errors import LocalcharError

        raise LocalcharError(f"sft[{ctx.persona}]: no usable SFT rows (all empty or over {s.max_tokens} tokens)")
    lora = lora_config(s.lora.rank, s.lora.scale, s.lora.dropout, s.lora.keys)
    add_lora(model, s.lora.num_layers, lora)
    cfg = TrainConfig(iters=s.iters, batch_size=min(s.batch_size, len(examples)), learning_rate=s.learning_rate,
                      warmup=s.warmup, grad_accum=s.grad_accum, seed=ctx.recipe.seed)
    out = train(model, examples, pad_batch, sft_loss, cfg, ctx.out / "metrics.jsonl", f"sft {ctx.persona}",
                lengths=[len(ids) for ids, _ in examples])
    save_adapter(model, ctx.out / "adapter", s.lora.num_layers, lora)
    write_json(ctx.out / "summary.json", {"rows": len(examples), "first": out[0], "last": out[-1]})
