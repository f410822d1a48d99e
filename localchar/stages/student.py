"""Student: the base model's own answers to the distillation prompts, with no system prompt
(the DPO 'rejected' side). One run serves every persona: the shared prompts and every persona's
trait prompts."""

from __future__ import annotations

from ..estimate import Work, answer_tokens, mean_tokens
from ..gen import generate_rows
from .common import engine_name, open_generator, sampling_dict, student_prompts

VERSION = 2


def params(recipe, persona):
    return {"samples": recipe.teacher.samples, "sampling": sampling_dict(recipe.student.sampling),
            "max_train_prompts": recipe.data.max_train_prompts, "trait_prompts": recipe.teacher.trait_prompts,
            "personas": recipe.personas if recipe.teacher.trait_prompts else [], "engine": engine_name(recipe)}


def inputs(recipe, persona):
    from ..personas import load_persona

    files = [recipe.resolve(recipe.data.train_prompts)]
    return files + ([load_persona(p).path for p in recipe.personas] if recipe.teacher.trait_prompts else [])


def estimate(recipe, persona):
    prompts = student_prompts(recipe)
    n = len(prompts) * recipe.teacher.samples
    s = recipe.student.sampling
    return Work(on="student", prefill=n * mean_tokens([p["prompt"] for p in prompts]),
                generate=n * answer_tokens(s), batch=s.batch_size, what=f"{n} answers")


def run(ctx):
    recipe = ctx.recipe
    engine = open_generator(ctx)
    rows = [{"id": f"{p['id']}-s{s}", "prompt_id": p["id"], "prompt": p["prompt"],
             "messages": [{"role": "user", "content": p["prompt"]}]}
            for p in student_prompts(recipe) for s in range(recipe.teacher.samples)]

    def finish(row, text):
        return {"id": row["id"], "prompt_id": row["prompt_id"], "prompt": row["prompt"], "response": text}

    return generate_rows(engine, rows, recipe.student.sampling, recipe.seed, ctx.key, ctx.out / "student.jsonl",
                  "student", finish)
