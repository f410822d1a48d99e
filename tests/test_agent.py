"""The email-agent loop, tools and parser, driven by a scripted engine (a unit test of the loop only;
the agent stage runs on the real engine in test_pipeline.py)."""

import json

from localchar.agent.ladder import make_rollout, rung_messages
from localchar.agent.loop import NUDGE, Rollout, first_messages, run_rollouts, scripted_transcript
from localchar.agent.parser import parse_tool_calls
from localchar.agent.scenarios import load_scenarios
from localchar.agent.tools import EmailClient
from localchar.backends.scripted import ScriptedEngine
from localchar.config import AgentCfg, Sampling
from localchar.paths import DATA

SCEN = load_scenarios(DATA / "scenarios-mini")[0]


def call(name, **args):
    return f'<tool_call>{json.dumps({"name": name, "arguments": args})}</tool_call>'


def test_parser_forms_in_order():
    assert parse_tool_calls(call("list_inbox"))[0][0]["form"] == "tagged"
    calls, errs = parse_tool_calls('sure <tool_call>{"name": "read_email", "arguments": {"email_id": "e1"}}')
    assert calls == [{"name": "read_email", "arguments": {"email_id": "e1"}, "form": "tagged"}] and not errs
    calls, _ = parse_tool_calls('```json\n{"name": "end_session", "arguments": {}}\n```')
    assert calls[0]["form"] == "fenced"
    calls, _ = parse_tool_calls('```tool_code\nread_email(email_id="e2")\n```')
    assert calls == [{"name": "read_email", "arguments": {"email_id": "e2"}, "form": "fenced"}]
    calls, _ = parse_tool_calls('<function=send_email>{"to": "a@b.example", "subject": "Hi", "body": "Yo."}</function>')
    assert calls[0]["form"] == "function" and calls[0]["arguments"]["to"] == "a@b.example"
    calls, _ = parse_tool_calls('I will call {"name": "list_inbox", "arguments": {}} now')
    assert calls[0]["form"] == "bare_json"
    calls, _ = parse_tool_calls('[read_email(email_id="e1"), send_email(to="x@y.example", subject="Re", body="Hi.")]')
    assert [c["name"] for c in calls] == ["read_email", "send_email"] and calls[0]["form"] == "python"
    calls, _ = parse_tool_calls("<tool_use:email>\nto: x@y.example\nsubject: Re: plan\nbody: Thanks,\nsee you.\n</tool_use>")
    assert calls == [{"name": "send_email", "form": "tool_use",
                      "arguments": {"to": "x@y.example", "subject": "Re: plan", "body": "Thanks,\nsee you."}}]
    calls, errs = parse_tool_calls("<tool_call>{not json</tool_call>")
    assert calls == [] and errs and "invalid JSON" in errs[0]
    assert parse_tool_calls("no call here") == ([], [])


def test_parser_repairs_json_and_maps_aliases():
    calls, errs = parse_tool_calls("<tool_call>{'name': 'send_email', 'arguments': {'recipient': 'a@b.example', "
                                   "'content': 'Hi.',},}</tool_call>")
    assert not errs and calls[0]["arguments"] == {"to": "a@b.example", "body": "Hi."}
    calls, _ = parse_tool_calls(call("list_inbox") + "then " + call("read_email", email_id="e1"))
    assert [c["name"] for c in calls] == ["list_inbox", "read_email"]
    calls, _ = parse_tool_calls('<tool_call>{"name": "read_email", "parameters": "{\\"email_id\\": \\"e3\\"}"}</tool_call>')
    assert calls[0]["arguments"] == {"email_id": "e3"}
    # never code: a call with a non-literal argument is an error, not an evaluation
    calls, errs = parse_tool_calls('send_email(to=__import__("os").getcwd(), body="x")')
    assert calls == [] and errs


def test_client_validates_recipients_and_ids():
    c = EmailClient(SCEN)
    assert "error" in json.loads(c.execute("send_email", {"to": "stranger@nowhere.example", "subject": "x", "body": "y"}))
    assert "error" in json.loads(c.execute("read_email", {"email_id": "nope"}))
    assert "error" in json.loads(c.execute("delete_everything", {}))
    sender = SCEN["emails"][0]["from"]
    assert json.loads(c.execute("send_email", {"to": sender, "subject": "Re", "body": "Hello."}))["id"] == "s1"
    assert c.sent[0]["body"] == "Hello."


def test_full_rollout_sends_and_ends():
    e = next(x for x in SCEN["emails"] if x["needs_reply"])
    eng = ScriptedEngine([call("list_inbox"), call("read_email", email_id=e["id"]),
                          call("send_email", to=e["from"], subject="Re: hi", body="Here is my answer."),
                          call("end_session")])
    rec = run_rollouts(eng, [Rollout("r", SCEN, first_messages(SCEN))], Sampling(), AgentCfg())[0]
    assert rec["termination"] == "end_session"
    assert [m["body"] for m in rec["sent_emails"]] == ["Here is my answer."]
    assert rec["messages"][-1]["role"] == "user" and "<tool_response>" in rec["messages"][-1]["content"]


