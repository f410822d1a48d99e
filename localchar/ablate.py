"""The comparison across the grid points of `localchar ablate`: one table and one plot."""

from __future__ import annotations

import json
from pathlib import Path

from .report import HEADLINE, _cell, _headline_row
from .store import atomic_write_text


def summarize(points: list[tuple[str, Path]], out: Path) -> Path:
    """points: (label, results dir). Writes out/summary.md and out/summary.png; returns the .md path."""
    res = {label: json.loads((d / "results.json").read_text()) for label, d in points}
    variants = [v for v in next(iter(res.values()))["variants"]]
    lines = ["# Ablation summary", "", "Macro-F1 [95% CI] n per grid point.", ""]
    for v in variants:
        cols = [(t, k, w) for t, k, w in HEADLINE
                if any(_headline_row(r["variants"][v], k, w) for r in res.values() if v in r["variants"])]
        lines += [f"## variant `{v}`", "", "| grid point | " + " | ".join(t for t, _, _ in cols) + " |",
                  "|" + "---|" * (len(cols) + 1)]
        for label, r in res.items():
            rv = r["variants"].get(v)
            if rv:
                lines.append(f"| {label} | " + " | ".join(_cell(_headline_row(rv, k, w)) for _, k, w in cols) + " |")
        lines.append("")
    md = out / "summary.md"
    atomic_write_text(md, "\n".join(lines))
    _plot(res, variants, out / "summary.png")
    return md


def _plot(res: dict, variants: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _err

    variant = "full" if "full" in variants else variants[-1]
    labels = list(res)
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 1.2), 4.2))
    for title, key, where in HEADLINE:
        pts = [(i, _headline_row(res[l]["variants"][variant], key, where)) for i, l in enumerate(labels)]
        pts = [(i, p) for i, p in pts if p and p["n"]]
        if pts:
            vals = [p["macro_f1"] for _, p in pts]
            ax.errorbar([i for i, _ in pts], vals, yerr=_err(vals, [p["ci95"] for _, p in pts]), marker="o",
                        capsize=3, label=title)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("macro-F1")
    ax.set_title(f"ablation, variant '{variant}'")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
