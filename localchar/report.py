"""results.json, report.md, report.html (offline, images inline) and PNG plots from scores.json;
and the side-by-side comparison of two runs."""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path

from .store import atomic_write_text, read_json, write_json

PUBLISHED = {
    "chat_macro_f1_full_models": [0.86, 0.95],
    "agent_email_macro_f1": [0.29, 0.55],
    "personas": 11,
    "source": "Maiya et al. 2025 (Open Character Training; chat: mean over the break-character suffixes); "
              "LessWrong, 2026-05-25 (agentic re-score)",
}
RUNG_TITLES = {"chat": "inbox as chat", "draft": "draft", "agent_draft": "agent draft (no tools)",
               "single": "single-turn inbox", "loop": "agent loop"}
HEADLINE = [("chat", "chat_plain", "chat"), ("chat + suffixes", "chat", "chat")] + \
    [(t, r, "ladder") for r, t in RUNG_TITLES.items()]
MIXED_ROWS = {"chat": "chat (eval prompts)", **{r: f"{t} (held-out scenarios)" for r, t in RUNG_TITLES.items()
                                                if r != "chat"}}
PLOTS = {"chat_vs_agent.png": "Chat vs agent-loop F1 per persona (95% CI)",
         "ladder.png": "Macro-F1 across the scaffold ladder (95% CI)",
         "confusion.png": "Confusion matrices (rows: true persona, columns: predicted)"}


def _num(x: dict | None) -> dict | None:
    if not x:
        return None
    keys = ("macro_f1", "ci95", "macro_f1_strict", "ci95_strict", "accuracy", "n", "clusters", "personas_scored")
    return {k: x.get(k) for k in keys}


def results(scores: dict, recipe, model_card, classifier: dict | None = None) -> dict:
    variants = {}
    for v, s in scores["variants"].items():
        agent = s.get("agent") or {}
        variants[v] = {
            "chat_plain": _num(s["chat_plain"]), "chat": _num(s["chat"]),
            "chat_suffixes": {k: _num(x) for k, x in s.get("suffixes", {}).items()},
            "chat_suffix_mean_sem": s.get("suffix_mean_sem"),
            "chat_length_matched": {**(_num(s["chat_length_matched"]) or {}),
                                    "words": s["chat_length_matched"]["words"]} if s.get("chat_length_matched") else None,
            "ladder": {r: _num(x) for r, x in s.get("ladder", {}).items()},
            "ladder_deltas": s.get("ladder_deltas", {}), "coverage": s.get("coverage", {}),
            "agent": _num(agent), "gap_chat_agent": s.get("gap_chat_agent"),
            "gap_suffix_mean_agent": s.get("gap_suffix_mean_agent"),
            "agent_terminations": s.get("agent_terminations", {}),
            "chat_per_persona": s["chat_plain"]["per_persona"], "agent_per_persona": agent.get("per_persona", {}),
            "chat_per_persona_ci95": s["chat_plain"].get("per_persona_ci95", {}),
            "agent_per_persona_ci95": agent.get("per_persona_ci95", {}),
            "chat_per_persona_prf": s["chat_plain"].get("per_persona_prf", {}),
            "chat_confusion": s["chat_plain"]["confusion"], "agent_confusion": agent.get("confusion"),
        }
        if s.get("mixed_domain"):  # the classifier.mixed_share ablation
            m = s["mixed_domain"]
            variants[v]["mixed_domain"] = {
                **{k: x for k, x in m.items() if k != "scored"},
                "scored": {k: {"main": _num(x["main"]), "mixed": _num(x["mixed"]),
                               "mixed_minus_main": x["mixed_minus_main"]} for k, x in m["scored"].items()}}
    if classifier:  # the summary minus its audit list of training prompt ids
        classifier = {k: v for k, v in classifier.items() if k != "train_prompt_ids"}
    out = {"recipe": recipe.name, "model": model_card.name, "hf_id": model_card.hf_id or None,
           "seed": recipe.seed, "classifier": classifier, "personas": recipe.personas,
           "chance_macro_f1": 1 / len(recipe.personas), "variants": variants,
           "differences": scores.get("differences", {}), "bootstrap": scores.get("bootstrap"),
           "inference": {"engine": _resolve_engine(recipe.engine), "engine_configured": recipe.engine,
                         "chat_eval_quant": recipe.quant, "agent_quant": recipe.agent_quant(),
                         "system_message": model_card.default_system or None,
                         "constrained_tool_calls": recipe.agent.constrained},
           "reproducibility": ("Same recipe, seed, machine and engine: every generation, rollout, classifier "
                               "and score is identical on a rerun. Across engines or machines, sampled text "
                               "differs and so do the numbers, within their CIs.")}
    if len(recipe.personas) == PUBLISHED["personas"]:  # the published figures are 11-persona macro-F1s
        out["published"] = PUBLISHED
    return out


