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


def engine_name(recipe: Recipe) -> str:
    """The generation engine this machine runs for the recipe ('auto' resolved): part of stage keys."""
    from ..backends import resolve

    return resolve(recipe.engine)


def open_generator(ctx, quant: str | None = None, **kw):
    """The recipe's generation engine on the run's model. `quant`: None = the run's model as it is
    (an MLX 4-bit student stays 4-bit; llama.cpp gets an f16 GGUF); 'none' = unquantized; 'q8_0' /
    'q4_k_m' = quantized. llama.cpp, and 'none', need the unquantized checkpoint: when the run trains on
    an MLX-quantized conversion, the card's original (hf_id) serves, and the adapters trained on the
    4-bit model apply to it unchanged (same shapes)."""
    from ..backends import open_engine
    from ..errors import LocalcharError

    name = engine_name(ctx.recipe)
    path = ctx.model_path()
    from ..hub import mlx_quantized

    if mlx_quantized(path) and (name == "llama_cpp" or quant == "none"):
        if not ctx.card.hf_id:
            raise LocalcharError(f"model card {ctx.card.name}: hf_id: needed for the unquantized checkpoint "
                                 f"(engine {name}, quant = {quant}); {path} is MLX-quantized")
        from ..hub import resolve_model

        path = str(resolve_model(ctx.card.hf_id, ctx.card.revision or None))
    engine = open_engine(name, path, quant=quant, **kw)
    from ..store import write_json

    # what the stage's text was generated on, next to its output
    write_json(ctx.out / "engine.json", {"engine": engine.name, "model": str(engine.model_path),
                                         "quant": getattr(engine, "quant", None)})
    return engine


def sampling_dict(s) -> dict:
    return {"temperature": s.temperature, "top_p": s.top_p, "repetition_penalty": s.repetition_penalty,
            "max_tokens": s.max_tokens, "batch_size": s.batch_size}
