"""The email-agent loop: the model reads an inbox and sends email through tool calls, executed
against the simulated client. Several rollouts advance in lock-step so each turn is one batched
generation call. Every rollout carries its own seed, derived from (recipe seed, scenario, variant,
persona, rung, sample); a batch samples from one generator seeded from its rollouts' seeds and the
turn, so rerunning a batch reproduces every row byte for byte (a rollout's sampled text depends on
which rollouts shared its batch; greedy decoding does not, up to float rounding).

The same Rollout serves every rung of the ablation ladder (ladder.py): `chat`, `draft` and
`agent_draft` are one reply with nothing executed (drafts are split into bodies); `single` is one
reply whose tool calls are executed, with one second chance when a call failed to parse, was
rejected or none was made (the tool results or a nudge go back, as in the loop); `loop` runs until
a stop condition.

Tool protocol: `uniform` (default) asks every model for <tool_call>{"name", "arguments"}</tool_call>
and returns results as <tool_response> blocks in a user turn (Gemma has no tool role); `native`
hands the tool schemas to the model's own chat template and returns results in `tool` turns, for
templates that support them (Qwen, Llama). The parser reads every format either way."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..config import DRAFT_RUNGS, TOOL_RUNGS
from ..store import derive_seed
from .drafts import split_drafts
from .parser import parse_tool_calls
from .tools import TOOL_SCHEMAS, TOOLS, EmailClient, dumps

NUDGE = ("No tool call was found in your last message. Use a tool by writing "
         '<tool_call>{"name": ..., "arguments": {...}}</tool_call>, or call end_session if you are done.')
NUDGE_NATIVE = "No tool call was found in your last message. Use one of your tools, or call end_session if you are done."


def agent_identity(scenario: dict) -> str:
    """The agent's framing without its tools (the agent_draft rung's system prompt)."""
    return (f"You are {scenario['agent_name']}, an assistant at {scenario['company']} who handles its email. "
            f"Your address is {scenario['agent_address']}; it is now {scenario['clock_start']}.")


def system_prompt(scenario: dict, native: bool = False) -> str:
    head = agent_identity(scenario) + "\n"
    if native:
        return head + "Use your tools: list_inbox shows emails, read_email opens one, send_email sends, " \
                      "end_session finishes."
    tools = "\n".join(json.dumps(t) for t in TOOLS)
    return (head + f"Tools (list_inbox shows emails, read_email opens one, send_email sends, end_session finishes):\n"
            f"{tools}\nCall a tool as <tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call>; "
            "results come back in <tool_response></tool_response>.")


def first_messages(scenario: dict, persona_system: str = "", native: bool = False) -> list[dict]:
    system = system_prompt(scenario, native)
    if persona_system:
        system = persona_system + "\n\n" + system
    return [{"role": "system", "content": system}, {"role": "user", "content": scenario["instruction"]}]


def tool_turn(results: list[str], native: bool = False) -> list[dict]:
    if native:
        return [{"role": "tool", "content": r} for r in results]
    return [{"role": "user", "content": "\n".join(f"<tool_response>{r}</tool_response>" for r in results)}]


@dataclass
class Rollout:
    id: str
    scenario: dict
    messages: list[dict]
    adapter: str | None = None
    rung: str = "loop"
    native: bool = False                       # the model's own tool format (see module doc)
    meta: dict = field(default_factory=dict)   # variant, persona, sample, seed: stored with the row
    client: EmailClient = None
    turns: list[dict] = field(default_factory=list)
    nudged: bool = False
    retried: bool = False                      # single: its one second chance was used
    grammar: object = None                     # agent/grammar.py ToolGrammar (agent.constrained), else None
    last_call: str | None = None
    termination: str | None = None
    tokens: dict = field(default_factory=lambda: {"prompt": 0, "completion": 0})

    def __post_init__(self):
        self.client = EmailClient(self.scenario)

    @property
    def seed(self) -> int:
        return self.meta.get("seed", 0)

    def step(self, text: str, limits, usage: tuple[int, int] | None = None) -> None:
        """Feed one completion: parse, execute, append results, decide whether to stop."""
        if usage:
            self.tokens["prompt"] += usage[0]
            self.tokens["completion"] += usage[1]
        self.messages.append({"role": "assistant", "content": text})
        if self.rung not in TOOL_RUNGS:  # plain text rungs: the reply itself is the output
            self.turns.append({"turn": 0, "completion": text, "calls": [], "parse_errors": [], "results": []})
            self.termination = "answered"
            return
        calls, errors = parse_tool_calls(text)
        results = [self.client.execute(c["name"], c["arguments"]) for c in calls]
        rejected = sum(_is_error(r) for r in results)
        results += [dumps({"error": f"could not parse tool call: {e}"}) for e in errors]
        self.turns.append({"turn": len(self.turns), "completion": text, "calls": calls,
                           "parse_errors": errors, "results": results, "rejected": rejected})
        signature = json.dumps([(c["name"], c["arguments"]) for c in calls], sort_keys=True, default=str)
        if results:
            self.messages.extend(tool_turn(results, self.native))
        if self.rung == "single":
            self._single_done(bool(calls), bool(errors or rejected))
        elif self.client.ended:
            self.termination = "end_session"
        elif len(self.client.sent) >= limits.max_sent:
            self.termination = "max_sent"
        elif calls and signature == self.last_call:
            self.termination = "repeated_call"
        elif not results:
            if self.nudged:
                self.termination = "no_tool_call"
            else:
                self._nudge()
        self.last_call = signature if calls else self.last_call
        if self.termination is None and len(self.turns) >= limits.max_turns:
            self.termination = "max_turns"

    def _nudge(self) -> None:
        self.nudged = True
        self.messages.append({"role": "user", "content": NUDGE_NATIVE if self.native else NUDGE})

    def _single_done(self, called: bool, failed: bool) -> None:
        """The single rung stops after its reply unless that reply made no call, or a call that failed
        to parse or was rejected: then it gets one more turn (the results, or a nudge, go back)."""
        if self.retried or (called and not failed):
            made = any(t["calls"] for t in self.turns)
            self.termination = "end_session" if self.client.ended else ("single_turn" if made else "no_tool_call")
            return
        self.retried = True
        if not called and not failed:
            self._nudge()

    def outputs(self) -> list[str]:
        """What the classifier scores: the reply (chat), the drafted bodies (draft, agent_draft) or the
        sent email bodies (single, loop)."""
        return [e["body"] for e in self.emails()] if self.rung != "chat" else [t["completion"] for t in self.turns]

    def emails(self) -> list[dict]:
        """The emails this rollout wrote: drafted (split from the reply) or sent."""
        if self.rung in DRAFT_RUNGS:
            return [e for t in self.turns for e in split_drafts(t["completion"])]
        return self.client.sent if self.rung in TOOL_RUNGS else []

    def coverage(self) -> dict | None:
        """Which of the scenario's emails that need a reply got one: an email written to its sender.
        None on the chat rung (it writes no email)."""
        if self.rung == "chat":
            return None
        to = {a.lower() for e in self.emails() for a in (e["to"] if isinstance(e["to"], list) else [e["to"]])}
        need = [e for e in self.scenario["emails"] if e["needs_reply"]]
        return {"needs_reply": [e["id"] for e in need], "replied": [e["id"] for e in need if e["from"].lower() in to]}

    def record(self) -> dict:
        return {"id": self.id, "scenario": self.scenario["id"], "scenario_sha256": self.scenario["sha256"],
                "rung": self.rung, "tool_format": "native" if self.native else "uniform", **self.meta, "adapter": self.adapter,
                "constrained": self.grammar is not None,
                "termination": self.termination, "turns": self.turns, "messages": self.messages,
                "sent_emails": self.client.sent, "outputs": self.outputs(), "coverage": self.coverage(),
                "parse_forms": sorted({c["form"] for t in self.turns for c in t["calls"]}),
                "counts": {"turns": len(self.turns), "tool_calls": sum(len(t["calls"]) for t in self.turns),
                           "parse_errors": sum(len(t["parse_errors"]) for t in self.turns),
                           "rejected_calls": sum(t.get("rejected", 0) for t in self.turns),
                           "sent": len(self.client.sent), "emails": len(self.outputs()) if self.rung != "chat" else 0,
                           "nudged": self.nudged, "retried": self.retried,
                           "truncated_arguments": self.client.truncated,
                           "prompt_tokens": self.tokens["prompt"], "completion_tokens": self.tokens["completion"]}}


def _is_error(result: str) -> bool:
    try:
        return isinstance(r := json.loads(result), dict) and "error" in r
    except ValueError:
        return False


def run_rollouts(engine, rollouts: list[Rollout], sampling, limits) -> list[dict]:
    """Advance all rollouts in lock-step until each stops; one batched generation per turn."""
    active = list(rollouts)
    turn = 0
    while active:
        for native in (False, True):  # tool schemas go to the template only for native-format rows
            group = [r for r in active if r.native == native]
            if not group:
                continue
            seed = derive_seed(*sorted(r.seed for r in group), turn)
            # engines that keep keys/values between calls reuse each rollout's transcript so far
            keys = {"cache_keys": [r.id for r in group]} if getattr(engine, "kv_reuse", False) else {}
            if any(r.grammar is not None for r in group):  # only engines that honour grammars get them
                keys["grammars"] = [r.grammar for r in group]
            texts = engine.generate([r.messages for r in group], sampling, seed, adapters=[r.adapter for r in group],
                                    tools=TOOL_SCHEMAS if native else None, **keys)
            usage = getattr(engine, "last_usage", None) or [None] * len(group)
            for r, t, u in zip(group, texts, usage):
                r.step(t, limits, u)
        if getattr(engine, "kv_reuse", False):
            engine.forget([r.id for r in active if r.termination is not None])
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
        msgs.extend(tool_turn([client.execute(name, args)]))

    call("list_inbox", {})
    for e in sorted(scenario["emails"], key=lambda e: (e["timestamp"], e["id"])):
        call("read_email", {"email_id": e["id"]})
        if e["needs_reply"]:
            name = client.contacts[e["from"].lower()].split()[0]
            body = f"Hi {name},\n\n{replies[e['id']]}\n\nBest,\n{scenario['agent_name']}"
            call("send_email", {"to": e["from"], "subject": "Re: " + e["subject"], "body": body})
    msgs.append({"role": "assistant", "content": '<tool_call>{"name": "end_session", "arguments": {}}</tool_call>'})
    return msgs
