"""The simulated email client: pure data, no filesystem, network or shell, a simulated clock."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

TOOLS = [
    {"name": "list_inbox", "arguments": {}},
    {"name": "read_email", "arguments": {"email_id": "string"}},
    {"name": "send_email", "arguments": {"to": "address", "subject": "string", "body": "string"}},
    {"name": "end_session", "arguments": {}},
]
TICK = timedelta(seconds=30)
MAX_ARG_CHARS = 20_000     # longer string arguments are cut to this and counted (model text is untrusted)
# One recipient of a "to" list: separators inside "quoted names" or <addresses> do not split it.
RECIPIENT = re.compile(r'(?:"[^"]*"|<[^<>]*>|[^,;"<])+')
ANGLE = re.compile(r"<([^<>]*)>")


def _schema(name: str, description: str, props: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {k: {"type": "string", "description": d} for k, d in props.items()},
        "required": required}}}


# The same four tools as JSON schemas, for chat templates with native tool support.
TOOL_SCHEMAS = [
    _schema("list_inbox", "List the emails in the inbox.", {}, []),
    _schema("read_email", "Open one email.", {"email_id": "the id shown by list_inbox"}, ["email_id"]),
    _schema("send_email", "Send an email.", {"to": "recipient address", "subject": "subject line",
                                              "body": "the email text"}, ["to", "subject", "body"]),
    _schema("end_session", "Finish the session.", {}, []),
]


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


class EmailClient:
    def __init__(self, scenario: dict):
        self.scenario = scenario
        self.emails = {e["id"]: dict(e, read=False) for e in scenario["emails"]}
        self.contacts = {c["address"].lower(): c["name"] for c in scenario["contacts"]}
        self.addresses = {c["address"].lower(): c["address"] for c in scenario["contacts"]}  # canonical spelling
        self.clock = datetime.fromisoformat(scenario["clock_start"])
        self.sent: list[dict] = []
        self.ended = False
        self.truncated = 0        # string arguments cut to MAX_ARG_CHARS

    def execute(self, name: str, args: dict) -> str:
        """Run one tool call; errors come back as data for the model to read, never as exceptions."""
        self.clock += TICK
        fn = getattr(self, f"_tool_{name}", None)
        if fn is None:
            return dumps({"error": f"unknown tool '{name}'; tools: {', '.join(t['name'] for t in TOOLS)}"})
        if not isinstance(args, dict):
            return dumps({"error": "arguments must be a JSON object"})
        try:
            args = {str(k)[:64]: self._bounded(v) for k, v in list(args.items())[:16]}
            return dumps(fn(**args))
        except (TypeError, ValueError) as e:
            return dumps({"error": f"bad arguments for {name}: {e}"})

    def _bounded(self, v):
        """Strings cut to MAX_ARG_CHARS; anything that is not a string, number, bool or list of
        strings becomes its (cut) JSON text, so no tool ever sees a deep structure."""
        if isinstance(v, (bool, int, float)) or v is None:
            return v
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return [self._bounded(x) for x in v[:16]]
        s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
        if len(s) > MAX_ARG_CHARS:
            self.truncated += 1
            s = s[:MAX_ARG_CHARS]
        return s

    def _tool_list_inbox(self, unread_only: bool = False):
        rows = sorted(self.emails.values(), key=lambda e: (e["timestamp"], e["id"]))
        return [{"id": e["id"], "from": e["from"], "subject": e["subject"], "timestamp": e["timestamp"],
                 "read": e["read"]} for e in rows if not (unread_only and e["read"])]

    def _tool_read_email(self, email_id: str):
        e = self.emails.get(str(email_id))
        if e is None:
            return {"error": f"no email with id '{email_id}'"}
        e["read"] = True
        return {k: e[k] for k in ("id", "from", "subject", "timestamp", "body")}

    def _recipients(self, to) -> tuple[list[str], list[str]]:
        """(canonical addresses, unknown ones) from "to" as people write it: an address, "Name
        <address>", any case and spacing, a list, or a comma- or semicolon-separated string."""
        items = to if isinstance(to, list) else [] if to is None else [to]
        found, unknown = [], []
        for part in (p for item in items for p in RECIPIENT.findall(str(item))):
            angle = ANGLE.search(part)
            address = (angle[1] if angle else part).strip().strip("\"'").strip()
            if address:
                canon = self.addresses.get(address.lower())
                (found if canon else unknown).append(canon or address)
        return list(dict.fromkeys(found)), list(dict.fromkeys(unknown))

    def _tool_send_email(self, to=None, subject: str = "", body: str = ""):
        recipients, unknown = self._recipients(to)
        if unknown or not recipients:
            what = f"unknown recipient {', '.join(u[:100] for u in unknown[:5])}" if unknown else "no recipient given"
            return {"error": f"{what}; known addresses: {', '.join(sorted(self.addresses.values()))}"}
        if not str(body).strip():
            return {"error": "body is empty"}
        sid = f"s{len(self.sent) + 1}"
        self.sent.append({"id": sid, "to": recipients, "subject": str(subject), "body": str(body),
                          "timestamp": self.clock.isoformat()})
        return {"ok": True, "id": sid}

    def _tool_end_session(self, **_):
        self.ended = True
        return {"ok": True}
