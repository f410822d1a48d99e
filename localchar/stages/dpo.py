"""LoRA DPO on the persona's pairs (MLX). Output: an mlx-lm adapter dir + metrics.jsonl."""

from __future__ import annotations

import shutil

from ..estimate import Work, answer_tokens, mean_tokens
from ..store import read_jsonl, write_json
from ..train.dpo import encode_pair, make_dpo_loss, pair_batch, reference_logps
from ..train.lora import add_lora, lora_config, save_adapter
from ..train.loop import TrainConfig, train
from .common import distill_prompts

VERSION = 3


def params(recipe, persona):
    from ..config import to_dict

    d = to_dict(recipe.dpo)
    d.pop("checkpoint_every")  # where training may resume from does not change what it learns
    if recipe.train_seed:  # a score.train_seeds replicate (absent for the main run: its keys stay put)
        d["train_seed"] = recipe.train_seed
    return d


def inputs(recipe, persona):
    return []


def estimate(recipe, persona):
    prompts = distill_prompts(recipe, persona)
    n = len(prompts) * recipe.teacher.samples  # pairs before the filters: an upper bound
    d = recipe.dpo
    pair = 2 * mean_tokens([p["prompt"] for p in prompts]) + answer_tokens(recipe.teacher.sampling) \
        + answer_tokens(recipe.student.sampling)
    steps = d.steps(n)
    # every step trains chosen + rejected; the cached reference costs one forward (~1/3 step) per pair
    return Work(on="student", train=steps * d.batch_size * d.grad_accum * pair + n * pair / 3,
                what=f"≤{n} pairs, {steps} steps × {d.batch_size * d.grad_accum}")


def run(ctx):
    from mlx_lm import load

    d = ctx.recipe.dpo
    model, tok = load(ctx.model_path())
    pairs = read_jsonl(ctx.updir("dpo_data") / "dpo.jsonl", required=("id", "chosen", "rejected"))
    encoded = [encode_pair(tok, p) for p in pairs]
    lora = lora_config(d.lora.rank, d.lora.scale, d.lora.dropout, d.lora.keys)
    add_lora(model, d.lora.num_layers, lora, seed=ctx.recipe.training_seed())
    refs = reference_logps(model, encoded)
    examples = [(c, r, rc, rr) for (c, r), (rc, rr) in zip(encoded, refs)]
    cfg = TrainConfig.from_stage(d, len(examples), ctx.recipe.training_seed())
    rows = train(model, examples, pair_batch, make_dpo_loss(d.beta, d.nll_coef, d.kl_coef), cfg,
                 ctx.out / "metrics.jsonl", f"dpo {ctx.persona}",
                 lengths=[max(len(c[0]), len(r[0])) for c, r in encoded], checkpoint=ctx.out / "checkpoint")
    save_adapter(model, ctx.out / "adapter", d.lora.num_layers, lora)
    shutil.rmtree(ctx.out / "checkpoint", ignore_errors=True)
    write_json(ctx.out / "summary.json", {"pairs": len(pairs), "steps": cfg.iters, "first": rows[0], "last": rows[-1]})
    return {"trained": sum(r.get("batch_tokens", 0) for r in rows)}
