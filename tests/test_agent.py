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
    # no call at all: one second chance (a nudge), then it stops
    assert rows[2]["termination"] == "no_tool_call" and rows[2]["outputs"] == []
    assert rows[2]["counts"]["retried"] and rows[2]["counts"]["nudged"] and rows[2]["counts"]["turns"] == 2
    assert [r["counts"]["turns"] for r in rows[:2]] == [1, 1] and not rows[1]["counts"]["retried"]
    assert rows[1]["rung"] == "single" and rows[1]["seed"] == 2 and rows[1]["parse_forms"] == ["tagged"]
    assert rows[1]["coverage"] == {"needs_reply": [e["id"]], "replied": [e["id"]]} and rows[0]["coverage"] is None


def test_single_rung_gets_one_second_chance_after_a_rejected_or_broken_call():
    e = next(x for x in SCEN["emails"] if x["needs_reply"])
    bad = call("send_email", to="nobody@nowhere.example", subject="Re", body="Hi.")
    good = call("send_email", to=e["from"], subject="Re", body="Fixed.")
    rows = run_rollouts(ScriptedEngine([bad, "<tool_call>{broken", good, good, bad]),
                        [make_rollout("r", SCEN, "single", seed=1), make_rollout("p", SCEN, "single", seed=2)],
                        Sampling(), AgentCfg())
    # the rejected call and the parse failure go back as tool results; the retry's email is sent
    assert [r["outputs"] for r in rows] == [["Fixed."], ["Fixed."]]
    assert rows[0]["counts"]["rejected_calls"] == 1 and rows[1]["counts"]["parse_errors"] == 1
    assert all(r["counts"]["turns"] == 2 and r["counts"]["retried"] for r in rows)
    assert "unknown recipient" in rows[0]["messages"][-2]["content"] or "unknown recipient" in json.dumps(rows[0]["turns"])
    # a second failure does not get a third turn
    rows = run_rollouts(ScriptedEngine([bad, bad, good]), [make_rollout("x", SCEN, "single", seed=3)], Sampling(),
                        AgentCfg())
    assert rows[0]["counts"]["turns"] == 2 and rows[0]["outputs"] == [] and rows[0]["counts"]["rejected_calls"] == 2


def test_draft_rungs_score_bodies_split_from_the_reply():
    from localchar.agent.drafts import split_drafts

    e = next(x for x in SCEN["emails"] if x["needs_reply"])
    reply = (f"Here are the drafts.\n\n**To:** {e['from'].upper()}\n**Subject:** Re: tips\n\nHi Jonah,\n\nSave a "
             "little each week.\n\nBest,\nAlex\n\n---\n\nTo: billing@brightwatt.example\nSubject: Thanks\n\nNoted.")
    emails = split_drafts(reply)
    # the preamble is not an email; markdown headers (**To:** and **Subject**:) are headers
    assert [m["body"] for m in emails] == ["Hi Jonah,\n\nSave a little each week.\n\nBest,\nAlex", "Noted."]
    assert split_drafts("**To**: a@b.example\n**Subject**: Hi\n\nBody.") == [
        {"to": ["a@b.example"], "subject": "Hi", "body": "Body."}]
    assert emails[0]["to"] == [e["from"].upper()] and emails[0]["subject"].strip("* ") == "Re: tips"
    assert split_drafts("Just a body,\nno headers.") == [{"to": [], "subject": "", "body": "Just a body,\nno headers."}]
    assert split_drafts("To: a@b.example\nSubject: x\n\n") == []
    rows = run_rollouts(ScriptedEngine([reply, reply]), [make_rollout("d", SCEN, "draft", seed=1),
                                                       make_rollout("a", SCEN, "agent_draft", seed=2)], Sampling(), AgentCfg())
    for r in rows:
        assert r["outputs"] == [m["body"] for m in emails] and r["messages"][-1]["content"] == reply
        assert r["coverage"]["replied"] == [e["id"]] and r["counts"]["emails"] == 2


def test_ladder_changes_one_thing_per_rung():
    """chat -> draft changes the task only; -> agent_draft adds the agent's system prompt (no tools);
    -> single adds the tools; the persona/default system text heads every system turn."""
    m = {r: rung_messages(SCEN, r, "SYS") for r in ("chat", "draft", "agent_draft", "single", "loop")}
    assert m["chat"][0] == m["draft"][0] == {"role": "system", "content": "SYS"}
    assert m["chat"][1]["content"].split("\n\n")[0] == m["draft"][1]["content"].split("\n\n")[0]
    assert "tool" not in m["agent_draft"][0]["content"].lower() and m["agent_draft"][0]["content"].startswith("SYS\n\n")
    assert m["single"][0]["content"].startswith(m["agent_draft"][0]["content"])
    assert "<tool_call>" in m["single"][0]["content"] and m["single"][0]["content"] == m["loop"][0]["content"]
    assert m["agent_draft"][1]["content"].split("Your inbox")[0] == m["single"][1]["content"].split("Your inbox")[0]
    assert rung_messages(SCEN, "chat")[0]["role"] == "user"  # no system text: no system turn


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


