"""The tool-call parser on hostile text: bounded time on any text up to the reply limit (~200,000
characters), never an exception, JSON-safe results, and every form of a message read once, in text
order."""

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localchar.agent.parser import MAX_ATTEMPTS, MAX_CALLS, MAX_DEPTH, parse_tool_calls

LIMIT_S = 2.0     # per parse; the parser needs well under 0.3 s for any of these on one core
REPLY = 200_000   # the longest text a reply can be
FORMS = {"tagged", "fenced", "tool_code", "function", "bare_json", "python", "tool_use"}
SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])

OPENERS = ["<tool_call>", "```json\n", "```tool_code\n", "```json", "<function=send_email>", "<tool_use:email>",
           "print(", "send_email(", "default_api.", "print(default_api.send_email(", '{"name":', "{", "[", "(",
           "to:", "body:"]
FRAGMENTS = OPENERS + ["</tool_call>", "</function>", "</tool_use>", "```", "}", "]", ")", '"', "'", '"""', "'''",
                       "\\", "\\\\", '\\"', ",", ":", " ", "\n", "\t", "\r", "\x00", "#", "r'", '"arguments"', "null",
                       "1e999", "NaN", "-Infinity", "9" * 50, "0x" + "f" * 40, "\ud800", "\udfff", "é", "😀",
                       '{"name": "list_inbox", "arguments": {}}', 'read_email(email_id="e1")', "list_inbox()",
                       '<tool_call>{"name": "end_session", "arguments": {}}</tool_call>']


def check(text: str) -> tuple[list, list]:
    """Parse `text` and assert what must hold for any text: no exception, in time, the documented
    shape, at most MAX_CALLS calls and a bounded list of errors, all of it JSON (no NaN, no lone
    surrogates, no integers Python cannot print)."""
    t0 = time.perf_counter()
    out = parse_tool_calls(text)
    took = time.perf_counter() - t0
    assert took < LIMIT_S, f"{took:.2f} s for {len(text)} characters: {text[:80]!r}"
    assert isinstance(out, tuple) and len(out) == 2
    calls, errors = out
    assert isinstance(calls, list) and isinstance(errors, list)
    assert len(calls) <= MAX_CALLS and len(errors) <= MAX_ATTEMPTS + 2
    for c in calls:
        assert set(c) == {"name", "arguments", "form"} and c["form"] in FORMS
        assert isinstance(c["name"], str) and c["name"] and isinstance(c["arguments"], dict)
    assert all(isinstance(e, str) and e for e in errors)
    json.dumps(out, allow_nan=False, ensure_ascii=False).encode("utf-8")  # raises on NaN / surrogates
    return calls, errors


def count(lo, hi):
    """A count from lo to hi, the largest one often: the sizes that used to take minutes."""
    return st.one_of(st.just(hi), st.integers(lo, hi))


def repeat(parts, total=REPLY):
    """A strategy for texts built of (piece, count) runs, cut to `total` characters: big inputs cheaply."""
    return st.lists(st.tuples(parts, count(1, 5_000)), min_size=1, max_size=12).map(
        lambda runs: "".join(p * k for p, k in runs)[:total])


# -- property tests with adversarial generators ------------------------------------------------

@SETTINGS
@given(st.sampled_from(OPENERS), st.sampled_from([" ", "\n", "\t", " \n", "\r\n", "\u00a0"]),
       count(1_000, 100_000), st.sampled_from(["", "x", "y", "}", "{", '"', "</tool_call>", "```", "\n```"]),
       st.booleans())
def test_long_whitespace_after_any_opener(opener, space, n, tail, twice):
    text = opener + "x" + space * n + tail
    check(text + text if twice else text)


@SETTINGS
@given(st.sampled_from(["{", "[", "(", '{"a":', '{"name":', '[{"name":', '{"name": "x", "arguments":', "send_email(",
                        "print(", "default_api.send_email(to=", "<tool_call>{", "<tool_call>[", "```json\n[",
                        "<function=send_email>{", "'", '"', "{'a':"]),
       count(1, 50_000), st.sampled_from(["", "}", "]", ")", '"', "1", '"x"']), st.one_of(st.just(0), count(0, 50_000)),
       st.sampled_from(["", "</tool_call>", "```", "</function>", '{"name": "list_inbox", "arguments": {}}']))
