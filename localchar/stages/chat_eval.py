"""Chat generations for every variant x persona: held-out eval prompts, plain and with the first
`chat_eval.suffixes` break-character suffixes (split "eval"), and, for the classifier's training
variants only, train prompts without suffix (split "train"; disjoint from eval). One model load;
each row is routed to its persona adapter."""

from __future__ import annotations

from ..data import check_disjoint, load_suffixes
from ..estimate import Work, answer_tokens, text_tokens
from ..gen import generate_rows
from .common import engine_name, eval_prompts, open_generator, sampling_dict, train_prompts
from .variants import groups, variant_setup

VERSION = 2


def params(recipe, persona):
    c = recipe.chat_eval
    return {"suffixes": c.suffixes, "classifier_prompts": c.classifier_prompts, "sampling": sampling_dict(c.sampling),
            "classifier_variants": recipe.classifier.train_variants,
            "variants": recipe.variants, "personas": recipe.personas,
            "max_eval_prompts": recipe.data.max_eval_prompts, "max_train_prompts": recipe.data.max_train_prompts,
            "persona_strength": recipe.persona_strength, "engine": engine_name(recipe), "quant": recipe.quant}


def inputs(recipe, persona):
    return [recipe.resolve(recipe.data.train_prompts), recipe.resolve(recipe.data.eval_prompts),
            recipe.resolve(recipe.data.suffixes)]


def _rows_for(recipe, variant):
    suffixes = load_suffixes(recipe.resolve(recipe.data.suffixes))[: recipe.chat_eval.suffixes]
    ev, tr = eval_prompts(recipe), train_prompts(recipe)
    check_disjoint(tr, ev, recipe.data.train_prompts, recipe.data.eval_prompts)
    n = recipe.chat_eval.classifier_prompts
    out = [("eval", p, None) for p in ev] + [("eval", p, s) for s in suffixes for p in ev]
    if variant in recipe.classifier.train_variants:
        out += [("train", p, None) for p in (tr[:n] if n else tr)]
    return out


def estimate(recipe, persona):
    from ..personas import load_persona

    prefill = n = 0
    for variant, p in groups(recipe):
        rows = _rows_for(recipe, variant)
        system = text_tokens(load_persona(p).system_prompt("Name")) if variant == "prompted" else 0
        prefill += sum(system + text_tokens(q["prompt"] + (s["text"] if s else "")) for _, q, s in rows)
        n += len(rows)
    s = recipe.chat_eval.sampling
    return Work(on="student", prefill=prefill, generate=n * answer_tokens(s), batch=s.batch_size,
                what=f"{n} answers")


def run(ctx):
    recipe = ctx.recipe
    engine = open_generator(ctx, strength=recipe.persona_strength, quant=recipe.quant)
    rows = []
    for variant, persona in groups(recipe):
        adapter, system = variant_setup(ctx, variant, persona)
        for split, p, s in _rows_for(recipe, variant):
            user = p["prompt"] + (f"\n{s['text']}" if s else "")
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            rows.append({"id": f"{variant}/{persona or '-'}/{split}/{p['id']}/{s['id'] if s else 'plain'}",
                         "variant": variant, "persona": persona, "split": split, "prompt_id": p["id"],
                         "suffix": s["id"] if s else None, "adapter": adapter, "messages": msgs})

    def finish(row, text):
        return {k: row[k] for k in ("id", "variant", "persona", "split", "prompt_id", "suffix")} | {"response": text}

    return generate_rows(engine, rows, recipe.chat_eval.sampling, recipe.seed, ctx.key, ctx.out / "generations.jsonl",
                  "chat eval", finish)
