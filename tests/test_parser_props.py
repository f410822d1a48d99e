"""Property tests for the tool-call parser: any text is safe to parse, and every well-formed call in
every supported form comes back with its arguments."""

import json
import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localchar.agent.parser import KNOWN_TOOLS, parse_tool_calls

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = ["<tool_call>", "</tool_call>", "```json\n", "```tool_code\n", "```", "<function=send_email>",
             "</function>", "<tool_use:email>", "to:", "body:", "{", "}", "[", "]", "(", ")", '"', "'", ",", ":",
             '"name"', '"arguments"', "send_email(", "list_inbox()", "\\", "\n", "null", "1e999", "\x00",
             "print(", "default_api.", '"""', "'''", "#", "\r", "\t", "r'", ";"]

prose = st.text(alphabet=string.ascii_letters + string.digits + " .,!?\n", max_size=40)
value = st.text(alphabet=string.ascii_letters + string.digits + " .,!?@-", min_size=1, max_size=30).map(str.strip) \
    .filter(bool)
# What email bodies hold: line breaks, quotes, brackets, backslashes, text beyond ASCII.
rich = st.text(alphabet=string.ascii_letters + string.digits + " .,!?@-:#\n\t\r\"'{}[]()\\é—日本😀", min_size=1,
               max_size=30)
args = st.dictionaries(st.sampled_from(["to", "subject", "body", "email_id", "cc", "note"]), rich, max_size=3)
call = st.tuples(st.sampled_from(KNOWN_TOOLS), args)
FORMS = {"tagged": "tagged", "fenced": "fenced", "fenced_py": "fenced", "tool_code": "tool_code",
         "tool_code_bare": "tool_code", "function": "function", "bare_json": "bare_json", "python": "python"}
UNESCAPE = re.compile(r"\\([nrt])|\\.")


def render(form: str, calls: list, raw: bool, quote: str) -> str:
    """`raw`: JSON as models write it, with real newlines, tabs and CRs inside strings and no \\u
    escapes. `quote`: Python strings as repr writes them ("") or in these quotes with the line
    breaks left real."""
    def js(obj):
        text = json.dumps(obj, ensure_ascii=not raw)
        return UNESCAPE.sub(lambda m: {"n": "\n", "r": "\r", "t": "\t"}[m[1]] if m[1] else m[0], text) if raw else text

    def lit(v):
        if not quote:
            return repr(v)
        v = v.replace("\\", "\\\\").replace(quote[0], "\\" + quote[0])
        return quote + (v.replace("\r", "\\r") if len(quote) == 3 else v) + quote  # Python reads a raw CR in """ as \n

    def py(n, a):
        return f"{n}({', '.join(f'{k}={lit(v)}' for k, v in a.items())})"

    if form == "tagged":
        return " ok ".join(f"<tool_call>{js({'name': n, 'arguments': a})}</tool_call>" for n, a in calls)
    if form == "fenced":
        return "\n".join(f"```json\n{js({'name': n, 'arguments': a})}\n```" for n, a in calls)
    if form == "fenced_py":
        return "\n".join(f"```tool_code\n{py(n, a)}\n```" for n, a in calls)
    if form == "tool_code":  # Gemma 3: one block, a print(default_api.NAME(...)) a line
        return "```tool_code\n" + "\n".join(f"print(default_api.{py(n, a)})" for n, a in calls) + "\n```"
    if form == "tool_code_bare":
        return "\n".join(f"print(default_api.{py(n, a)})" if i % 2 else f"default_api.{py(n, a)}"
                         for i, (n, a) in enumerate(calls))
    if form == "function":
        return " ".join(f"<function={n}>{js(a)}</function>" for n, a in calls)
    if form == "bare_json":
        return " then ".join(js({"name": n, "arguments": a}) for n, a in calls)
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
@given(st.sampled_from(sorted(FORMS)), st.lists(call, min_size=1, max_size=3), prose, prose,
       st.booleans(), st.sampled_from(["", '"', "'", '"""', "'''"]))
def test_every_well_formed_call_is_recovered(form, calls, before, after, raw, quote):
    text = before + " " + render(form, calls, raw, quote) + " " + after
    got, errors = parse_tool_calls(text)
    assert not errors
    assert [(c["name"], c["arguments"]) for c in got] == calls  # values exact: line breaks, quotes, é, 日本
    assert {c["form"] for c in got} == {FORMS[form]}


@SETTINGS
@given(st.lists(st.tuples(value, value, value), min_size=1, max_size=2), prose)
def test_tool_use_email_blocks_are_recovered(emails, before):
    blocks = [f"<tool_use:email>\nto: {to}\nsubject: {subject}\nbody: {body}\n</tool_use>" for to, subject, body in emails]
    got, errors = parse_tool_calls(before + "\n" + "\n".join(blocks))
    assert not errors
    assert [c["arguments"] for c in got] == [{"to": t, "subject": s, "body": b} for t, s, b in emails]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(sorted(FORMS)), st.lists(call, min_size=1, max_size=2)), min_size=2, max_size=4),
       st.sampled_from(["\n", "\n\n", " then ", ". Next: "]), st.booleans(), st.sampled_from(["", '"', "'", '"""', "'''"]))
def test_mixed_forms_come_back_in_text_order(parts, sep, raw, quote):
    """Several forms in one message: every call, once, in the order they are written. Unfenced
    Python-style calls count only when no delimited form is there (beside one, they are prose)."""
    text = sep.join(render(form, calls, raw, quote) for form, calls in parts)
    got, errors = parse_tool_calls(text)
    loose = {"python", "tool_code_bare"}  # the unfenced forms
    delimited = any(form not in loose for form, _ in parts)
    assert not errors
    assert [(c["name"], c["arguments"], c["form"]) for c in got] == [
        (n, a, FORMS[form]) for form, calls in parts if not (delimited and form in loose) for n, a in calls]