def test_deep_nesting_of_every_bracket(open_, n, close, m, tail):
    text = (open_ * n + close * m)[:REPLY - 60] + tail
    calls, _ = check(text)
    if tail.startswith('{"name"') and open_ in ("{", "[", "(") and not m:
        # a call after a pile of unclosed brackets is still found (inside them, but closed itself)
        assert [(c["name"], c["form"]) for c in calls] == [("list_inbox", "bare_json")]


@SETTINGS
@given(st.sampled_from(["<tool_call>{\"name\": \"send_email\", \"arguments\": {\"body\": ", "```json\n{\"a\": ",
                        "<function=send_email>{\"body\": ", '{"name": "send_email", "arguments": {"body": ',
                        "send_email(body=", "```tool_code\nsend_email(body=", "print(default_api.send_email(body=",
                        "<tool_call>{'name': 'send_email', 'arguments': {'body': "]),
       st.sampled_from(['"', "'", '"""', "'''", 'r"', "b'"]),
       st.sampled_from(["x", "\\", '\\"', "\\'", "\\\\", "\n", "{", "(", "é", "\x00"]), count(1, 90_000),
       st.sampled_from(["", "</tool_call>", "```", ")", "}"]))
def test_unclosed_strings(head, quote, piece, n, tail):
    check(head + quote + piece * n + tail)


def _number():
    digits = count(300, 20_000).map(lambda k: "9" * k)
    return st.one_of(digits, digits.map(lambda d: "-" + d), digits.map(lambda d: "1e" + d), digits.map(lambda d: "0." + d),
                     digits.map(lambda d: d + ".5e-" + d), st.sampled_from(["1e999", "-1e999", "NaN", "Infinity",
                                                                            "-Infinity", "1e-999", "-0"]),
                     digits.map(lambda d: "0x" + d.replace("9", "f")))


@SETTINGS
@given(st.sampled_from(['<tool_call>{"name": "read_email", "arguments": {"email_id": #}}</tool_call>',
                        '```json\n{"name": "read_email", "arguments": {"email_id": #}}\n```',
                        '<function=read_email>{"email_id": #}</function>',
                        'ok {"name": "read_email", "arguments": {"email_id": #}} ok',
                        '<tool_call>{"name": "read_email", "parameters": "{\\"email_id\\": #}"}</tool_call>',
                        "read_email(email_id=#)", "```tool_code\nprint(default_api.read_email(email_id=#))\n```",
                        "<tool_call>{'name': 'read_email', 'arguments': {'email_id': #,}}</tool_call>",
                        '<tool_call>[{"name": "read_email", "arguments": {"email_id": [#, {"x": #}]}}]']),
       _number())
def test_huge_and_odd_numbers(template, number):
    calls, errors = check(template.replace("#", number))
    if not (template.startswith("ok") and number.startswith("0x")):  # bare text that is no JSON is no call
        assert calls or errors  # a call of every form is there: it is read or it is an error, never silence
    for c in calls:
        v = c["arguments"].get("email_id")
        assert v is None or isinstance(v, (str, int, float, list)) and not (isinstance(v, float) and not math.isfinite(v))


@SETTINGS
@given(repeat(st.sampled_from(FRAGMENTS)))
def test_big_mixes_of_tag_fragments(text):
    check(text)


