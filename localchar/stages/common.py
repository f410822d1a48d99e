"""Small helpers the stages share."""

from __future__ import annotations

import unicodedata

from ..config import Recipe
from ..data import load_prompts


def train_prompts(recipe: Recipe) -> list[dict]:
    return load_prompts(recipe.resolve(recipe.data.train_prompts), recipe.data.max_train_prompts)


def eval_prompts(recipe: Recipe) -> list[dict]:
    return load_prompts(recipe.resolve(recipe.data.eval_prompts), recipe.data.max_eval_prompts)


def ends_in_punctuation(text: str) -> bool:
    """OCT's truncation screen: non-empty and the last character is Unicode punctuation."""
    text = text.strip()
    return bool(text) and unicodedata.category(text[-1]).startswith("P")


def sampling_dict(s) -> dict:
    return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens, "batch_size": s.batch_size}
