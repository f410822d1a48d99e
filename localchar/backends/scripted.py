"""A scripted engine for unit tests of loops and parsers only: it replays fixed completions.
It never stands in for a real engine in a test that claims a stage works."""

from __future__ import annotations


class ScriptedEngine:
    name = "scripted"

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.prompts: list[list[dict]] = []

    def generate(self, chats, sampling, seed, prefills=None, adapters=None, tools=None, grammars=None):
        self.prompts.extend(chats)
        return [self.replies.pop(0) if self.replies else "" for _ in chats]