@SETTINGS
@given(st.lists(st.one_of(st.text(st.characters(exclude_categories=()), max_size=60),
                          st.text(st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp"]), max_size=20),
                          st.sampled_from(FRAGMENTS)), max_size=60).map("".join),
       count(1, 2_000))
def test_random_unicode_with_surrogates_and_controls(text, k):
    check(text)
    check(((text or "\ud800") * k)[:REPLY])


# -- the known failures, at full size ------------------------------------------------------------

SLOW = {  # text, expected (calls, errors) or a prefix of the only error
    "tag, 100k spaces": ("<tool_call>x" + " " * 100_000, ([], "tagged: invalid JSON")),
    "tag, 100k spaces, more text": ("<tool_call>x" + " " * 100_000 + "y", ([], "tagged: invalid JSON")),
    "function, 100k spaces": ("<function=send_email>" + " " * 100_000,
                              ([{"name": "send_email", "arguments": {}, "form": "function"}], [])),
    "function, 100k spaces, more text": ("<function=send_email>x" + " " * 100_000 + "y", ([], "function: invalid JSON")),
    "tool_use, 100k spaces, more text": ("<tool_use:email>x" + " " * 100_000 + "y", ([], "tool_use: <tool_use:email> without")),
    "print(, 100k spaces": ("print(" + " " * 100_000 + "x", ([], [])),
    "900 unclosed objects": ('{"a":' * 900, ([], [])),
    "900 unclosed objects, long list": ('{"a":' * 900 + "[0" + ",0" * 98_000, ([], [])),
    "900 unclosed named objects": ('{"name":' * 900, ([], [])),
    "40,000 unclosed objects": ('{"a":' * 40_000, ([], [])),
    "50,000 [": ("[" * 50_000, ([], [])),
    "100,000 {": ("{" * 100_000, ([], [])),
    "100,000 ( after a tool name": ("send_email(" + "(" * 100_000, ([], [])),
    "18,000 unclosed calls": ("send_email(" * 18_000, ([], [])),
    "a tag of 200,000 [": ("<tool_call>" + "[" * 200_000 + "</tool_call>", ([], f"tagged: nested deeper than {MAX_DEPTH}")),
    "balanced deep named objects": ('{"name":1,"a":' * 14_000 + "1" + "}" * 14_000, ([], [])),
}


@pytest.mark.parametrize("name", sorted(SLOW))
def test_known_slow_inputs_are_fast(name):
    text, (want_calls, want_errors) = SLOW[name]
    calls, errors = check(text)
    assert calls == want_calls
    if isinstance(want_errors, str):
        assert len(errors) == 1 and errors[0].startswith(want_errors), errors
    else:
        assert errors == want_errors


def _big(n=5_000):
    return "9" * n


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "read_email", "arguments": {"email_id": %s}}</tool_call>' % _big(),
    '```json\n{"name": "read_email", "arguments": {"email_id": %s}}\n```' % _big(),
    '<function=read_email>{"email_id": %s}</function>' % _big(),
    'Reading {"name": "read_email", "arguments": {"email_id": %s}} now' % _big(),
    '<tool_call>{"name": "read_email", "parameters": "{\\"email_id\\": %s}"}</tool_call>' % _big(),
    "<tool_call>{'name': 'read_email', 'arguments': {'email_id': %s,},}</tool_call>" % _big(4_000),
])
def test_a_5000_digit_integer_is_text_not_an_exception(text):
    calls, errors = check(text)
    assert not errors and len(calls) == 1 and calls[0]["name"] == "read_email"
    want = _big(4_000) if "'" in text else _big()
    assert calls[0]["arguments"] == {"email_id": want}


def test_huge_integers_in_python_calls():
    # decimal: Python itself refuses the literal (over 4300 digits), so it is no call, and says so
    assert check(f"read_email(email_id={_big()})") == ([], ["python: not a Python-style call"])
    calls, errors = check(f"read_email(email_id=0x{'f' * 5_000})")  # hex has no digit limit: kept, as hex text
    assert not errors and calls[0]["arguments"] == {"email_id": "0x" + "f" * 5_000}
    calls, _ = check(f"read_email(email_id={'9' * 999})")  # under MAX_INT_DIGITS: a number
    assert calls[0]["arguments"] == {"email_id": int("9" * 999)}


