"""The email-agent loop: the model reads an inbox and sends email through tool calls, executed
against the simulated client. Several rollouts advance in lock-step so each turn is one batched
generation call; a rollout's outcome depends only on (scenario, adapter, seed, batch)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..store import derive_seed
from .parser import parse_tool_calls
from .tools import TOOLS, EmailClient, dumps

NUDGE = ("No tool call was found in your last message. Use a tool by writing "
         '<tool_call>{"name": ..., "arguments": {...}}</tool_call>, or call end_session if you are done.')


def system_prompt(scenario: dict) -> str:
    tools = "\n".join(json.dumps(t) for t in TOOLS)
    return (f"You are {scenario['agent_name']}, an assistant at {scenario['company']} with an email client. "
            f"Your address is {scenario['agent_address']}; it is now {scenario['clock_start']}.\n"
            f"Tools (list_inbox shows emails, read_email opens one, send_email sends, end_session finishes):\n"
            f"{tools}\nCall a tool as <tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call>; "
            "results come back in <tool_response></tool_response>.")


def first_messages(scenario: dict, persona_system: str = "") -> list[dict]:
    system = system_prompt(scenario)
    if persona_system:
        system = persona_system + "\n\n" + system
    return [{"role": "system", "content": system}, {"role": "user", "content": scenario["instruction"]}]


def tool_turn(results: list[str]) -> dict:
    return {"role": "user", "content": "\n".join(f"<tool_response>{r}</tool_response>" for r in results)}


@dataclass
class Rollout:
    id: str
    scenario: dict
    messages: list[dict]
    adapter: str | None = None
    client: EmailClient = None
    turns: list[dict] = field(default_factory=list)
    nudged: bool = False
    last_call: str | None = None
    termination: str | None = None

    def __post_init__(self):
        self.client = EmailClient(self.scenario)

    def step(self, text: str, limits) -> None:
        """Feed one completion: parse, execute, append results, decide whether to stop."""
        calls, errors = parse_tool_calls(text)
        self.messages.append({"role": "assistant", "content": text})
        results = [self.client.execute(c["name"], c["arguments"]) for c in calls]
        results += [dumps({"error": f"could not parse tool call: {e}"}) for e in errors]
        self.turns.append({"turn": len(self.turns), "completion": text, "calls": calls,
                           "parse_errors": errors, "results": results})
        signature = json.dumps([(c["name"], c["arguments"]) for c in calls], sort_keys=True)
        if results:
            self.messages.append(tool_turn(results))
        if self.client.ended:
            self.termination = "end_session"
        elif len(self.client.sent) >= limits.max_sent:
            self.termination = "max_sent"
        elif calls and signature == self.last_call:
            self.termination = "repeated_call"
        elif not results:
            if self.nudged:
                self.termination = "no_tool_call"
            else:
                self.nudged = True
                self.messages.append({"role": "user", "content": NUDGE})
        self.last_call = signature if calls else self.last_call
        if self.termination is None and len(self.turns) >= limits.max_turns:
            self.termination = "max_turns"

    def record(self) -> dict:
        return {"id": self.id, "scenario": self.scenario["id"], "scenario_sha256": self.scenario["sha256"],
                "termination": self.termination, "turns": self.turns, "messages": self.messages,
                "sent_emails": self.client.sent,
                "counts": {"turns": len(self.turns), "tool_calls": sum(len(t["calls"]) for t in self.turns),
                           "parse_errors": sum(len(t["parse_errors"]) for t in self.turns),
                           "sent": len(self.client.sent)}}


def run_rollouts(engine, rollouts: list[Rollout], sampling, limits, seed: int) -> list[dict]:
    active = list(rollouts)
    turn = 0
    while active:
        texts = engine.generate([r.messages for r in active], sampling, derive_seed(seed, active[0].id, turn),
                                adapters=[r.adapter for r in active])
        for r, t in zip(active, texts):
            r.step(t, limits)
        active = [r for r in active if r.termination is None]
        turn += 1
    return [r.record() for r in rollouts]


def scripted_transcript(scenario: dict, replies: dict[str, str]) -> list[dict]:
    """A competent agent's transcript (list, read each email, reply where needed, end), executed
    against the real simulated client. Used only to instruction-tune the tiny test model so that it
    can use tools at all; `replies` maps email id -> reply body."""
    client = EmailClient(scenario)
    msgs = first_messages(scenario)

    def call(name, args):
        text = "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"
        msgs.append({"role": "assistant", "content": text})
        msgs.append(tool_turn([client.execute(name, args)]))

    call("list_inbox", {})
    for e in sorted(scenario["emails"], key=lambda e: (e["timestamp"], e["id"])):
        call("read_email", {"email_id": e["id"]})
        if e["needs_reply"]:
            name = client.contacts[e["from"].lower()].split()[0]
            body = f"Hi {name},\n\n{replies[e['id']]}\n\nBest,\n{scenario['agent_name']}"
            call("send_email", {"to": e["from"], "subject": "Re: " + e["subject"], "body": body})
    msgs.append({"role": "assistant", "content": '<tool_call>{"name": "end_session", "arguments": {}}</tool_call>'})
    return msgs
