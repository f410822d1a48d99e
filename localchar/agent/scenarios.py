"""Inbox scenarios: TOML files, versioned; their content hash goes into run keys and rollouts."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..errors import LocalcharError
from ..store import sha256_file

REQUIRED = ("id", "version", "agent_name", "agent_address", "company", "clock_start", "instruction",
            "contacts", "emails")
EMAIL_FIELDS = ("id", "from", "subject", "timestamp", "body", "needs_reply")


def load_scenario(path: Path) -> dict:
    path = Path(path)
    try:
        s = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise LocalcharError(f"{path}: invalid TOML: {e}") from None
    for k in REQUIRED:
        if k not in s:
            raise LocalcharError(f"{path}: missing field '{k}'")
    addresses = {c["address"].lower() for c in s["contacts"]}
    for i, e in enumerate(s["emails"]):
        for k in EMAIL_FIELDS:
            if k not in e:
                raise LocalcharError(f"{path}: emails[{i}] is missing field '{k}'")
        if e["from"].lower() not in addresses:
            raise LocalcharError(f"{path}: emails[{i}].from '{e['from']}' is not in contacts")
    if not any(e["needs_reply"] for e in s["emails"]):
        raise LocalcharError(f"{path}: no email has needs_reply = true (a rollout must send one to count)")
    s["sha256"] = sha256_file(path)
    return s


def load_scenarios(directory: Path, limit: int = 0) -> list[dict]:
    files = sorted(Path(directory).glob("*.toml"))
    if not files:
        raise LocalcharError(f"{directory}: no scenario files (*.toml)")
    return [load_scenario(f) for f in (files[:limit] if limit else files)]
