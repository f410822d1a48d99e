"""Tolerant tool-call parser. Forms are tried in a fixed order and the matching form is recorded:
tagged <tool_call>{...}</tool_call> (also unterminated at the end of the text), then fenced
```json / ```tool_call / ```tool_code blocks, then a bare JSON object with a "name" key."""

from __future__ import annotations

import json
import re

TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
FENCED = re.compile(r"```(?:json|tool_call|tool_code)\s*\n(.*?)```", re.S)


def _decode(blob: str):
    blob = blob.strip()
    try:
        return json.loads(blob), None
    except json.JSONDecodeError as e:
        # tolerate trailing junk after one complete object
        try:
            obj, _ = json.JSONDecoder().raw_decode(blob)
            return obj, None
        except json.JSONDecodeError:
            return None, f"invalid JSON ({e.msg})"


def _as_call(obj) -> dict | None:
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            args, _ = _decode(args)
        return {"name": obj["name"], "arguments": args if isinstance(args, dict) else {}}
    return None


def parse_tool_calls(text: str) -> tuple[list[dict], list[str]]:
    """Returns (calls, errors); each call is {"name", "arguments", "format"}."""
    for form, pattern in (("tagged", TAGGED), ("fenced", FENCED)):
        blobs = pattern.findall(text)
        if blobs:
            calls, errors = [], []
            for blob in blobs:
                obj, err = _decode(blob)
                call = _as_call(obj)
                if call:
                    calls.append({**call, "format": form})
                else:
                    errors.append(f"{form}: {err or 'no tool name'}")
            return calls, errors
    start = text.find("{")
    if start >= 0:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
        except json.JSONDecodeError:
            obj = None
        call = _as_call(obj)
        if call:
            return [{**call, "format": "bare_json"}], []
    return [], []
