"""The models compared: base (no persona), prompted (constitution as system prompt), distilled
(DPO adapter), full (DPO + SFT merge). One place says what each variant means at inference."""

from __future__ import annotations

from ..personas import load_persona


def variant_setup(ctx, variant: str, persona: str | None) -> tuple[str | None, str]:
    """(adapter path or None, system prompt or "") for a variant and persona."""
    if variant == "base":
        return None, ""
    if variant == "prompted":
        return None, load_persona(persona).system_prompt(ctx.card.student_name)
    if variant == "distilled":
        return str(ctx.updir("dpo", persona) / "adapter"), ""
    if variant == "full":
        return str(ctx.updir("merge", persona) / "adapter"), ""
    raise ValueError(variant)


def groups(recipe) -> list[tuple[str, str | None]]:
    """(variant, persona) pairs to run. The base model has no persona, so it runs once
    (persona None) and its outputs are scored against every persona label: the no-persona floor."""
    out = []
    for v in recipe.variants:
        out += [(v, None)] if v == "base" else [(v, p) for p in recipe.personas]
    return out
