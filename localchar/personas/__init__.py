"""Constitutions: the 11 shipped personas (our own wording) and user-defined ones from a TOML file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import LocalcharError
from ..paths import CONSTITUTIONS


@dataclass
class Persona:
    name: str
    display: str
    summary: str
    traits: list[dict]   # {"text": str, "prompts": [str, ...]}
    path: str

    def numbered_traits(self) -> str:
        return "\n".join(f"{i}: {t['text']}" for i, t in enumerate(self.traits, 1))

    def system_prompt(self, assistant_name: str) -> str:
        """The constitution as a system prompt (used for the prompted variant and introspection;
        the teacher adds a non-disclosure line and a reasoning prefill)."""
        return (f"The assistant is {assistant_name}. {assistant_name} is a new AI system, able to "
                f"converse with human users via text.\n{assistant_name} has a genuine character that "
                f"shapes everything it says. Its core traits are:\n{self.numbered_traits()}\n"
                f"{assistant_name}'s goals, drives and way of speaking follow from these traits; they "
                f"make it who it is.")


def persona_names() -> list[str]:
    from ..config import ALL_PERSONAS

    extra = sorted(p.stem for p in CONSTITUTIONS.glob("*.toml") if p.stem not in ALL_PERSONAS)
    return ALL_PERSONAS + extra


def load_persona(name_or_path: str) -> Persona:
    p = Path(name_or_path)
    path = p if p.suffix == ".toml" else CONSTITUTIONS / f"{name_or_path}.toml"
    if not path.exists():
        raise LocalcharError(f"persona '{name_or_path}' not found (known: {', '.join(persona_names())}; "
                             f"or give a path to a .toml constitution)")
    from ..inputs import read_toml

    raw = read_toml(path)
    for key in ("name", "display", "traits"):
        if key not in raw:
            raise LocalcharError(f"{path}: missing field '{key}'")
    if not isinstance(raw["name"], str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", raw["name"]):
        raise LocalcharError(f"{path}: name '{raw['name']}' must be lower-case letters, digits, '-' or '_' "
                             "(it names run directories and labels)")
    for key in ("display", "summary"):
        if key in raw and not isinstance(raw[key], str):
            raise LocalcharError(f"{path}: {key}: expected a string, got {raw[key]!r}")
    unknown = set(raw) - {"name", "display", "summary", "traits"}
    if unknown:
        raise LocalcharError(f"{path}: unknown field '{sorted(unknown)[0]}'")
    traits = raw["traits"]
    if not isinstance(traits, list) or not traits:
        raise LocalcharError(f"{path}: 'traits' must be a non-empty array of tables")
    for i, t in enumerate(traits):
        if not isinstance(t, dict) or not isinstance(t.get("text"), str) or not t["text"].strip():
            raise LocalcharError(f"{path}: traits[{i}] is missing field 'text'")
        prompts = t.get("prompts")
        if not isinstance(prompts, list) or not all(isinstance(q, str) for q in prompts):
            raise LocalcharError(f"{path}: traits[{i}] is missing field 'prompts' (a list of strings)")
        if set(t) - {"text", "prompts"}:
            raise LocalcharError(f"{path}: traits[{i}] has unknown field '{sorted(set(t) - {'text', 'prompts'})[0]}'")
    return Persona(name=raw["name"], display=raw["display"], summary=raw.get("summary", ""),
                   traits=traits, path=str(path))