def _resolve_engine(name: str) -> str:
    from .backends import resolve

    return resolve(name)


def _round(x: float, decimals: int, mode: str) -> Decimal:
    # through the shortest repr, so 0.7 is 0.7 and not 0.69999...: floor/ceil then never step past
    # a value that prints exactly; -0 prints as 0
    q = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-decimals), rounding=mode)
    return abs(q) if q == 0 else q


def fmt_ci(value: float | None, ci, decimals: int = 3, sign: bool = False) -> str:
    """A point and its 95% CI at one precision: the point rounded half up, the lower bound rounded
    down and the upper bound up, so a point inside its interval prints inside the printed interval.
    `sign`: the point with its + / - (differences). Every value-with-CI in the reports goes through here."""
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "nan"
    point = format(_round(value, decimals, ROUND_HALF_UP), "+f" if sign else "f")
    if not ci or ci[0] is None or ci[1] is None or not (math.isfinite(ci[0]) and math.isfinite(ci[1])):
        return f"{point} n/a"
    return f"{point} [{_round(ci[0], decimals, ROUND_FLOOR):f}, {_round(ci[1], decimals, ROUND_CEILING):f}]"


def _cell(x: dict | None, total: int | None = None, empty: str = "no outputs") -> str:
    """A score with its CI and n; 'k of n personas' when it stands on fewer personas than the run has."""
    if not x:
        return "–"
    if not x["n"] or x["macro_f1"] is None:
        return f"{empty} (n=0)"
    k = x.get("personas_scored")
    who = f", {k} of {total} personas" if total and k is not None and k < total else ""
    return f"{fmt_ci(x['macro_f1'], x['ci95'])} n={x['n']}{who}"


def _delta(d: dict | None) -> str:
    return fmt_ci(d["value"], d.get("ci95"), sign=True) if d and d.get("value") is not None else "–"


def _rate(x) -> str:
    return f"{x:.0%}" if x is not None else "–"


def _headline_row(r: dict, key: str, where: str):
    return r[key] if where == "chat" else r["ladder"].get(key)


