"""LoRA DPO on the persona's pairs (MLX). Output: an mlx-lm adapter dir + metrics.jsonl."""

from __future__ import annotations

from ..store import read_jsonl, write_json
from ..train.dpo import encode_pair, make_dpo_loss, pair_batch, reference_logps
from ..train.lora import add_lora, lora_config, save_adapter
from ..train.loop import TrainConfig, train

VERSION = 2


def params(recipe, persona):
    from ..config import to_dict

    return to_dict(recipe.dpo)


def inputs(recipe, persona):
    return []


def estimate(recipe, persona):
    d = recipe.dpo
    return f"{d.iters} steps × {d.batch_size * d.grad_accum} pairs"


def run(ctx):
    from mlx_lm import load

    d = ctx.recipe.dpo
    model, tok = load(ctx.model_path())
    pairs = read_jsonl(ctx.updir("dpo_data") / "dpo.jsonl", required=("id", "chosen", "rejected"))
    encoded = [encode_pair(tok, p) for p in pairs]
    lora = lora_config(d.lora.rank, d.lora.scale, d.lora.dropout, d.lora.keys)
    add_lora(model, d.lora.num_layers, lora)
    refs = reference_logps(model, encoded)
    examples = [(c, r, rc, rr) for (c, r), (rc, rr) in zip(encoded, refs)]
    cfg = TrainConfig(iters=d.iters, batch_size=min(d.batch_size, len(examples)), learning_rate=d.learning_rate,
                      warmup=d.warmup, grad_accum=d.grad_accum, seed=ctx.recipe.seed)
    rows = train(model, examples, pair_batch, make_dpo_loss(d.beta, d.nll_coef), cfg,
                 ctx.out / "metrics.jsonl", f"dpo {ctx.persona}",
                 lengths=[max(len(c[0]), len(r[0])) for c, r in encoded])
    save_adapter(model, ctx.out / "adapter", d.lora.num_layers, lora)
    write_json(ctx.out / "summary.json", {"pairs": len(pairs), "first": rows[0], "last": rows[-1]})
