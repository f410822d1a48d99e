"""Property tests for the tool-call parser: any text is safe to parse, and every well-formed call in
every supported form comes back with its arguments."""

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localchar.agent.parser import KNOWN_TOOLS, parse_tool_calls

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = ["<tool_call>", "</tool_call>", "```json\n", "```tool_code\n", "```", "<function=send_email>",
             "</function>", "<tool_use:email>", "to:", "body:", "{", "}", "[", "]", "(", ")", '"', "'", ",", ":",
             '"name"', '"arguments"', "send_email(", "list_inbox()", "\\", "\n", "null", "1e999", "\x00"]

prose = st.text(alphabet=string.ascii_letters + string.digits + " .,!?\n", max_size=40)
value = st.text(alphabet=string.ascii_letters + string.digits + " .,!?@-", min_size=1, max_size=30).map(str.strip) \
    .filter(bool)
args = st.dictionaries(st.sampled_from(["to", "subject", "body", "email_id", "cc", "note"]), value, max_size=3)
call = st.tuples(st.sampled_from(KNOWN_TOOLS), args)


def render(form: str, calls: list) -> str:
    def js(n, a):
        return json.dumps({"name": n, "arguments": a})

    def py(n, a):
        return f"{n}({', '.join(f'{k}={v!r}' for k, v in a.items())})"

    if form == "tagged":
        return " ok ".join(f"<tool_call>{js(n, a)}</tool_call>" for n, a in calls)
    if form == "fenced":
        return "\n".join(f"```json\n{js(n, a)}\n```" for n, a in calls)
    if form == "fenced_py":
        return "\n".join(f"```tool_code\n{py(n, a)}\n```" for n, a in calls)
    if form == "function":
        return " ".join(f"<function={n}>{json.dumps(a)}</function>" for n, a in calls)
    if form == "bare_json":
        return " then ".join(js(n, a) for n, a in calls)
    if form == "python":
        return "[" + ", ".join(py(n, a) for n, a in calls) + "]"
    raise ValueError(form)


@SETTINGS
@given(st.text(max_size=400))
def test_random_text_never_raises(text):
    calls, errors = parse_tool_calls(text)
    assert isinstance(calls, list) and isinstance(errors, list)
    assert all(isinstance(c["arguments"], dict) and isinstance(c["name"], str) for c in calls)


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), prose), max_size=40).map("".join))
def test_adversarial_fragments_never_raise(text):
    calls, errors = parse_tool_calls(text)
    assert isinstance(calls, list) and isinstance(errors, list)


@SETTINGS
@given(st.sampled_from(["tagged", "fenced", "fenced_py", "function", "bare_json", "python"]),
       st.lists(call, min_size=1, max_size=3), prose, prose)
def test_every_well_formed_call_is_recovered(form, calls, before, after):
    text = before + " " + render(form, calls) + " " + after
    got, errors = parse_tool_calls(text)
    assert not errors
    assert [(c["name"], c["arguments"]) for c in got] == calls
    assert {c["form"] for c in got} == {"fenced" if form == "fenced_py" else form}


@SETTINGS
@given(st.lists(st.tuples(value, value, value), min_size=1, max_size=2), prose)
def test_tool_use_email_blocks_are_recovered(emails, before):
    blocks = [f"<tool_use:email>\nto: {to}\nsubject: {subject}\nbody: {body}\n</tool_use>" for to, subject, body in emails]
    got, errors = parse_tool_calls(before + "\n" + "\n".join(blocks))
    assert not errors
    assert [c["arguments"] for c in got] == [{"to": t, "subject": s, "body": b} for t, s, b in emails]