def test_non_finite_numbers_come_back_as_text():
    calls, errors = check('<tool_call>{"name": "send_email", "arguments": {"a": 1e999, "b": -1e999, "c": NaN, '
                          '"d": Infinity, "e": -Infinity, "f": 1.5, "g": [1e400]}}</tool_call>')
    assert not errors and calls[0]["arguments"] == {"a": "1e999", "b": "-1e999", "c": "NaN", "d": "Infinity",
                                                    "e": "-Infinity", "f": 1.5, "g": ["1e400"]}
    calls, _ = check("send_email(a=1e999, b=-1e999, c=1.5)")
    assert calls[0]["arguments"] == {"a": "inf", "b": "-inf", "c": 1.5}


def test_lone_surrogates_become_replacement_characters():
    calls, errors = check('<tool_call>{"name": "send_email", "arguments": {"body": "a\\ud800b\\udfffc", '
                          '"\\ud83d": "\\ud83d\\ude00"}}</tool_call>')
    assert not errors and calls[0]["arguments"] == {"body": "a\ufffdb\ufffdc", "\ufffd": "😀"}
    calls, _ = check('send_email(body="x\ud800y")')  # a raw surrogate in the text itself
    assert calls[0]["arguments"] == {"body": "x\ufffdy"}
    calls, _ = check("<tool_use:email>\nto: a\ud800@b.example\nbody: hi\n</tool_use>")
    assert calls[0]["arguments"]["to"] == "a\ufffd@b.example"


def test_long_strings_and_huge_lists_are_read_whole():
    body = "Long line, (parens) [brackets] {braces} \"quotes\" and 'apostrophes'.\n" * 2_000  # ~140,000 characters
    want = [{"name": "send_email", "arguments": {"to": "a@b.example", "body": body}}]
    for text in [f"<tool_call>{json.dumps({'name': 'send_email', 'arguments': {'to': 'a@b.example', 'body': body}})}</tool_call>",
                 f"ok {json.dumps({'name': 'send_email', 'arguments': {'to': 'a@b.example', 'body': body}})}",
                 f"send_email(to='a@b.example', body={body!r})"]:
        calls, errors = check(text)
        assert not errors and [{"name": c["name"], "arguments": c["arguments"]} for c in calls] == want
    calls, errors = check('<tool_call>{"name": "send_email", "arguments": {"to": [%s]}}</tool_call>'
                          % ", ".join(["1"] * 60_000))
    assert not errors and calls[0]["arguments"]["to"] == [1] * 60_000


