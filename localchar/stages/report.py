"""Tables, plot and results.json (copied to runs/<recipe>/results/ by the runner)."""

from __future__ import annotations

from ..report import write_report
from ..store import read_json

VERSION = 2


def params(recipe, persona):
    return {}


def inputs(recipe, persona):
    return []


def run(ctx):
    write_report(read_json(ctx.updir("score") / "scores.json"), ctx.recipe, ctx.card, ctx.out,
                 read_json(ctx.updir("classifier") / "classifier_summary.json"))