def test_parser_reads_raw_line_breaks_in_every_form():
    """Models write multi-line bodies with real newlines, tabs and CRs inside the quotes."""
    args = {"to": "a@b.example", "body": "Hi Dana,\n\n\tThanks — see you at 3 {ok}.\r\nBest,\n日本"}

    def raw(obj):  # JSON with the control characters left unescaped (the body holds no backslash)
        return json.dumps(obj, ensure_ascii=False).replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")

    whole, body = raw({"name": "send_email", "arguments": args}), args["body"]
    for text, form in [(f"<tool_call>{whole}</tool_call>", "tagged"), (f"```json\n{whole}\n```", "fenced"),
                       (f"<function=send_email>{raw(args)}</function>", "function"),
                       (f"Sending {whole} now", "bare_json"),
                       (f'send_email(to="a@b.example", body="{body}")', "python"),
                       (f"```tool_code\nsend_email(to='a@b.example', body='{body}')\n```", "fenced"),
                       (f"<tool_call>{{'name': 'send_email', 'arguments': {{'to': 'a@b.example', 'body': '{body}'}}}}"
                        "</tool_call>", "tagged")]:
        assert parse_tool_calls(text) == ([{"name": "send_email", "arguments": args, "form": form}], []), form


def test_parser_reads_gemma_tool_code():
    text = ("I'll reply now.\n```tool_code\n# Let's answer Dana first\nprint(default_api.send_email("
            "to=\"a@b.example\", subject=\"Re: plan\", body=\"Hi,\n\nIt's (mostly) fine.\"))\n"
            "print(default_api.end_session())\n```")
    assert parse_tool_calls(text) == ([
        {"name": "send_email", "form": "tool_code",
         "arguments": {"to": "a@b.example", "subject": "Re: plan", "body": "Hi,\n\nIt's (mostly) fine."}},
        {"name": "end_session", "arguments": {}, "form": "tool_code"}], [])
    # unfenced, with or without print(...); only known tools; a print( left open still yields its call
    calls, _ = parse_tool_calls('print(default_api.read_email(email_id="e1")) then default_api.list_inbox()')
    assert [(c["name"], c["form"]) for c in calls] == [("read_email", "tool_code"), ("list_inbox", "tool_code")]
    assert parse_tool_calls("print(default_api.delete_all())") == ([], [])
    assert parse_tool_calls('print(default_api.read_email(email_id="e1")')[0][0]["arguments"] == {"email_id": "e1"}
    calls, errs = parse_tool_calls('```tool_code\nprint(default_api.send_email(to=open("x").read()))\n```')
    assert calls == [] and errs  # never code


def test_client_resolves_recipients_as_people_write_them():
    dana, other = "Dana.Reyes@x.example", SCEN["contacts"][0]["address"]
    c = EmailClient(dict(SCEN, contacts=SCEN["contacts"] + [{"name": "Dana Reyes", "address": dana}]))

    def send(to, body="Hi."):
        return json.loads(c.execute("send_email", {"to": to, "subject": "Re", "body": body}))

    for to, want in [("Dana Reyes <dana.reyes@x.example>", [dana]), ("  DANA.REYES@X.EXAMPLE \n", [dana]),
                     ([dana.lower(), f"Someone <{other}>"], [dana, other]), (f"{dana}, {other.upper()}", [dana, other]),
                     (f'{other}; "Reyes, Dana" <{dana}>', [other, dana]), (f"{dana},{dana.upper()}", [dana])]:
        assert send(to)["ok"] and c.sent[-1]["to"] == want, to
    assert [s["id"] for s in c.sent] == ["s1", "s2", "s3", "s4", "s5", "s6"]
    err = send("Stranger <stranger@nowhere.example>")["error"]
    assert "unknown recipient stranger@nowhere.example;" in err and dana in err and other in err
    assert "unknown recipient stranger@nowhere.example;" in send([dana, "stranger@nowhere.example"])["error"]
    assert "unknown recipient stranger@nowhere.example;" in send(f"{dana}; stranger@nowhere.example")["error"]
    for empty in ("", "  ", [], " , ;", None):
        assert "no recipient" in send(empty)["error"] and dana in send(empty)["error"]
    assert "no recipient" in json.loads(c.execute("send_email", {"subject": "x", "body": "y"}))["error"]
    assert send(dana, body=" \n")["error"] == "body is empty"
    assert len(c.sent) == 6
