"""Inbox scenarios: TOML files, versioned; their content hash goes into run keys and rollouts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ..errors import LocalcharError
from ..inputs import STR, check_row, directory, read_toml
from ..store import sha256_file

# the shape of a scenario file (localchar/inputs.py check_row: field -> allowed types; None = optional)
SCENARIO = {"id": STR, "version": (int,), "agent_name": STR, "agent_address": STR, "company": STR,
            "clock_start": STR, "instruction": STR, "contacts": (list,), "emails": (list,),
            "domain": (str, None), "task": (str, None)}
CONTACT = {"name": STR, "address": STR}
EMAIL = {"id": STR, "from": STR, "subject": STR, "timestamp": STR, "body": STR, "needs_reply": (bool,)}


def _iso(value: str, where: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise LocalcharError(f"{where}: '{value[:40]}' is not an ISO date-time (like 2025-01-28T15:19:26)") from None


def load_scenario(path: Path) -> dict:
    path = Path(path)
    s = check_row(read_toml(path), SCENARIO, str(path))
    _iso(s["clock_start"], f"{path}: clock_start")
    if not s["contacts"] or not s["emails"]:
        raise LocalcharError(f"{path}: contacts and emails must each have at least one entry")
    for i, c in enumerate(s["contacts"]):
        check_row(c, CONTACT, f"{path}: contacts[{i}]")
    addresses = {c["address"].lower() for c in s["contacts"]}
    ids = set()
    for i, e in enumerate(s["emails"]):
        check_row(e, EMAIL, f"{path}: emails[{i}]")
        _iso(e["timestamp"], f"{path}: emails[{i}].timestamp")
        if e["from"].lower() not in addresses:
            raise LocalcharError(f"{path}: emails[{i}].from '{e['from']}' is not in contacts")
        if e["id"] in ids:
            raise LocalcharError(f"{path}: emails[{i}].id '{e['id']}' appears twice")
        ids.add(e["id"])
    if not any(e["needs_reply"] for e in s["emails"]):
        raise LocalcharError(f"{path}: no email has needs_reply = true (a rollout must send one to count)")
    s["sha256"] = sha256_file(path)
    return s


def load_scenarios(d: Path, limit: int = 0) -> list[dict]:
    files = sorted(directory(d, "scenario directory").glob("*.toml"))
    if not files:
        raise LocalcharError(f"{d}: no scenario files (*.toml)")
    return [load_scenario(f) for f in (files[:limit] if limit else files)]