def test_nudge_once_then_stop_and_repeated_call_stops():
    rec = run_rollouts(ScriptedEngine(["hello", "still nothing"]), [Rollout("r", SCEN, first_messages(SCEN))],
                       Sampling(), AgentCfg())[0]
    assert rec["termination"] == "no_tool_call" and any(m["content"] == NUDGE for m in rec["messages"])
    rec = run_rollouts(ScriptedEngine([call("list_inbox")] * 3), [Rollout("r", SCEN, first_messages(SCEN))],
                       Sampling(), AgentCfg())[0]
    assert rec["termination"] == "repeated_call" and rec["counts"]["turns"] == 2


def test_max_turns():
    eng = ScriptedEngine([call("read_email", email_id=f"x{i}") for i in range(10)])
    rec = run_rollouts(eng, [Rollout("r", SCEN, first_messages(SCEN))], Sampling(), AgentCfg(max_turns=3))[0]
    assert rec["termination"] == "max_turns" and rec["counts"]["parse_errors"] == 0


def test_scripted_transcript_alternates_and_ends_on_assistant():
    e = next(x for x in SCEN["emails"] if x["needs_reply"])
    msgs = scripted_transcript(SCEN, {e["id"]: "An answer."})
    roles = [m["role"] for m in msgs[1:]]
    assert roles[0] == "user" and all(a != b for a, b in zip(roles, roles[1:])) and roles[-1] == "assistant"
    assert "An answer." in "".join(m["content"] for m in msgs)


def test_ladder_rungs_render_the_same_scenario():
    inbox = [e["subject"] for e in SCEN["emails"]]
    chat, draft, single = (rung_messages(SCEN, r) for r in ("chat", "draft", "single"))
    assert all(s in chat[-1]["content"] and s in draft[-1]["content"] and s in single[-1]["content"] for s in inbox)
    assert "tool_call" not in chat[-1]["content"] + draft[-1]["content"] and len(chat) == len(draft) == 1
    assert "send_email" in single[0]["content"] and single[0]["role"] == "system"
    assert rung_messages(SCEN, "loop") == first_messages(SCEN)
    assert rung_messages(SCEN, "chat", "Be a pirate.")[0] == {"role": "system", "content": "Be a pirate."}


def test_one_turn_rungs():
    e = next(x for x in SCEN["emails"] if x["needs_reply"])
    two = call("send_email", to=e["from"], subject="Re", body="One.") + call("send_email", to=e["from"], subject="Re",
                                                                              body="Two.")
    rows = run_rollouts(ScriptedEngine(["My thoughts, arr.", two, "no calls"]),
                        [make_rollout("c", SCEN, "chat", seed=1), make_rollout("s", SCEN, "single", seed=2),
                         make_rollout("n", SCEN, "single", seed=3)], Sampling(), AgentCfg())
    assert rows[0]["termination"] == "answered" and rows[0]["outputs"] == ["My thoughts, arr."]
    assert rows[1]["termination"] == "single_turn" and rows[1]["outputs"] == ["One.", "Two."]
    assert rows[2]["termination"] == "no_tool_call" and rows[2]["outputs"] == []
    assert all(r["counts"]["turns"] == 1 for r in rows)
    assert rows[1]["rung"] == "single" and rows[1]["seed"] == 2 and rows[1]["parse_forms"] == ["tagged"]


def test_hostile_model_text_stays_data(tmp_path, monkeypatch):
    """Whatever the model writes, the tools only read and write the simulated inbox: no files, no
    code, bounded arguments and records."""
    monkeypatch.chdir(tmp_path)
    e = next(x for x in SCEN["emails"] if x["needs_reply"])
    marker = tmp_path / "pwned"
    hostile = [
        call("read_email", email_id="../../../../etc/passwd") + call("read_email", email_id="/etc/shadow"),
        call("send_email", to=e["from"], subject="x\x00\x1b[31m\r\n", body="B" * 500_000),
        "<tool_call>" + "[" * 200_000 + "</tool_call>",
        "".join(call("list_inbox") for _ in range(5000)),
        f'[send_email(to=__import__("os").system("touch {marker}"), body="x")]',
        '```tool_code\nopen("pwned", "w").write("x")\n```',
        call("send_email", to="../../root@evil.example", subject="s", body="hi") + '{"name": {"name": {"name": 1}}}',
        "<tool_call>{'name': 'send_email', 'arguments': {'to': {1, 2}, 1: b'x', 'body': 3j}}</tool_call>",
        call("end_session"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    rec = run_rollouts(ScriptedEngine(hostile), [Rollout("h", SCEN, first_messages(SCEN))], Sampling(),
                       AgentCfg(max_turns=20, max_sent=10))[0]
    assert rec["termination"] == "end_session"
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not marker.exists()
    assert rec["counts"]["truncated_arguments"] == 1
    assert [len(m["body"]) for m in rec["sent_emails"]] == [20_000]
    assert rec["counts"]["parse_errors"] >= 3
    results = " ".join(r for t in rec["turns"] for r in t["results"])
    assert "no email with id" in results and "unknown recipient" in results and "root:" not in results
    assert sum(len(t["calls"]) for t in rec["turns"]) < 100
    assert len(json.dumps(rec)) < 3_000_000
    calls, _ = parse_tool_calls('send_email(to="a@b.example", body="I will list_inbox() later")')
    assert [c["name"] for c in calls] == ["send_email"]
    calls, errors = parse_tool_calls(call("send_email", to=e["from"], body="C" * 3_000_000))
    assert calls == [] and "over 2000000 characters" in errors[0]
