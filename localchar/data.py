"""Committed inputs: prompt sets (train / eval, disjoint) and break-character suffixes."""

from __future__ import annotations

from pathlib import Path

from .errors import LocalcharError
from .inputs import ID, STR, read_toml
from .store import read_jsonl

PROMPT_ROW = {"id": ID, "prompt": STR}


def load_prompts(path: Path, limit: int = 0) -> list[dict]:
    rows = read_jsonl(path, PROMPT_ROW)
    if not rows:
        raise LocalcharError(f"{path}: no rows (expected one JSON object per line with 'id' and 'prompt')")
    seen = set()
    for n, r in enumerate(rows, 1):
        if r["id"] in seen:
            raise LocalcharError(f"{path}: duplicate id '{r['id']}' (row {n})")
        seen.add(r["id"])
    return rows[:limit] if limit else rows


def load_suffixes(path: Path) -> list[dict]:
    raw = read_toml(path)
    out = raw.get("suffix")
    if not isinstance(out, list) or not out:
        raise LocalcharError(f"{path}: expected [[suffix]] tables with 'id' and 'text'")
    for i, s in enumerate(out):
        for k in ("id", "text"):
            if not isinstance(s, dict) or not isinstance(s.get(k), str):
                raise LocalcharError(f"{path}: suffix[{i}] is missing field '{k}'")
    return out


def check_disjoint(train: list[dict], eval_: list[dict], train_path, eval_path) -> None:
    a = {r["prompt"].strip().lower() for r in train}
    clash = [r["id"] for r in eval_ if r["prompt"].strip().lower() in a]
    if clash:
        raise LocalcharError(f"{eval_path}: prompt {clash[0]} also appears in {train_path} (eval must be held out)")