def tables(res: dict) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, header, rows): the same tables for Markdown and HTML."""
    out = []
    total = len(res["personas"])
    cols = [(t, k, w) for t, k, w in HEADLINE if any(_headline_row(r, k, w) for r in res["variants"].values())]
    rows = []
    for v, r in res["variants"].items():
        n = None if v == "base" else total
        rows.append([v] + [_cell(_headline_row(r, k, w), n, "no emails" if w == "ladder" and k != "chat"
                                 else "no outputs") for _, k, w in cols]
                    + [_delta(r.get("gap_chat_agent")), _delta(r.get("gap_suffix_mean_agent"))])
    b = res.get("bootstrap") or {}
    inf = res.get("inference") or {}
    quant = (f"chat eval and agent both at quant = {inf.get('chat_eval_quant')}" if inf.get("chat_eval_quant") ==
             inf.get("agent_quant") else f"chat eval at {inf.get('chat_eval_quant')}, agent at {inf.get('agent_quant')} "
             "(the recipe asks for different ones)")
    if inf.get("constrained_tool_calls"):
        quant += (". Tool calls on the single and loop rungs were held to the protocol's grammar (agent.constrained: "
                  "tool and argument names, recipients among the contacts, email ids among the inbox's; the model "
                  "wrote subject and body freely): every call it finished parses and executes, and parse failures there are "
                  "replies cut off by max_tokens mid-call; the real recipes decode freely")
    out.append(("Persona-classifier macro-F1 [95% CI] n",
                f"{total} personas, chance = {res['chance_macro_f1']:.2f}. chat = held-out eval prompts; chat + suffixes "
                "adds the break-character suffixes; then the scaffold ladder on the same inbox scenarios, one change "
                "per rung: the inbox as a chat question, the task of drafting replies, the agent's system prompt "
                "(drafts, no tools), the tools (one reply that sends), the tool loop. Email rungs score email bodies "
                "(drafts split, headers stripped; sent bodies). Macro-F1 is over the personas that wrote email "
                "(\"k of n personas\" when some wrote none; the strict figure with F1 = 0 for them is in "
                f"results.json). CIs: {b.get('resamples', '?')} bootstrap resamples of {b.get('chat_clusters', '?')} "
                f"prompt ids (chat) and {b.get('agent_clusters', '?')} scenario ids (agent), every persona and variant "
                f"of a drawn id together. gap = chat − agent loop, against plain chat and against the suffix mean "
                f"(the published chat figure is the suffix mean). {quant}.",
                ["variant"] + [t for t, _, _ in cols] + ["gap (chat − loop)", "gap (suffix mean − loop)"], rows))
    rows = []
    for v, r in res["variants"].items():
        for rung, c in r.get("coverage", {}).items():
            pw = f"{c['personas_with_email']} of {c['personas']}" if "personas" in c else "–"
            rows.append([v, RUNG_TITLES.get(rung, rung), str(c["rollouts"]), str(c["rollouts_sent"]), str(c["emails"]),
                         str(c["parse_failures"]), str(c["rejected_calls"]), _rate(c["task_coverage"]), pw])
    out.append(("Coverage: what each agent number stands on",
                "Per variant and rung: rollouts; rollouts that wrote at least one email (a reply on the chat rung); "
                "emails (drafted or sent); tool calls that failed to parse; calls the email client rejected (unknown "
                "recipient, empty body, ...); task coverage = share of the scenarios' emails that need a reply which "
                "got an email to their sender; personas with at least one email. Per persona: results.json, "
                "`variants.<v>.coverage.<rung>.per_persona`.",
                ["variant", "rung", "rollouts", "wrote email", "emails", "parse failures", "rejected calls",
                 "task coverage", "personas with email"], rows))
    rungs = [rung for r in res["variants"].values() for rung in r.get("ladder_deltas", {})]
    rungs = list(dict.fromkeys(rungs))
    rows = [[v] + [_delta(r.get("ladder_deltas", {}).get(rung)) for rung in rungs] for v, r in res["variants"].items()]
    out.append(("Where the signal goes: each rung minus the one before",
                "Macro-F1 of each rung minus the previous rung's (the first rung minus plain chat), with the bootstrap "
                "CI of the difference: paired by scenario between rungs, independent for chat eval → first rung.",
                ["variant"] + [f"→ {RUNG_TITLES.get(x, x)}" for x in rungs], rows))
    if res.get("differences"):
        measures = list(dict.fromkeys(m for d in res["differences"].values() for m in d))
        names = {"chat_plain": "chat", "chat_all": "chat + suffixes", **RUNG_TITLES}
        rows = [[k.replace("_minus_", " − ")] + [_delta(d.get(m)) for m in measures]
                for k, d in res["differences"].items()]
        out.append(("Variant differences", "Macro-F1 of one variant minus another's on the same prompts and "
                    "scenarios, with the paired bootstrap CI.", ["contrast"] + [names.get(m, m) for m in measures],
                    rows))
    rows = []
    for v, r in res["variants"].items():
        ms = r.get("chat_suffix_mean_sem")
        lm = r.get("chat_length_matched")
        rows.append([v, (f"{ms[0]:.3f} ± {ms[1]:.3f}" if ms[1] is not None else f"{ms[0]:.3f} (one suffix)")
                     if ms else "–",
                     f"{fmt_ci(lm['macro_f1'], lm['ci95'])} ({lm['words']} words)" if lm and lm.get("n") else "–",
                     ", ".join(f"{k}: {n}" for k, n in r["agent_terminations"].items()) or "–"])
    out.append(("Controls", "Mean ± SEM of macro-F1 over the break-character suffixes (as the paper reports it); "
                "chat answers cut to the median length of the variant's sent email bodies (does length alone explain "
                "the drop?); why agent loops ended.",
                ["variant", "suffixes mean ± SEM", "length-matched chat", "loop terminations"], rows))
    names = [v for v in res["variants"] if v != "base"] or list(res["variants"])

    def pf(x):
        return "no emails" if x is None else f"{x:.2f}"

    rows = [[p] + [f"{pf(res['variants'][v]['chat_per_persona'].get(p))} / "
                   f"{pf(res['variants'][v]['agent_per_persona'].get(p))} "
                   f"({(res['variants'][v]['coverage'].get('loop', {}).get('per_persona', {}).get(p) or {}).get('emails', 0)})"
                   for v in names] for p in res["personas"]]
    out.append(("Per persona (F1, chat / agent loop, and loop emails)", "", ["persona"] + names, rows))
    mixed = {v: r["mixed_domain"] for v, r in res["variants"].items() if r.get("mixed_domain")}
    if mixed:
        first = next(iter(mixed.values()))
        trained, total_sc = len(first["train_scenarios"]), len(first["train_scenarios"]) + len(first["held_out_scenarios"])
        rows = []
        for v, m in mixed.items():
            for what, x in m["scored"].items():
                rows.append([v, MIXED_ROWS.get(what, what), _cell(x["main"]), _cell(x["mixed"]),
                             _delta(x["mixed_minus_main"])])
        out.append(("Mixed-domain classifier",
                    f"A second classifier trained on the same chat answers plus the emails of "
                    f"{trained} of {total_sc} agent scenarios (classifier.mixed_share = {first['mixed_share']}; "
                    f"{first['train_email_rows']} emails, {first['train_chat_rows']} chat answers), scored with "
                    "the main classifier on the same items: the plain chat answers and the outputs of the "
                    "held-out scenarios only. If mixed beats main on emails, part of the chat → agent drop is "
                    "the classifier not transferring, not the persona fading. CI of the difference: paired bootstrap.",
                    ["variant", "scored", "main classifier", "mixed classifier", "mixed − main"], rows))
    if res.get("train_seeds"):
        out.append(seed_table(res["train_seeds"]))
    if res.get("timings"):
        out.append(("Where the time goes", TIMING_NOTE, TIMING_HEADER, timing_rows(res["timings"])))
    return out


SEED_MEASURES = [("chat", "chat_plain"), ("agent loop", "loop")]


def seed_spread(per_seed: list[dict]) -> dict:
    """Macro-F1 across training seeds (each a whole results.json): per variant and measure, the
    values in seed order, their mean and standard deviation."""
    out = {"seeds": [r.get("train_seed", 0) for r in per_seed], "variants": {}}
    for v in per_seed[0]["variants"]:
        row = {}
        for _, key in SEED_MEASURES:
            vals = [(r["variants"][v]["chat_plain"] if key == "chat_plain" else r["variants"][v]["ladder"].get(key)
                     or {}).get("macro_f1") for r in per_seed]
            got = [x for x in vals if x is not None]
            row[key] = {"values": vals, "mean": sum(got) / len(got) if got else None,
                        "sd": (statistics.stdev(got) if len(got) > 1 else None)}
        out["variants"][v] = row
    return out


def seed_table(spread: dict):
    rows = []
    for v, row in spread["variants"].items():
        cells = []
        for _, key in SEED_MEASURES:
            x = row[key]
            vals = ", ".join("–" if y is None else f"{y:.3f}" for y in x["values"])
            cells.append(f"{x['mean']:.3f} ± {x['sd']:.3f} ({vals})" if x["sd"] is not None else
                         (f"{x['mean']:.3f} ({vals})" if x["mean"] is not None else "–"))
        rows.append([v] + cells)
    return (f"Spread across {len(spread['seeds'])} training seeds",
            "DPO and SFT (and everything after them) rerun under each training seed (score.train_seeds): mean ± "
            "standard deviation of macro-F1 over the seeds, each seed's value in brackets. The bootstrap CIs above "
            "cover evaluation sampling only; this is the training-seed part.",
            ["variant"] + [t for t, _ in SEED_MEASURES], rows)


@dataclass
class Section:
    """One part of the report; markdown() and html_page() render the same list of them, so the two
    pages cannot drift apart. title None: lead paragraphs under the page title."""
    title: str | None
    note: str = ""
    header: list[str] | None = None
    rows: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)     # a bullet list
    image: str | None = None                            # a plot file next to the report


def sections(res: dict) -> list[Section]:
    out = []
    lead = []
    if res.get("classifier"):
        c = res["classifier"]
        lead.append(f"Classifier: `{c.get('kind')}`, trained on {c.get('train_rows')} chat answers to train prompts "
                    f"(variants {', '.join(c.get('train_variants', []))}); never on eval prompts.")
    if res.get("provenance"):
        lead.append(run_line(res["provenance"]))
        lead.append(replaced_line(res.get("replaced")))
    out += [Section(None, x) for x in lead]
    out += [Section(title, note, header, rows) for title, note, header, rows in tables(res)]
    pub = res.get("published")
    if pub:
        out.append(Section("Published reference (11 personas)", items=[
            f"chat, full character training: macro-F1 {pub['chat_macro_f1_full_models'][0]}–"
            f"{pub['chat_macro_f1_full_models'][1]}",
            f"agentic email bodies: macro-F1 {pub['agent_email_macro_f1'][0]}–{pub['agent_email_macro_f1'][1]}",
            f"source: {pub['source']}"]))
    else:
        out.append(Section("Published reference", f"The published references are 11-persona macro-F1s; this run has "
                           f"{len(res['personas'])} personas (chance {res['chance_macro_f1']:.2f}), so they are not "
                           "shown."))
    out.append(Section("Reproducibility", res["reproducibility"]))
    if res.get("provenance"):
        out += provenance_sections(res["provenance"])
    out += [Section(t, image=f) for f, t in PLOTS.items()]
    return out


def run_line(p: dict) -> str:
    """One sentence: which run these numbers are."""
    q = p["quant"]
    quant = f"quant {q['chat_eval']}" + (f" (agent {q['agent']})" if q["agent"] != q["chat_eval"] else "")
    score = (p.get("stages") or {}).get("score")
    return (f"These numbers: recipe `{p['recipe']['name']}` (sha256 {p['recipe']['sha256'][:12]}, "
            f"`recipe.resolved.toml` beside this report), engine {p['engine']}, {quant}, "
            f"{p['bootstrap']} bootstrap resamples" + (f", score stage `{score['dir']}`" if score else "") + f"; published {p['finished']}.")


def replaced_line(r: dict | None) -> str:
    if not r:
        return "They replaced no other run's results."
    return (f"They replaced the results of another run (recipe {r.get('recipe')}, engine {r.get('engine')}, quant "
            f"{r.get('chat_eval_quant')}, agent quant {r.get('agent_quant')}, published {r.get('finished')}; "
            f"differs in {', '.join(r.get('differs') or ['?'])}), moved to `{r.get('moved_to')}`.")


def provenance_sections(p: dict) -> list[Section]:
    r, m, q = p["recipe"], p.get("model") or {}, p["quant"]
    rows = [["recipe", f"{r['name']} from {r['source']}"], ["recipe sha256", r["sha256"]],
            ["published", p["finished"]],
            ["engine", p["engine"] + (f" (recipe: {p['engine_configured']})"
                                      if p.get("engine_configured") != p["engine"] else "")],
            ["quant", f"chat eval {q['chat_eval']}, agent {q['agent']}"]]
    for stage, g in (p.get("generated_on") or {}).items():
        rows.append([f"{stage} generated on", f"{g.get('engine')} {g.get('model')} (quant {g.get('quant')})"
                     + (f" sha256 {g['model_sha256']}" if g.get("model_sha256") else "")])
    rows += [["bootstrap resamples", str(p["bootstrap"])], ["training seed", str(p.get("train_seed", 0))]]
    if m:
        rows.append(["model", f"card {m.get('card')}" + (f", {m['hf_id']}" if m.get("hf_id") else "")
                     + (f" @ {m['revision']}" if m.get("revision") else "")
                     + (f" (snapshot {m['snapshot']})" if m.get("snapshot") else "") + f": {m.get('dir')}"])
    rows += [[f"{stage} stage", f"{s['dir']} (key {s['key']})"] for stage, s in (p.get("stages") or {}).items()]
    rows += [[name, v] for name, v in (p.get("packages") or {}).items()]
    rows += [["python", f"{p.get('python')} on {p.get('platform')}"]]
    if p.get("commit"):
        rows.append(["localchar commit", p["commit"]])
    out = [Section("Provenance", "What produced these numbers (results.json `provenance`; stage keys name the "
                   "instance directories under stages/).", ["what", "value"], rows)]
    files = m.get("files")
    out.append(Section("Model files", "The base model's files as the run read them (sha256 taken once, cached "
                       "in the model stage's model_files.json by size and modification time)."
                       if files else f"Not on this machine: {m.get('dir')}" if m else "No model stage recorded.",
                       ["file", "bytes", "sha256"] if files else None,
                       [[f["name"], f"{f['bytes']:,}", f["sha256"]] for f in files or []]))
    return out


def _md_cell(c: str) -> str:
    return c.replace("|", "\\|")


def markdown(res: dict) -> str:
    lines = [f"# localchar results: {res['recipe']} ({res['model']})", ""]
    for s in sections(res):
        if s.title:
            lines += [f"## {s.title}", ""]
        if s.note:
            lines += [s.note, ""]
        if s.items:
            lines += [f"- {x}" for x in s.items] + [""]
        if s.header:
            lines += ["| " + " | ".join(map(_md_cell, s.header)) + " |", "|" + "---|" * len(s.header)]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in s.rows] + [""]
        if s.image:
            lines += [f"![{s.title}]({s.image})", ""]
    return "\n".join(lines)


def _html_text(text: str) -> str:
    """Escaped, with Markdown's `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def html_page(res: dict, out: Path) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>localchar: {html.escape(res['recipe'])}</title>",
             "<style>body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}th{background:#f3f3f3}img{max-width:100%}</style>",
             f"<h1>localchar results: {html.escape(res['recipe'])} ({html.escape(res['model'])})</h1>"]
    for s in sections(res):
        if s.title:
            parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.note:
            parts.append(f"<p>{_html_text(s.note)}</p>")
        if s.items:
            parts.append("<ul>" + "".join(f"<li>{_html_text(x)}</li>" for x in s.items) + "</ul>")
        if s.header:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in s.header) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                   for r in s.rows) + "</table>")
        if s.image:
            if (out / s.image).exists():
                data = base64.b64encode((out / s.image).read_bytes()).decode()
                parts.append(f"<img alt='{html.escape(s.title or s.image)}' src='data:image/png;base64,{data}'>")
            else:
                parts.append(f"<p>(no {html.escape(s.image)})</p>")
    return "\n".join(parts)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _err(values, cis):
    import numpy as np

    lo = [v - (c[0] if c else v) for v, c in zip(values, cis)]
    hi = [(c[1] if c else v) - v for v, c in zip(values, cis)]
    return np.clip(np.array([lo, hi]), 0, None)


