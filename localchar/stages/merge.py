"""Persona adapter = DPO x 1.0 + SFT x w, combined exactly by concatenating ranks."""

from __future__ import annotations

from ..train.lora import merge_adapters

VERSION = 1


def params(recipe, persona):
    return {"sft_weight": recipe.merge.sft_weight}


def inputs(recipe, persona):
    return []


def run(ctx):
    merge_adapters([(ctx.updir("dpo") / "adapter", 1.0), (ctx.updir("sft") / "adapter", ctx.recipe.merge.sft_weight)],
                   ctx.out / "adapter")
