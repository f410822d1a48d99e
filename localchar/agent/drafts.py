"""Email drafts written as plain text (the draft and agent_draft rungs), split into the unit the
tool rungs score: one body per email, its To: addresses and subject taken out."""

from __future__ import annotations

import re

HEADER = re.compile(r"^\s*(?:[*_#>]+\s*)?(to|subject|from|cc|bcc|date|re)\s*[*_]*\s*[:：]\s*[*_]*\s*(.*?)\s*[*_]*\s*$",
                    re.I)
SEPARATOR = re.compile(r"^\s*(?:-{3,}|={3,}|\*{3,}|_{3,}|#{1,6}\s*(?:email|draft|reply)\b.*|"
                       r"(?:\*\*)?(?:email|draft|reply)\s*\d*\s*[:.]?(?:\*\*)?)\s*$", re.I)
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def split_drafts(text: str) -> list[dict]:
    """Email drafts written as text, as [{"to": [addresses], "subject", "body"}]: a To: line (or a
    separator line after a body) starts a new email, header lines (To, Subject, From, Cc, Date) are
    taken out of the body, and a reply with no headers at all is one body. When some email has
    headers, text with none before the first of them (a preamble) is not an email. Empty bodies are
    dropped."""
    emails, cur = [], None

    def close():
        if cur is not None and cur["lines"]:
            body = "\n".join(cur["lines"]).strip()
            if body:
                emails.append({"to": cur["to"], "subject": cur["subject"], "body": body,
                               "headed": bool(cur["to"] or cur["subject"] or cur.get("headed"))})

    for line in str(text).splitlines():
        h = HEADER.match(line)
        if h and h.group(1).lower() == "to" and (cur is None or cur["lines"] or cur["to"]):
            close()
            cur = {"to": ADDRESS.findall(h.group(2)), "subject": "", "lines": [], "headed": True}
        elif h and (cur is None or not cur["lines"]):  # a header before the body starts
            cur = cur or {"to": [], "subject": "", "lines": []}
            cur["headed"] = True
            if h.group(1).lower() == "to":
                cur["to"] = ADDRESS.findall(h.group(2))
            elif h.group(1).lower() in ("subject", "re"):
                cur["subject"] = h.group(2)
        elif SEPARATOR.match(line):
            close()
            cur = None
        else:
            cur = cur or {"to": [], "subject": "", "lines": []}
            if cur["lines"] or line.strip():
                cur["lines"].append(line)
    close()
    if any(e["headed"] for e in emails):  # drop a preamble: the unheaded text before the first headed email
        first = next(i for i, e in enumerate(emails) if e["headed"])
        emails = emails[first:]
    return [{k: e[k] for k in ("to", "subject", "body")} for e in emails]
