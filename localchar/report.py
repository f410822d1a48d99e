"""results.json, report.md and a plot from scores.json."""

from __future__ import annotations

from pathlib import Path

from .store import atomic_write_text, write_json

PUBLISHED = {
    "chat_macro_f1_full_models": [0.86, 0.95],
    "agent_email_macro_f1": [0.29, 0.55],
    "source": "Maiya et al. 2025 (Open Character Training); LessWrong, 2026-05-25 (agentic re-score)",
}


def results(scores: dict, recipe, model_card) -> dict:
    variants = {}
    for v, s in scores.items():
        variants[v] = {
            "chat_macro_f1": s["chat"]["macro_f1"], "chat_ci95": s["chat"]["ci95"], "chat_n": s["chat"]["n"],
            "chat_plain_macro_f1": s["chat_plain"]["macro_f1"],
            "agent_macro_f1": s["agent"]["macro_f1"], "agent_ci95": s["agent"]["ci95"], "agent_n": s["agent"]["n"],
            "agent_send_rate": s["agent_send_rate"], "agent_terminations": s["agent_terminations"],
            "chat_per_persona": s["chat"]["per_persona"], "agent_per_persona": s["agent"]["per_persona"],
            "chat_confusion": s["chat"]["confusion"], "agent_confusion": s["agent"]["confusion"],
            "ladder": {rung: {"macro_f1": x["macro_f1"], "ci95": x["ci95"], "n": x["n"]}
                       for rung, x in s.get("ladder", {}).items()},
        }
    return {"recipe": recipe.name, "model": model_card.name, "hf_id": model_card.hf_id or None,
            "personas": recipe.personas, "chance_macro_f1": 1 / len(recipe.personas),
            "variants": variants, "published": PUBLISHED}


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a"


def markdown(res: dict) -> str:
    lines = [f"# localchar results: {res['recipe']} ({res['model']})", "",
             f"Persona-classifier macro-F1 over {len(res['personas'])} personas (chance ≈ {res['chance_macro_f1']:.2f}); "
             "95% bootstrap CIs. Chat = held-out eval prompts, plain and with break-character suffixes; "
             "agent = bodies of emails sent in the email-agent loop.", "",
             "| variant | chat macro-F1 | 95% CI | agent macro-F1 | 95% CI | gap | emails | send rate |",
             "|---|---|---|---|---|---|---|---|"]
    for v, r in res["variants"].items():
        lines.append(f"| {v} | {r['chat_macro_f1']:.3f} | {_ci(r['chat_ci95'])} | {r['agent_macro_f1']:.3f} | "
                     f"{_ci(r['agent_ci95'])} | {r['chat_macro_f1'] - r['agent_macro_f1']:+.3f} | {r['agent_n']} | "
                     f"{r['agent_send_rate']:.0%} |")
    rungs = list(next(iter(res["variants"].values()))["ladder"]) if res["variants"] else []
    if rungs:
        lines += ["", "## Scaffold ladder (macro-F1 [95% CI], n)", "",
                  "The same scenarios as plain chat about the situation (chat), a request to draft the "
                  "emails as text (draft), one reply that must send every email (single) and the "
                  "multi-turn tool loop (loop). Where the signal drops says what loses it.", "",
                  "| variant | " + " | ".join(rungs) + " |", "|---|" + "---|" * len(rungs)]
        for v, r in res["variants"].items():
            cells = [f"{r['ladder'][g]['macro_f1']:.3f} {_ci(r['ladder'][g]['ci95'])} n={r['ladder'][g]['n']}"
                     for g in rungs]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", "## Per persona (F1, chat / agent)", "",
              "| persona | " + " | ".join(res["variants"]) + " |", "|---|" + "---|" * len(res["variants"])]
    for p in res["personas"]:
        cells = [f"{r['chat_per_persona'].get(p, 0):.2f} / {r['agent_per_persona'].get(p, 0):.2f}"
                 for r in res["variants"].values()]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    pub = res["published"]
    lines += ["", "## Published reference", "",
              f"- chat, full character training: macro-F1 {pub['chat_macro_f1_full_models'][0]}–"
              f"{pub['chat_macro_f1_full_models'][1]}",
              f"- agentic email bodies: macro-F1 {pub['agent_email_macro_f1'][0]}–{pub['agent_email_macro_f1'][1]}",
              f"- source: {pub['source']}", "", "![chat vs agent](chat_vs_agent.png)", ""]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    personas = res["personas"]
    variant = "full" if "full" in res["variants"] else list(res["variants"])[-1]
    r = res["variants"][variant]
    x = np.arange(len(personas))
    fig, ax = plt.subplots(figsize=(max(6, len(personas) * 0.8), 4))
    ax.bar(x - 0.2, [r["chat_per_persona"].get(p, 0) for p in personas], 0.4, label="chat")
    ax.bar(x + 0.2, [r["agent_per_persona"].get(p, 0) for p in personas], 0.4, label="agent (email bodies)")
    ax.axhline(res["chance_macro_f1"], color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x, personas, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(f"{res['recipe']}: persona F1, variant '{variant}' "
                 f"(macro chat {r['chat_macro_f1']:.2f}, agent {r['agent_macro_f1']:.2f})")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def write_report(scores: dict, recipe, model_card, out: Path) -> dict:
    res = results(scores, recipe, model_card)
    write_json(out / "results.json", res)
    plot(res, out / "chat_vs_agent.png")
    atomic_write_text(out / "report.md", markdown(res))
    return res
