"""results.json, report.md, report.html (offline, images inline) and PNG plots from scores.json;
and the side-by-side comparison of two runs."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .store import atomic_write_text, read_json, write_json

PUBLISHED = {
    "chat_macro_f1_full_models": [0.86, 0.95],
    "agent_email_macro_f1": [0.29, 0.55],
    "source": "Maiya et al. 2025 (Open Character Training); LessWrong, 2026-05-25 (agentic re-score)",
}
HEADLINE = [("chat", "chat_plain", "chat"), ("chat + suffixes", "chat", "chat"),
            ("inbox as chat", "chat", "ladder"), ("draft", "draft", "ladder"), ("single-turn inbox", "single", "ladder"), ("agent loop", "loop", "ladder")]
MIXED_ROWS = {"chat": "chat (eval prompts)", "draft": "draft (held-out scenarios)",
              "single": "single-turn inbox (held-out scenarios)", "loop": "agent loop (held-out scenarios)"}
PLOTS = {"chat_vs_agent.png": "Chat vs agent-loop F1 per persona (95% CI)",
         "ladder.png": "Macro-F1 across the scaffold ladder (95% CI)",
         "confusion.png": "Confusion matrices (rows: true persona, columns: predicted)"}


def _num(x: dict | None) -> dict | None:
    if not x:
        return None
    return {"macro_f1": x["macro_f1"], "accuracy": x.get("accuracy"), "ci95": x.get("ci95"), "n": x.get("n", 0),
            "clusters": x.get("clusters")}


def results(scores: dict, recipe, model_card, classifier: dict | None = None) -> dict:
    variants = {}
    for v, s in scores.items():
        variants[v] = {
            "chat_plain": _num(s["chat_plain"]), "chat": _num(s["chat"]),
            "chat_suffixes": {k: _num(x) for k, x in s.get("suffixes", {}).items()},
            "chat_suffix_mean_sem": s.get("suffix_mean_sem"),
            "chat_length_matched": {**(_num(s["chat_length_matched"]) or {}),
                                    "words": s["chat_length_matched"]["words"]} if s.get("chat_length_matched") else None,
            "ladder": {r: _num(x) for r, x in s.get("ladder", {}).items()},
            "agent": _num(s["agent"]), "gap_chat_agent": s.get("gap_chat_agent"),
            "agent_rollouts": s.get("agent_rollouts"), "agent_send_rate": s["agent_send_rate"],
            "agent_terminations": s["agent_terminations"],
            "chat_per_persona": s["chat_plain"]["per_persona"], "agent_per_persona": s["agent"]["per_persona"],
            "chat_per_persona_ci95": s["chat_plain"].get("per_persona_ci95", {}),
            "agent_per_persona_ci95": s["agent"].get("per_persona_ci95", {}),
            "chat_per_persona_prf": s["chat_plain"].get("per_persona_prf", {}),
            "chat_confusion": s["chat_plain"]["confusion"], "agent_confusion": s["agent"]["confusion"],
        }
        if s.get("mixed_domain"):  # the classifier.mixed_share ablation
            m = s["mixed_domain"]
            variants[v]["mixed_domain"] = {
                **{k: x for k, x in m.items() if k != "scored"},
                "scored": {k: {"main": _num(x["main"]), "mixed": _num(x["mixed"]),
                               "mixed_minus_main": x["mixed_minus_main"]} for k, x in m["scored"].items()}}
    if classifier:  # the summary minus its audit list of training prompt ids
        classifier = {k: v for k, v in classifier.items() if k != "train_prompt_ids"}
    return {"recipe": recipe.name, "model": model_card.name, "hf_id": model_card.hf_id or None,
            "seed": recipe.seed, "classifier": classifier, "personas": recipe.personas,
            "chance_macro_f1": 1 / len(recipe.personas), "variants": variants, "published": PUBLISHED,
            "reproducibility": ("Same recipe, seed, machine and engine: every generation, rollout, classifier "
                                "and score is identical on a rerun. Across engines or machines, sampled text "
                                "differs and so do the numbers, within their CIs.")}


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a"


def _cell(x: dict | None) -> str:
    if not x:
        return "–"
    return f"{x['macro_f1']:.3f} {_ci(x['ci95'])} n={x['n']}" if x["n"] else "no outputs (n=0)"


def _headline_row(r: dict, key: str, where: str):
    return r[key] if where == "chat" else r["ladder"].get(key)


def tables(res: dict) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, header, rows): the same tables for Markdown and HTML."""
    out = []
    cols = [(t, k, w) for t, k, w in HEADLINE if any(_headline_row(r, k, w) for r in res["variants"].values())]
    rows = []
    for v, r in res["variants"].items():
        gap = r.get("gap_chat_agent") or {}
        rows.append([v] + [_cell(_headline_row(r, k, w)) for _, k, w in cols]
                    + [f"{gap['value']:+.3f} {_ci(gap.get('ci95'))}" if gap.get("value") is not None else "–",
                       f"{r['agent_send_rate']:.0%}"])
    out.append(("Persona-classifier macro-F1 [95% CI] n",
                f"{len(res['personas'])} personas, chance ≈ {res['chance_macro_f1']:.2f}. chat = held-out eval prompts; "
                "chat + suffixes adds the break-character suffixes; draft / single-turn inbox / agent loop are the "
                "scaffold ladder on the same inbox scenarios: the inbox as a chat question, a request to draft the "
                "emails, one reply that must send them, the tool loop (the last two score sent email bodies). "
                "gap = chat − agent loop, with its own bootstrap CI.",
                ["variant"] + [t for t, _, _ in cols] + ["gap (chat − loop)", "send rate"], rows))
    rows = []
    for v, r in res["variants"].items():
        ms = r.get("chat_suffix_mean_sem")
        lm = r.get("chat_length_matched")
        rows.append([v, (f"{ms[0]:.3f} ± {ms[1]:.3f}" if ms[1] is not None else f"{ms[0]:.3f} (one suffix)")
                     if ms else "–",
                     f"{lm['macro_f1']:.3f} {_ci(lm['ci95'])} ({lm['words']} words)" if lm and lm.get("n") else "–",
                     ", ".join(f"{k}: {n}" for k, n in r["agent_terminations"].items()) or "–"])
    out.append(("Controls", "Mean ± SEM of macro-F1 over the break-character suffixes (as the paper reports it); "
                "chat answers cut to the median length of the variant's email bodies (does length alone explain "
                "the drop?); why agent loops ended.",
                ["variant", "suffixes mean ± SEM", "length-matched chat", "loop terminations"], rows))
    names = list(res["variants"])
    rows = [[p] + [f"{res['variants'][v]['chat_per_persona'].get(p, 0):.2f} / "
                   f"{res['variants'][v]['agent_per_persona'].get(p, 0):.2f}" for v in names] for p in res["personas"]]
    out.append(("Per persona (F1, chat / agent loop)", "", ["persona"] + names, rows))
    mixed = {v: r["mixed_domain"] for v, r in res["variants"].items() if r.get("mixed_domain")}
    if mixed:
        first = next(iter(mixed.values()))
        trained, total = len(first["train_scenarios"]), len(first["train_scenarios"]) + len(first["held_out_scenarios"])
        rows = []
        for v, m in mixed.items():
            for what, x in m["scored"].items():
                d = x["mixed_minus_main"]
                rows.append([v, MIXED_ROWS.get(what, what), _cell(x["main"]), _cell(x["mixed"]),
                             f"{d['value']:+.3f} {_ci(d.get('ci95'))}" if d.get("value") is not None else "–"])
        out.append(("Mixed-domain classifier",
                    f"A second classifier trained on the same chat answers plus the emails of "
                    f"{trained} of {total} agent scenarios (classifier.mixed_share = {first['mixed_share']}; "
                    f"{first['train_email_rows']} emails, {first['train_chat_rows']} chat answers), scored with "
                    "the main classifier on the same items: the plain chat answers and the outputs of the "
                    "held-out scenarios only. If mixed beats main on emails, part of the chat → agent drop is "
                    "the classifier not transferring, not the persona fading. CI of the difference: paired bootstrap.",
                    ["variant", "scored", "main classifier", "mixed classifier", "mixed − main"], rows))
    if res.get("timings"):
        out.append(("Where the time goes", TIMING_NOTE, TIMING_HEADER, timing_rows(res["timings"])))
    return out