def test_nesting_limit_is_exact():
    def nested(k):  # k brackets around the value, plus the call's own two braces
        return '<tool_call>{"name": "send_email", "arguments": {"to": %s1%s}}</tool_call>' % ("[" * k, "]" * k)

    calls, errors = check(nested(MAX_DEPTH - 2))
    assert not errors and calls[0]["arguments"]["to"] == json.loads("[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2))
    assert check(nested(MAX_DEPTH - 1)) == ([], [f"tagged: nested deeper than {MAX_DEPTH} levels"])
    # bare JSON: an object nested too deep is not a call, but a call after it is
    calls, _ = check('{"name": "x", "arguments": %s} {"name": "list_inbox", "arguments": {}}' % ("[" * 40 + "]" * 40))
    assert [(c["name"], c["form"]) for c in calls] == [("list_inbox", "bare_json")]


@pytest.mark.parametrize("arg", ["-" * 50_000 + "1", "not " * 50_000 + "1", "1+" * 90_000 + "1", "lambda:" * 20_000 + "1",
                                 "a." * 90_000 + "b", "x**" * 50_000 + "1", "1 if 1 else " * 15_000 + "1",
                                 'f"{' * 300 + '}"' * 300, "(" * 40 + "1" + ")" * 40])
def test_crafted_python_that_breaks_ast_is_an_error(arg):
    calls, errors = check(f"send_email(to={arg})")
    assert calls == [] and len(errors) == 1 and errors[0].startswith("python: "), errors


def test_control_characters_and_nul_in_python_strings():
    calls, errors = check('send_email(to="a@b.example", body="x\x00y\x1bz")')
    assert not errors and calls[0]["arguments"] == {"to": "a@b.example", "body": "x\x00y\x1bz"}


def test_attempts_are_capped_and_say_so():
    calls, errors = check("<tool_call>{oops</tool_call>" * 5_000)
    assert calls == [] and len(errors) == MAX_ATTEMPTS + 1 and errors[-1].startswith(f"stopped after {MAX_ATTEMPTS}")
    calls, errors = check(("<tool_call>{oops</tool_call>" * 10) + '<tool_call>{"name": "list_inbox", "arguments": {}}</tool_call>')
    assert [c["name"] for c in calls] == ["list_inbox"] and len(errors) == 10


def test_call_limit_spans_forms():
    tagged = '<tool_call>{"name": "read_email", "arguments": {"email_id": "t%d"}}</tool_call>'
    fenced = '```json\n{"name": "read_email", "arguments": {"email_id": "f%d"}}\n```'
    calls, errors = check("\n".join(tagged % i for i in range(40)) + "\n" + "\n".join(fenced % i for i in range(40)))
    assert [c["arguments"]["email_id"] for c in calls] == [f"t{i}" for i in range(40)] + [f"f{i}" for i in range(24)]
    assert errors == [f"more than {MAX_CALLS} calls in one message: the calls after the first {MAX_CALLS} were ignored"]


def test_not_text():
    assert parse_tool_calls(None) == ([], ["model output is not text"])
    assert parse_tool_calls(b"<tool_call>") == ([], ["model output is not text"])


# -- every form, in text order, each region read once ----------------------------------------------

def tag(name, **args):
    return "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"


def fence(name, **args):
    return "```json\n" + json.dumps({"name": name, "arguments": args}) + "\n```"


def bare(name, **args):
    return json.dumps({"name": name, "arguments": args})


ORDER = {
    "tagged then fenced": (tag("list_inbox") + "\n" + fence("read_email", email_id="e1"),
                           [("list_inbox", "tagged"), ("read_email", "fenced")]),
    "fenced then tagged": (fence("read_email", email_id="e1") + "\nand " + tag("list_inbox"),
                           [("read_email", "fenced"), ("list_inbox", "tagged")]),
    "tagged holding a fence": ("<tool_call>\n" + fence("read_email", email_id="e1") + "\n</tool_call>",
                               [("read_email", "tagged")]),
    "fence holding a tag": ("```json\n" + tag("read_email", email_id="e1") + "\n```", [("read_email", "tagged")]),
    "fence holding a function": ('```json\n<function=end_session>{}</function>\n```', [("end_session", "function")]),
    "bare after tagged": (tag("list_inbox") + " then " + bare("read_email", email_id="e1"),
                          [("list_inbox", "tagged"), ("read_email", "bare_json")]),
    "bare before tagged": ("First " + bare("read_email", email_id="e1") + ", then " + tag("list_inbox"),
                           [("read_email", "bare_json"), ("list_inbox", "tagged")]),
    "tagged JSON is not bare JSON too": (tag("list_inbox"), [("list_inbox", "tagged")]),
    "fenced JSON is not bare JSON too": (fence("list_inbox"), [("list_inbox", "fenced")]),
    "python prose beside function, tool_use, tagged": ('read_email(email_id="e1") <function=list_inbox>{}</function> '
                                                       "<tool_use:email>\nto: a@b.example\nbody: Hi.\n</tool_use> "
                                                       + tag("end_session"),
                                                       [("list_inbox", "function"), ("send_email", "tool_use"),
                                                        ("end_session", "tagged")]),
    "python calls alone": ('read_email(email_id="e1") and then end_session()',
                           [("read_email", "python"), ("end_session", "python")]),
    "tool_code fence then unfenced tool_code": ("```tool_code\nprint(default_api.list_inbox())\n```\nthen "
                                                'default_api.read_email(email_id="e1")',
                                                [("list_inbox", "tool_code")]),
    "prose mention of a tagged send": ('I will call send_email(to="a@b.example", body="Hi.") now: '
                                       + tag("send_email", to="a@b.example", body="Hi."), [("send_email", "tagged")]),
    "a tool name in a tagged body": (tag("send_email", to="a@b.example", body='I will list_inbox() and {"name": '
                                         '"read_email", "arguments": {}} later'), [("send_email", "tagged")]),
    "a tool name in a fenced python body": ('```tool_code\nsend_email(to="a@b.example", body="see read_email(email_id=1)")\n```',
                                            [("send_email", "fenced")]),
    "a tag named in a JSON string": (tag("send_email", to="a@b.example", body="write <tool_call> and ```json\n"),
                                     [("send_email", "tagged")]),
    "a tag left open, then a tag": ('<tool_call>{"name": "list_inbox", "arguments": {}}\n' + tag("end_session"),
                                    [("list_inbox", "tagged"), ("end_session", "tagged")]),
    "a tag left open, then a fence": ('<tool_call>{"name": "list_inbox", "arguments": {}}\n\n' + fence("end_session"),
                                      [("list_inbox", "tagged"), ("end_session", "fenced")]),
    "a broken tag left open, then a function": ("<tool_call>{oops\n<function=end_session>{}</function>",
                                                [("end_session", "function")]),
    "two JSON values in one tag": ("<tool_call>\n" + bare("list_inbox") + "\n" + bare("end_session") + "\n</tool_call>",
                                   [("list_inbox", "tagged"), ("end_session", "tagged")]),
    "a JSON list in one fence": ("```json\n[" + bare("list_inbox") + ", " + bare("end_session") + "]\n```",
                                 [("list_inbox", "fenced"), ("end_session", "fenced")]),
    "prose with a tool name and a parenthesis": ("I will use send_email (after reading). " + tag("list_inbox"),
                                                 [("list_inbox", "tagged")]),
    "JSON that is not a call, then a tag": ('Contact: {"name": "Dana Reyes", "address": "d@x.example"} ' + tag("list_inbox"),
                                            [("list_inbox", "tagged")]),
    "an OpenAI wrapper after a tag": (tag("list_inbox") + ' {"type": "function", "function": {"name": "end_session", '
                                      '"arguments": "{}"}}', [("list_inbox", "tagged"), ("end_session", "bare_json")]),
    "a call inside unclosed brackets": ('[ {"a": ' + bare("list_inbox"), [("list_inbox", "bare_json")]),
    "a stray quote before bare JSON": ('He said "wait [' + bare("list_inbox"), [("list_inbox", "bare_json")]),
    "a brace in a fenced string between bare calls": (bare("list_inbox") + '\n```tool_code\nread_email(email_id="{")\n```\n'
                                                      + bare("end_session", note="}"),
                                                      [("list_inbox", "bare_json"), ("read_email", "fenced"),
                                                       ("end_session", "bare_json")]),
    "an escaped quote in a tag, then a stray quote before a call": (
        bare("list_inbox") + ' <tool_call>{"name": "read_email", "arguments": {"email_id": "\\""}}</tool_call> {"x": "'
        + bare("end_session"), [("list_inbox", "bare_json"), ("read_email", "tagged"), ("end_session", "bare_json")]),
}


@pytest.mark.parametrize("name", sorted(ORDER))
def test_forms_in_text_order(name):
    text, want = ORDER[name]
    calls, errors = check(text)
    assert [(c["name"], c["form"]) for c in calls] == want
    if "broken" in name:
        assert len(errors) == 1 and errors[0].startswith("tagged: invalid JSON"), errors
    else:
        assert errors == []


def test_arguments_survive_mixing():
    text = (fence("read_email", email_id="e1") + "\n" + tag("send_email", to="a@b.example", body="Hi,\n\nsee you.")
            + '\nsend_email(to="c@d.example", body="Second.")')
    calls, errors = check(text)
    # the unfenced call after them is prose beside delimited calls: not sent a second time
    assert not errors and [c["arguments"] for c in calls] == [
        {"email_id": "e1"}, {"to": "a@b.example", "body": "Hi,\n\nsee you."}]
