"""Student: the base model's own answers to the distillation prompts, with no system prompt
(the DPO 'rejected' side). One run serves every persona."""

from __future__ import annotations

from ..backends import open_engine
from ..gen import generate_rows
from .common import sampling_dict, train_prompts

VERSION = 1


def params(recipe, persona):
    return {"samples": recipe.teacher.samples, "sampling": sampling_dict(recipe.student.sampling),
            "max_train_prompts": recipe.data.max_train_prompts}


def inputs(recipe, persona):
    return [recipe.resolve(recipe.data.train_prompts)]


def estimate(recipe, persona):
    n = len(train_prompts(recipe)) * recipe.teacher.samples
    return f"{n} answers, ≤{n * recipe.student.sampling.max_tokens} tok"


def run(ctx):
    recipe = ctx.recipe
    engine = open_engine("mlx", ctx.model_path())
    rows = [{"id": f"{p['id']}-s{s}", "prompt_id": p["id"], "prompt": p["prompt"],
             "messages": [{"role": "user", "content": p["prompt"]}]}
            for p in train_prompts(recipe) for s in range(recipe.teacher.samples)]

    def finish(row, text):
        return {"id": row["id"], "prompt_id": row["prompt_id"], "prompt": row["prompt"], "response": text}

    generate_rows(engine, rows, recipe.student.sampling, recipe.seed, ctx.key, ctx.out / "student.jsonl",
                  "student", finish)