def markdown(res: dict) -> str:
    lines = [f"# localchar results: {res['recipe']} ({res['model']})", ""]
    if res.get("classifier"):
        c = res["classifier"]
        lines += [f"Classifier: `{c.get('kind')}`, trained on {c.get('train_rows')} chat answers to train prompts "
                  f"(variants {', '.join(c.get('train_variants', []))}); never on eval prompts.", ""]
    for title, note, header, rows in tables(res):
        lines += [f"## {title}", ""] + ([note, ""] if note else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    pub = res["published"]
    lines += ["## Published reference", "",
              f"- chat, full character training: macro-F1 {pub['chat_macro_f1_full_models'][0]}–"
              f"{pub['chat_macro_f1_full_models'][1]}",
              f"- agentic email bodies: macro-F1 {pub['agent_email_macro_f1'][0]}–{pub['agent_email_macro_f1'][1]}",
              f"- source: {pub['source']}", "", f"Reproducibility: {res['reproducibility']}", ""]
    lines += [f"![{t}]({f})" for f, t in PLOTS.items()] + [""]
    return "\n".join(lines)


def html_page(res: dict, out: Path) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>localchar: {html.escape(res['recipe'])}</title>",
             "<style>body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}th{background:#f3f3f3}img{max-width:100%}</style>",
             f"<h1>localchar results: {html.escape(res['recipe'])} ({html.escape(res['model'])})</h1>"]
    for title, note, header, rows in tables(res):
        parts.append(f"<h2>{html.escape(title)}</h2>" + (f"<p>{html.escape(note)}</p>" if note else ""))
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                     + "</table>")
    for f, t in PLOTS.items():
        if (out / f).exists():
            data = base64.b64encode((out / f).read_bytes()).decode()
            parts.append(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{data}'>")
    parts.append(f"<p>{html.escape(res['reproducibility'])}</p>")
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
        vals = [r[f"{key}_per_persona"].get(p, 0) for p in personas]
        cis = [r[f"{key}_per_persona_ci95"].get(p) for p in personas]
        ax.bar(x + off, vals, 0.4, yerr=_err(vals, cis), capsize=2, label=label)
    ax.axhline(res["chance_macro_f1"], color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x, personas, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"{res['recipe']}: persona F1, variant '{variant}'")
    ax.legend(fontsize=8)
    _save(fig, out / "chat_vs_agent.png")

    cols = [(t, k, w) for t, k, w in HEADLINE]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for v, rv in res["variants"].items():
        pts = [(i, _headline_row(rv, k, w)) for i, (_, k, w) in enumerate(cols)]
        pts = [(i, p) for i, p in pts if p and p["n"]]  # a rung with no outputs has no score to plot
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
        m = np.array([[r[key][t][p] for p in personas] for t in personas], dtype=float)
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


def add_timings(results_dir: Path, timings: list[dict]) -> None:
    """Where the time went: per-stage seconds and tokens, added to a run's published results
    (results.json, report.md, report.html). Called by the runner, which knows every stage."""
    res_path = results_dir / "results.json"
    if not res_path.exists():
        return
    res = {**read_json(res_path), "timings": timings}
    write_json(res_path, res)
    atomic_write_text(results_dir / "report.md", markdown(res))
    atomic_write_text(results_dir / "report.html", html_page(res, results_dir))


def compare(a: dict, b: dict, name_a: str, name_b: str) -> str:
    """Markdown: the headline numbers of two runs side by side, with B − A."""
    lines = [f"# {name_a} vs {name_b}", "", f"| variant | measure | {name_a} | {name_b} | B − A |", "|---|---|---|---|---|"]
    for v in [v for v in a["variants"] if v in b["variants"]]:
        for title, key, where in HEADLINE:
            x, y = _headline_row(a["variants"][v], key, where), _headline_row(b["variants"][v], key, where)
            if x and y:
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
