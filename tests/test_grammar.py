"""Grammar-constrained tool calls (agent.constrained): the automaton, and both engines holding a
random tiny model to it."""

import json
import random

import numpy as np

from localchar.agent.grammar import Guide, ToolGrammar, Vocab, grammar_for
from localchar.agent.parser import parse_tool_calls
from localchar.agent.scenarios import load_scenarios
from localchar.agent.tools import EmailClient
from localchar.config import Sampling
from localchar.paths import DATA

SCEN = load_scenarios(DATA / "scenarios-mini")[0]


def feed(g: ToolGrammar, text: str):
    state, calls = g.start, 0
    for ch in text:
        r = g.step(state, ch)
        if r is None:
            return None
        state, done = r
        calls += done
    return state, calls


def call(name, **args):
    return "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"


def test_grammar_takes_the_protocol_and_nothing_else():
    g = grammar_for(SCEN)
    e = next(x for x in SCEN["emails"] if x["needs_reply"])
    good = (call("list_inbox") + call("read_email", email_id="e2") +
            call("send_email", to=e["from"], subject='Re: "plan"', body="Hi,\n\ntabs\tand \\ backslashes.\n\nAlex")
            + call("end_session"))
    state, calls = feed(g, good)
    assert state == g.start and calls == 4
    raw = '<tool_call>{"name": "send_email", "arguments": {"to": "%s", "subject": "x", "body": "line\nline"}}</tool_call>'
    assert feed(g, raw % e["from"])[1] == 1  # a raw newline, as models write it
    for bad in [call("send_email", to="nobody@x.example", subject="x", body="y"),  # not a contact
                call("read_email", email_id="e9"), call("delete_all"),
                '<tool_call>{"name": "send_email", "arguments": {"to": "%s", "subject": "\\q' % e["from"],  # bad escape
                "Sure! " + call("end_session"), '<tool_call>{"name": "list_inbox", "arguments": {"x": 1}}']:
        assert feed(g, bad) is None, bad
    assert feed(g, good[:37]) is not None  # every prefix of a call is still possible


def toy_vocab(stop=999):
    chars = sorted(set(''.join(call("send_email", to=c["address"], subject="s", body="b") for c in SCEN["contacts"]) +
                       call("read_email", email_id="e1") + call("list_inbox") + call("end_session") + " abcxyz\n\\\""))
    pieces = chars + ['<tool_call>', '</tool_call>', '{"name": "', '", "', '": "', '"}}', 'send_email', 'Hi', ' there',
                      '"}', '\\n', 'ok"', "@", "\x00"]
    texts = pieces + [None] * (stop - len(pieces)) + [""]
    return Vocab(texts, {stop}, stop + 1)


def test_any_walk_through_the_masks_ends_in_calls_the_client_executes():
    """Tokens drawn at random among the allowed ones (multi-character pieces included): whenever the
    walk stops at an end-of-turn token, the text parses into calls and every call executes."""
    vocab, g = toy_vocab(), grammar_for(SCEN)
    stopped = 0
    for seed in range(300):
        rng, guide, out = random.Random(seed), Guide(g, vocab), []
        for _ in range(300):
            ok = np.flatnonzero(guide.allowed())
            assert len(ok), "a dead end"
            t = int(rng.choice(ok))
            if t in vocab.stop:
                break
            out.append(vocab.texts[t])
            guide.advance(t)
        else:
            continue
        stopped += 1
        text = "".join(out)
        calls, errors = parse_tool_calls(text)
        assert calls and not errors, text
        client = EmailClient(SCEN)
        assert not any("error" in json.loads(client.execute(c["name"], c["arguments"])) for c in calls), text
    assert stopped > 50


def _check_prefix(g, texts):
    for t in texts:
        assert feed(g, t) is not None, t


def test_mlx_engine_holds_a_random_model_to_the_grammar(tiny_model):
    from localchar.agent.ladder import rung_messages
    from localchar.backends.mlx import MlxEngine

    g = grammar_for(SCEN)
    eng = MlxEngine(tiny_model)
    chats = [rung_messages(SCEN, "single")] * 3 + [[{"role": "user", "content": "Hi."}]]
    out = eng.generate(chats, Sampling(temperature=1.0, max_tokens=60), 0, grammars=[g, g, g, None])
    _check_prefix(g, out[:3])
    assert all(o.startswith("<tool_call>") for o in out[:3]) and not out[3].startswith("<tool_call>")