def plots(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    personas = res["personas"]
    variant = "full" if "full" in res["variants"] else list(res["variants"])[-1]
    r = res["variants"][variant]
    x = np.arange(len(personas))
    fig, ax = plt.subplots(figsize=(max(7, len(personas) * 0.8), 4.2))
    for off, key, label in ((-0.2, "chat", "chat"), (0.2, "agent", "agent loop (email bodies)")):
        raw = [(r[f"{key}_per_persona"] or {}).get(p) for p in personas]
        vals = [0.0 if v is None else v for v in raw]
        cis = [(r[f"{key}_per_persona_ci95"] or {}).get(p) for p in personas]
        bars = ax.bar(x + off, vals, 0.4, yerr=_err(vals, cis), capsize=2, label=label)
        for b, v in zip(bars, raw):  # a persona that wrote nothing has no F1, not a zero
            if v is None:
                ax.text(b.get_x() + b.get_width() / 2, 0.02, "no emails", rotation=90, ha="center", va="bottom",
                        fontsize=6, color="grey")
    ax.axhline(res["chance_macro_f1"], color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x, personas, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"{res['recipe']}: persona F1, variant '{variant}'")
    ax.legend(fontsize=8)
    _save(fig, out / "chat_vs_agent.png")

    cols = [(t, k, w) for t, k, w in HEADLINE if any(_headline_row(rv, k, w) for rv in res["variants"].values())]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for v, rv in res["variants"].items():
        pts = [(i, _headline_row(rv, k, w)) for i, (_, k, w) in enumerate(cols)]
        pts = [(i, p) for i, p in pts if p and p["n"] and p["macro_f1"] is not None]  # nothing scored: no point
        if not pts:
            continue
        vals = [p["macro_f1"] for _, p in pts]
        ax.errorbar([i for i, _ in pts], vals, yerr=_err(vals, [p["ci95"] for _, p in pts]), marker="o",
                    capsize=3, label=v)
    ax.axhline(res["chance_macro_f1"], color="grey", ls="--", lw=1)
    ax.set_xticks(range(len(cols)), [t for t, _, _ in cols], rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("macro-F1")
    ax.set_title("Where the persona signal is lost")
    ax.legend(fontsize=8)
    _save(fig, out / "ladder.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, key, title in ((axes[0], "chat_confusion", "chat"), (axes[1], "agent_confusion", "agent loop")):
        m = np.array([[(r[key] or {}).get(t, {}).get(p, 0) for p in personas] for t in personas], dtype=float)
        rows = m.sum(1, keepdims=True)
        ax.imshow(np.divide(m, rows, out=np.zeros_like(m), where=rows > 0), vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(personas)), personas, rotation=90, fontsize=7)
        ax.set_yticks(range(len(personas)), personas, fontsize=7)
        ax.set_title(f"{title} ('{variant}', n={int(m.sum())})")
    _save(fig, out / "confusion.png")


def write_report(scores: dict, recipe, model_card, out: Path, classifier: dict | None = None) -> dict:
    res = results(scores, recipe, model_card, classifier)
    write_json(out / "results.json", res)
    plots(res, out)
    atomic_write_text(out / "report.md", markdown(res))
    atomic_write_text(out / "report.html", html_page(res, out))
    return res


TIMING_NOTE = ("Seconds each stage took when it ran on this machine (instances done in an earlier invocation count "
               "with their own time); tokens as the engines counted them (prefill includes re-read conversation "
               "turns; trained counts every token of every batch).")
TIMING_HEADER = ["stage", "instances", "seconds", "share", "prefill tokens", "generated tokens", "trained tokens",
                 "tokens/s"]


def timing_rows(timings: list[dict]) -> list[list[str]]:
    total = sum(t["seconds"] for t in timings) or 1.0
    rows = []
    for t in timings:
        toks = t.get("prefill", 0) + t.get("generated", 0) + t.get("trained", 0)
        rate = f"{toks / t['seconds']:.0f}" if toks and t["seconds"] else ""
        rows.append([t["stage"], str(t["instances"]), f"{t['seconds']:.1f}", f"{t['seconds'] / total:.0%}",
                     *(f"{t.get(k, 0):,}" if t.get(k) else "" for k in ("prefill", "generated", "trained")), rate])
    return rows


def extend_results(results_dir: Path, **fields) -> None:
    """Add what only the runner knows to a run's published results (results.json, report.md,
    report.html): `timings` (per-stage seconds and tokens), `train_seeds` (the spread across
    score.train_seeds replicates)."""
    res_path = results_dir / "results.json"
    if not res_path.exists():
        return
    res = {**read_json(res_path), **fields}
    write_json(res_path, res)
    atomic_write_text(results_dir / "report.md", markdown(res))
    atomic_write_text(results_dir / "report.html", html_page(res, results_dir))


def compare(a: dict, b: dict, name_a: str, name_b: str) -> str:
    """Markdown: the headline numbers of two runs side by side, with B − A."""
    lines = [f"# {name_a} vs {name_b}", "", f"| variant | measure | {name_a} | {name_b} | B − A |", "|---|---|---|---|---|"]
    for v in [v for v in a["variants"] if v in b["variants"]]:
        for title, key, where in HEADLINE:
            x, y = _headline_row(a["variants"][v], key, where), _headline_row(b["variants"][v], key, where)
            if x and y and x.get("macro_f1") is not None and y.get("macro_f1") is not None:
                lines.append(f"| {v} | {title} | {_cell(x)} | {_cell(y)} | {y['macro_f1'] - x['macro_f1']:+.3f} |")
    return "\n".join(lines) + "\n"


def load_results(path: Path) -> dict:
    path = Path(path)
    f = path / "results" / "results.json" if (path / "results").is_dir() else path / "results.json"
    if not f.exists():
        from .errors import LocalcharError

        raise LocalcharError(f"{path}: no results.json (give a run directory like runs/tiny-all, or its results/)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        from .errors import LocalcharError

        raise LocalcharError(f"{f}: invalid JSON ({e.msg}); rebuild it with `localchar report RUN_DIR`") from None
