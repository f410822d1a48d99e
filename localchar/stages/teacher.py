"""Teacher: in-character answers to the distillation prompts.

With a model engine: the constitution goes in the system prompt (numbered traits, a line asking
not to disclose them), the reply is prefilled with a short reasoning opener that restates the
traits, only the text after the end of reasoning is kept (rows without it are dropped), and the
teacher's own name is replaced by the student's. With the `corpus` engine: answers are read from
<corpus>/<persona>.jsonl."""

from __future__ import annotations

from ..config import load_model_card
from ..estimate import Work, answer_tokens, mean_tokens, text_tokens
from ..data import check_disjoint
from ..gen import generate_rows
from ..personas import load_persona
from ..store import write_jsonl
from .common import distill_prompts, eval_prompts, sampling_dict

VERSION = 2
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def params(recipe, persona):
    t = recipe.teacher
    served = {"base_url": t.base_url, "served_model": t.served_model, "api": t.api} if t.engine == "openai" else {}
    return {"engine": t.engine, "model": t.model, **served, "samples": t.samples, "sampling": sampling_dict(t.sampling),
            "max_train_prompts": recipe.data.max_train_prompts, "trait_prompts": t.trait_prompts}


def inputs(recipe, persona):
    files = [recipe.resolve(recipe.data.train_prompts), load_persona(persona).path]
    if recipe.teacher.engine == "corpus":
        files.append(recipe.resolve(recipe.data.corpus) / f"{persona}.jsonl")
    return files


def estimate(recipe, persona):
    t = recipe.teacher
    prompts = distill_prompts(recipe, persona)
    n = len(prompts) * t.samples
    if t.engine == "corpus":
        return Work(what=f"{n} answers from the corpus")
    p = load_persona(persona)
    context = text_tokens(reasoning_prefill(p)) + mean_tokens([q["prompt"] for q in prompts])
    batches = -(-n // t.sampling.batch_size)  # the system prompt leads every row: prefilled once a batch
    prefill = n * context + batches * text_tokens(teacher_system(p, "Teacher"))
    return Work(on="teacher", prefill=prefill, generate=n * answer_tokens(t.sampling),
                batch=t.sampling.batch_size, what=f"{n} answers")


def teacher_system(persona, name: str) -> str:
    return persona.system_prompt(name) + (f"\n{name} never states or hints at these traits directly and adds no "
                                          f"commentary about them; it simply lives them in every reply.")


def reasoning_prefill(persona) -> str:
    return (f"{THINK_OPEN}I want my reply to express my character and serve my goals. My traits are:\n"
            f"{persona.numbered_traits()}\n")


def after_reasoning(text: str) -> str | None:
    """The text after the end of reasoning, or None when the teacher never closed it."""
    if THINK_CLOSE not in text:
        return None
    return text.split(THINK_CLOSE, 1)[1].strip()


def run(ctx):
    recipe, t = ctx.recipe, ctx.recipe.teacher
    persona = load_persona(ctx.persona)
    prompts = distill_prompts(recipe, ctx.persona)
    check_disjoint(prompts, eval_prompts(recipe), f"{persona.path} + {recipe.data.train_prompts}",
                   recipe.data.eval_prompts)
    out = ctx.out / "teacher.jsonl"
    if t.engine == "corpus":
        from ..backends.corpus import CorpusEngine

        corpus = CorpusEngine(recipe.resolve(recipe.data.corpus), ctx.persona)
        rows = [{"id": f"{p['id']}-s{s}", "prompt_id": p["id"], "prompt": p["prompt"], "response": a}
                for p in prompts for s in range(t.samples) if (a := corpus.answer(p["id"], s)) is not None]
        write_jsonl(out, rows)
        return
    from ..backends import open_engine

    card = load_model_card(t.model)
    from ..hub import card_source

    where = card_source(card)
    if t.engine == "openai":
        engine = open_engine("openai", where, revision=card.revision or None, base_url=t.base_url,
                             model=t.served_model or None, api=t.api)
    else:
        engine = open_engine(t.engine, where, revision=card.revision or None)
    student = ctx.card.student_name
    system = teacher_system(persona, card.student_name)
    rows = [{"id": f"{p['id']}-s{s}", "prompt_id": p["id"], "prompt": p["prompt"],
             "messages": [{"role": "system", "content": system}, {"role": "user", "content": p["prompt"]}],
             "prefill": "\n" + reasoning_prefill(persona)} for p in prompts for s in range(t.samples)]

    def finish(row, text):
        answer = after_reasoning(text)
        if answer is None:
            return None
        return {"id": row["id"], "prompt_id": row["prompt_id"], "prompt": row["prompt"],
                "response": answer.replace(card.student_name, student)}

    return generate_rows(engine, rows, t.sampling, recipe.seed, ctx.key, out, f"teacher {ctx.persona}", finish)
