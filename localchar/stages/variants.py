"""The models compared: base (no persona), prompted (constitution as system prompt), distilled
(DPO adapter), full (DPO + SFT merge). One place says what each variant means at inference."""

from __future__ import annotations

from ..personas import load_persona


def variant_setup(ctx, variant: str, persona: str | None) -> tuple[str | None, str]:
    """(adapter path or None, system text or "") for a variant and persona. The system text starts
    with the model card's `default_system` (what its template would insert on its own), so every
    rung and the chat eval share one system-message policy."""
    head = ctx.card.default_system
    if variant == "base":
        return None, head
    if variant == "prompted":
        return None, "\n\n".join(x for x in (head, load_persona(persona).system_prompt(ctx.card.student_name)) if x)
    if variant == "distilled":
        return str(ctx.updir("dpo", persona) / "adapter"), head
    if variant == "full":
        return str(ctx.updir("merge", persona) / "adapter"), head
    raise ValueError(variant)


def groups(recipe) -> list[tuple[str, str | None]]:
    """(variant, persona) pairs to run. The base model has no persona, so it runs once
    (persona None) and its outputs are scored against every persona label: the no-persona floor."""
    out = []
    for v in recipe.variants:
        out += [(v, None)] if v == "base" else [(v, p) for p in recipe.personas]
    return out
