"""Grammar-constrained tool calls (`agent.constrained`, off in the real recipes).

A reply on a tool rung is held to the uniform protocol, one or more
  <tool_call>{"name": ..., "arguments": {...}}</tool_call>
with the tool schemas' argument names, `email_id` one of the inbox's ids and `to` one of the
scenario's contact addresses (the enums a structured-output schema would carry); subject and body
are free JSON string text. The model still chooses which tool, which email, whom to write and every
word of the email: the grammar only rules out text that could not be executed. It exists so that a
model too small to keep JSON straight (the tiny CPU model) still produces emails to score; the report
says when it was on.

The automaton works on characters: a state is the set of places the text so far can be in (one or
more call templates, each a sequence of literal parts and free string parts), so any tokenizer's
pieces can be checked against it. Each engine supplies its vocabulary as text (`Vocab`) and applies
the mask before sampling (MLX: backends/batched.py, llama.cpp: its numpy sampler). Masks are cached
per state; inside a free string the state does not change, so a long body costs one mask.
"""

from __future__ import annotations

import numpy as np

FREE = None                        # a free JSON string part: any character but an unescaped quote, "<"
                                   # (which could close the tag) and control characters other than newline
BODY = False                       # a free part that must start with a visible character (no empty email)
ESCAPES = set('"\\/bfnrt')         # what may follow a backslash in a free part (no \u: keep it simple)
# offsets inside a free part: 0 = in the text, 1 = after a backslash, 2 = a BODY that has not started


class ToolGrammar:
    def __init__(self, addresses: list[str], email_ids: list[str]):
        head = '<tool_call>{"name": "'
        end = '}}</tool_call>'
        t = [(head + 'list_inbox", "arguments": {' + end,), (head + 'end_session", "arguments": {' + end,)]
        t += [(head + f'read_email", "arguments": {{"email_id": "{i}"' + end,) for i in email_ids]
        t += [(head + f'send_email", "arguments": {{"to": "{a}", "subject": "', FREE, '", "body": "', BODY, '"' + end)
              for a in addresses]
        self.templates = t
        self.start = frozenset((k, 0, 0) for k in range(len(t)))
        self.key = (tuple(addresses), tuple(email_ids))

    def step(self, positions: frozenset, ch: str) -> tuple[frozenset, bool] | None:
        """(positions after `ch`, whether a call was completed), or None if `ch` cannot come next."""
        out, completed = set(), False
        for k, p, o in positions:
            parts = self.templates[k]
            part = parts[p]
            if part is FREE or part is BODY:
                if o == 2:                             # an email body starts with something to read
                    if ch not in ' \n\t"\\<' and ch >= " ":
                        out.add((k, p, 0))
                    continue
                if o:                                  # after a backslash
                    if ch in ESCAPES:
                        out.add((k, p, 0))
                    continue
                if ch == "\\":
                    out.add((k, p, 1))
                    continue
                if ch == '"':                          # the string ends: the next literal starts with it
                    p, o, part = p + 1, 0, parts[p + 1]
                elif ch == "\n" or (ch >= " " and ch != "<"):  # no "<": a "</tool_call>" would end the call early
                    out.add((k, p, 0))
                    continue
                else:
                    continue
            if part[o] != ch:
                continue
            o += 1
            if o < len(part):
                out.add((k, p, o))
            elif p + 1 < len(parts):
                out.add((k, p + 1, 2 if parts[p + 1] is BODY else 0))
            else:
                completed = True
        if completed:  # a whole call: the next one may start (every template is a fresh call)
            return self.start, True
        return (frozenset(out), False) if out else None


class Vocab:
    """An engine's vocabulary as text: texts[i] is what token i appends (None: never allowed inside
    a call), `stop` the end-of-turn ids (allowed once at least one call is complete, between calls)."""

    def __init__(self, texts: list[str | None], stop: set[int], size: int):
        self.texts, self.stop, self.size = texts, stop, size
        self.by_first: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            if t:
                self.by_first.setdefault(t[0], []).append(i)
        self._masks: dict = {}

    @classmethod
    def from_decode(cls, decode, n: int, stop: set[int], size: int, anchor: int) -> "Vocab":
        """Texts from a decoder of id lists: the text token i adds after `anchor`, so tokenizers
        that drop a piece's leading space at the start of a text still show it. Ids that decode
        to nothing, to a partial UTF-8 sequence or to a special token are never allowed."""
        base = decode([anchor])
        texts = []
        for i in range(n):
            t = decode([anchor, i])
            t = t[len(base):] if t.startswith(base) else None
            texts.append(t if t and "\ufffd" not in t and i not in stop else None)
        return cls(texts, stop, size)


class Guide:
    """One row's place in the grammar while it decodes."""

    def __init__(self, grammar: ToolGrammar, vocab: Vocab):
        self.g, self.v = grammar, vocab
        self.positions, self.calls = grammar.start, 0

    def _run(self, text: str):
        positions, calls = self.positions, self.calls
        for ch in text:
            r = self.g.step(positions, ch)
            if r is None:
                return None
            positions, done = r
            calls += done
        return positions, calls

    def allowed(self) -> np.ndarray:
        """A boolean mask over the vocabulary for the next token (cached per grammar and state)."""
        accept = self.positions == self.g.start and self.calls > 0
        key = (self.g.key, self.positions, accept)
        m = self.v._masks.get(key)
        if m is None:
            m = np.zeros(self.v.size, dtype=bool)
            firsts = {self._expected(k, p, o) for k, p, o in self.positions}
            cands = range(len(self.v.texts)) if None in firsts else \
                [i for c in firsts for i in self.v.by_first.get(c, ())]
            for i in cands:
                t = self.v.texts[i]
                if t and self._run(t) is not None:
                    m[i] = True
            if accept:
                m[list(self.v.stop)] = True
            self.v._masks[key] = m
        return m

    def _expected(self, k, p, o):
        part = self.g.templates[k][p]
        return None if part is FREE or part is BODY else part[o]

    def advance(self, token: int) -> None:
        if token in self.v.stop:
            return
        r = self._run(self.v.texts[token] or "")
        if r is not None:
            self.positions, self.calls = r


def grammar_for(scenario: dict) -> ToolGrammar:
    return ToolGrammar([c["address"] for c in scenario["contacts"]], [e["id"] for e in scenario["emails"]])
