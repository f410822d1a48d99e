"""Small helpers the stages share."""

from __future__ import annotations

import unicodedata

from ..config import Recipe
from ..data import load_prompts


def train_prompts(recipe: Recipe) -> list[dict]:
    return load_prompts(recipe.resolve(recipe.data.train_prompts), recipe.data.max_train_prompts)


def trait_prompts(recipe: Recipe, persona: str) -> list[dict]:
    """The persona's own trait prompts (OCT's constitution questions), when the recipe uses them."""
    if not recipe.teacher.trait_prompts:
        return []
    from ..personas import load_persona

    return [{"id": f"{persona}-trait{i:02d}-{j}", "prompt": q}
            for i, t in enumerate(load_persona(persona).traits, 1) for j, q in enumerate(t.get("prompts", []), 1)]


def distill_prompts(recipe: Recipe, persona: str) -> list[dict]:
    """What the teacher answers for one persona: the shared train prompts plus its trait prompts."""
    return train_prompts(recipe) + trait_prompts(recipe, persona)


def student_prompts(recipe: Recipe) -> list[dict]:
    """What the student answers once for every persona: the union of their distillation prompts."""
    out = train_prompts(recipe)
    for p in recipe.personas:
        out += trait_prompts(recipe, p)
    return out


def eval_prompts(recipe: Recipe) -> list[dict]:
    return load_prompts(recipe.resolve(recipe.data.eval_prompts), recipe.data.max_eval_prompts)


def ends_in_punctuation(text: str) -> bool:
    """OCT's truncation screen: non-empty and the last character is Unicode punctuation."""
    text = text.strip()
    return bool(text) and unicodedata.category(text[-1]).startswith("P")


def sampling_dict(s) -> dict:
    return {"temperature": s.temperature, "top_p": s.top_p, "repetition_penalty": s.repetition_penalty,
            "max_tokens": s.max_tokens, "batch_size": s.batch_size}
