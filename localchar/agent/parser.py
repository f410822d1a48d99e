"""Tolerant tool-call parser for untrusted model text.

Every form below is looked for in the whole message, and the calls come back in the order they
start in the text, each recording its form:
  tagged     <tool_call>{"name": ..., "arguments": {...}}</tool_call>. One tag may hold a JSON list or
             several JSON values, or a ```json fence around its JSON. A tag left open ends at the next
             <tool_call> or the end of the text and takes only the JSON it holds (or, when its text is
             no call, ends at the next tag of any form)
  fenced     ```json / ```tool_call / ```tool_code blocks, JSON or Python-style calls inside (one
             per line allowed); Gemma's print(default_api.NAME(...)) calls are recorded as "tool_code".
             A fence around a <tool_call> / <function=...> / <tool_use:email> tag only wraps it: the tag
             is read in its own form
  function   <function=NAME>{...arguments...}</function> (Llama 3.1's custom format; left open: as tagged)
  tool_use   <tool_use:email> blocks with to: / subject: / body: lines (a send_email; left open: up to
             the next tag of any form)
  bare_json  JSON objects anywhere else with "name" and "arguments" / "parameters" (or the name of a
             known tool, or an OpenAI-style {"function": {...}} wrapper). Objects that are not calls
             are skipped without an error
  python     a Python-style call of a known tool, [send_email(to="...", body="...")] or one bare call,
             read with `ast` (never eval). Unfenced [print(]default_api.NAME(...)[)] calls are read
             here too, recorded as "tool_code". These unfenced calls count only when the message has
             no call of a delimited form (tagged, fenced, function, tool_use, bare JSON): beside one,
             they are prose about it ("I'll use send_email(...)"). Text that only looks like a call
             (a tool name and a parenthesis in prose) is an error only when the message holds nothing else
A region read as one form is not read again as another: the call that starts first owns its text, so
the JSON inside a tag, a fence inside a tag, a tool name inside an email body, ... are part of it.
JSON is repaired for trailing commas and single quotes; raw newlines, tabs and other control
characters inside strings are accepted in every form (models write multi-line bodies that way);
argument aliases are mapped (recipient -> to, content / message -> body). Arguments are plain JSON
values: integers of more than MAX_INT_DIGITS digits, NaN / Infinity and numbers too large for a float
come back as their text, and lone surrogates as U+FFFD. Nothing here runs model text: JSON and
`ast.literal_eval`-style literals only, with size and nesting limits.

Any text is safe: the scan is linear (str.find and regular expressions that cannot backtrack,
one pass over brackets for bare JSON, ast only on MAX_AST characters at most) and nothing raises:
whatever goes wrong with one candidate is an entry of the returned errors. A message yields at most
MAX_CALLS calls and MAX_ATTEMPTS decoded candidates; past either limit the rest is not read, and one
error says so.
"""

from __future__ import annotations

import ast
import bisect
import functools
import json
import math
import re
import warnings

KNOWN_TOOLS = ("list_inbox", "read_email", "send_email", "end_session")
ALIASES = {"recipient": "to", "recipients": "to", "content": "body", "message": "body", "text": "body",
           "id": "email_id"}
MAX_BLOB = 2_000_000    # characters of one call's text that the parser will look at
MAX_AST = 200_000       # characters of one call handed to ast.parse (Python-style calls, single-quoted JSON)
MAX_DEPTH = 32          # nesting beyond this is not a tool call (and would be a JSON bomb)
MAX_CALLS = 64          # calls taken from one message; the rest are reported as one error
MAX_ATTEMPTS = 4 * MAX_CALLS  # candidates decoded per message; the text after them is not read
MAX_INT_DIGITS = 1000   # longer integers come back as text (Python cannot even print beyond 4300 digits)
MAX_RESCANS = 8         # bare-JSON chunks read again (a string that never closes, text another form took)

TAG_OPEN, TAG_CLOSE = "<tool_call>", "</tool_call>"
FN_OPEN, FN_CLOSE = "<function=", "</function>"
USE_OPEN, USE_CLOSE = "<tool_use:email>", "</tool_use"
FENCE, FENCE_LANGS = "```", ("json", "tool_call", "tool_code")
WRAPPED = (TAG_OPEN, FN_OPEN, USE_OPEN)
FN_NAME = re.compile(r"([A-Za-z_][\w.-]*)>")
FIELD = re.compile(r"^(to|subject|body)\s*:\s?", re.I | re.M)
SPACE, HSPACE, SEP = re.compile(r"\s*"), re.compile(r"[ \t]*"), re.compile(r"[\s,]*")
BRACKETS = re.compile(r"[\[\](){}]")
BARE_STOP = re.compile(r'[{}\[\]"]')
JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: fails in one linear pass
SURROGATE = re.compile("[\ud800-\udfff]")
STRING_STOP = {q: re.compile(r"\\.|" + q, re.S) for q in ('"', "'", '"""', "'''")}
PY_STOP = re.compile(r"[\"'#]")
PAREN_STOP = re.compile(r"[()\"']")
CONTROL = re.compile(r"\\.|[\x00-\x1f]", re.S)
INT_LIMIT = 10 ** MAX_INT_DIGITS


class ParseError(ValueError):
    pass


class _NotPython(ParseError):
    """The text is not Python at all (prose that happens to hold a tool name and a parenthesis)."""


def _int(digits: str):
    if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
        return digits
    try:
        return int(digits)
    except ValueError:  # a lower sys.set_int_max_str_digits()
        return digits


def _float(literal: str):
    value = float(literal)
    return value if math.isfinite(value) else literal


# strict=False: raw control characters in strings stay as they are; numbers never raise (see _int)
JSON = json.JSONDecoder(strict=False, parse_int=_int, parse_float=_float, parse_constant=str)


def _clean(s: str) -> str:
    """`s` without lone surrogates (no UTF-8 writer would take them)."""
    return s if s.isascii() or not SURROGATE.search(s) else SURROGATE.sub("\ufffd", s)


def _why(e: Exception) -> str:
    if isinstance(e, ParseError):
        return str(e)
    if isinstance(e, (RecursionError, MemoryError)):
        return "too large or too deeply nested"
    return f"unreadable call ({type(e).__name__})"


def _depth_ok(text: str) -> bool:
    depth = 0
    for m in BRACKETS.finditer(text):
        if m[0] in "[{(":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        else:
            depth -= 1
    return True


def _repair(blob: str) -> str:
    return re.sub(r",\s*([}\]])", r"\1", blob)


def _lenient(blob: str, first_error: str):
    """One JSON value from `blob` read with trailing commas dropped, then as a Python literal."""
    fixed = _repair(blob)
    if fixed != blob:
        try:
            return JSON.raw_decode(fixed)[0]
        except json.JSONDecodeError:
            pass
    if len(fixed) <= MAX_AST:
        try:  # single quotes, True/False/None: Python literals, never code
            value = ast.literal_eval(_parse_python(_clean(fixed), "eval"))  # ast takes no lone surrogate
            if isinstance(value, (dict, list)):
                return value
        except Exception:  # SyntaxError, ValueError, MemoryError, RecursionError, ...: not a literal
            pass
    raise ParseError(f"invalid JSON ({first_error})")


def _json_values(blob: str, i: int = 0, multi: bool = False) -> tuple[list, int | None]:
    """The JSON value at blob[i:] (whitespace first is fine); with `multi`, also the values right
    after it (whitespace or commas between). Returns them and the offset past the last one, or None
    for the offset when only the repaired reading worked. Raises ParseError with a short reason."""
    if len(blob) > MAX_BLOB:
        raise ParseError(f"call text over {MAX_BLOB} characters")
    if not _depth_ok(blob):
        raise ParseError(f"nested deeper than {MAX_DEPTH} levels")
    i = SPACE.match(blob, i).end()
    try:
        value, j = JSON.raw_decode(blob, i)
    except json.JSONDecodeError as e:
        return [_lenient(blob[i:].rstrip(), e.msg)], None
    values = [value]
    while multi and len(values) <= MAX_CALLS:
        k = SEP.match(blob, j).end()
        if not blob.startswith(("{", "["), k):
            break
        try:
            value, j = JSON.raw_decode(blob, k)
        except json.JSONDecodeError:
            break
        values.append(value)
    return values, j


def decode_json(blob: str):
    """One JSON value from `blob` (trailing text ignored), repaired for trailing commas and single
    quotes. Raises ParseError with a short reason."""
    return _json_values(blob)[0][0]


def _unfence(blob: str, i: int) -> tuple[str, int]:
    """A ``` fence at blob[i:] (inside a tag): the text up to its closing ```, and where its body starts."""
    if not blob.startswith(FENCE, i):
        return blob, i
    nl = blob.find("\n", i)
    if nl < 0:
        return blob, len(blob)
    close = blob.find(FENCE, nl + 1)
    return (blob if close < 0 else blob[:close]), nl + 1


def _string_end(text: str, i: int) -> int:
    """Index just past the Python string literal whose quote is at text[i] (triple quotes too),
    or -1 if it never closes. Raw newlines do not end it: models put them in plain quotes."""
    q = text[i] * 3 if text.startswith(text[i] * 3, i) else text[i]
    stop, j = STRING_STOP[q], i + len(q)
    while (m := stop.search(text, j)):
        if m[0] == q:
            return m.end()
        j = m.end()
    return -1


def _escape_controls(src: str) -> str:
    """`src` with raw control characters inside (non-raw) string literals written as escapes: the
    same value to Python, but it parses where a raw newline in plain quotes does not. Comments are
    skipped, so that an apostrophe in one opens no string."""
    out, i = [], 0
    while (m := PY_STOP.search(src, i)):
        start = m.start()
        end = src.find("\n", start) if m[0] == "#" else _string_end(src, start)
        end = len(src) if end < 0 else end
        chunk = src[start:end]
        raw = src[start - 1:start] in ("r", "R") or src[start - 2:start].lower() in ("rb", "rf")
        if m[0] != "#" and not raw:  # in r"..." an escape would change the value
            chunk = CONTROL.sub(lambda c: c[0] if len(c[0]) == 2 else f"\\x{ord(c[0]):02x}", chunk)
        out += [src[i:start], chunk]
        i = end
    out.append(src[i:])
    return "".join(out)


def _parse_python(src: str, mode: str) -> ast.AST:
    """ast.parse, and on a failure once more with control characters in strings escaped."""
    with warnings.catch_warnings():  # model text may hold odd escapes: not our warnings to show
        warnings.simplefilter("ignore")
        try:
            return ast.parse(src, mode=mode)
        except (SyntaxError, ValueError):
            fixed = _escape_controls(src)
            if fixed == src:
                raise
            return ast.parse(fixed, mode=mode)


def _key(k, depth: int) -> str:
    if isinstance(k, str):
        return _clean(k)
    try:
        return _clean(str(k))
    except ValueError:  # a tuple key holding a huge integer
        return str(_plain(k, depth))


def _plain(v, depth: int = 0):
    """Python literals (sets, bytes, tuples, complex, non-string keys) as plain JSON values, safe to
    print and to write as UTF-8: bounded integers, finite floats, no lone surrogates."""
    if isinstance(v, str):
        return _clean(v)
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        if -INT_LIMIT < v < INT_LIMIT:
            return v
        try:
            return str(v)
        except ValueError:  # beyond Python's digit limit (a hex literal): hex has none
            return hex(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if depth > MAX_DEPTH:
        return "..."
    if isinstance(v, dict):
        return {_key(k, depth + 1): _plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_plain(x, depth + 1) for x in v]
    return _clean(str(v))


def _arguments(args) -> dict:
    if isinstance(args, str):
        try:
            args = decode_json(args)
        except ParseError:
            return {}
    if not isinstance(args, dict):
        return {}
    args = _plain(args)
    return {ALIASES.get(k, k) if ALIASES.get(k, k) not in args else k: v for k, v in args.items()}


def _as_call(obj, form: str) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):  # OpenAI-style wrapper
        obj = obj["function"]
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
        raise ParseError("no tool name")
    return {"name": _clean(obj["name"].strip()),
            "arguments": _arguments(obj.get("arguments", obj.get("parameters", {}))), "form": form}


def _calls_of(values: list, form: str) -> tuple[list[dict], str | None]:
    """Calls from decoded JSON values (a list is several calls); the first reason an item is not one."""
    calls, err = [], None
    for v in values:
        for item in (v if isinstance(v, list) else (v,)):
            if len(calls) > MAX_CALLS:
                return calls, err
            try:
                calls.append(_as_call(item, form))
            except ParseError as e:
                err = err or str(e)
    return calls, err


def _bare_call(obj, known: tuple[str, ...]) -> dict | None:
    """A bare JSON object as a call, or None when it is some other JSON."""
    if not isinstance(obj, dict):
        return None
    inner = obj["function"] if isinstance(obj.get("function"), dict) else obj
    name = inner.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    if inner is obj and "arguments" not in obj and "parameters" not in obj and name.strip() not in known:
        return None
    return _as_call(obj, "bare_json")


def _python_calls(src: str, known: tuple[str, ...], strict: bool) -> list[dict]:
    """Calls written as Python: `f(a=1)`, `[f(a=1), g()]`, one per line, or Gemma's
    `print(default_api.f(a=1))` (form "tool_code"). Only literal keyword arguments are accepted."""
    src = _clean(src.strip())  # ast takes no lone surrogate
    if len(src) > MAX_AST:
        raise ParseError(f"Python-style call over {MAX_AST} characters")
    if not _depth_ok(src):
        raise ParseError("call text too large or too deeply nested")
    try:
        tree = _parse_python(src, "exec")
    except Exception:  # SyntaxError, ValueError, MemoryError, RecursionError: ast's limits, not ours
        raise _NotPython("not a Python-style call") from None
    nodes = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise _NotPython("not a Python-style call")
        nodes += stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) else [stmt.value]
    if not nodes:
        raise _NotPython("not a Python-style call")
    out = []
    for n in nodes:
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
                and len(n.args) == 1 and not n.keywords):
            n = n.args[0]  # Gemma prints the call's result; the call is what counts
        f = getattr(n, "func", None)
        if isinstance(n, ast.Call) and isinstance(f, ast.Name):
            name, form = f.id, "python"
        elif isinstance(n, ast.Call) and isinstance(f, ast.Attribute) and getattr(f.value, "id", None) == "default_api":
            name, form = f.attr, "tool_code"
        else:
            raise _NotPython("not a Python-style call")
        if strict and name not in known:
            raise ParseError(f"unknown tool '{name[:100]}'")
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in n.keywords if k.arg}
            if n.args:
                raise ValueError("positional arguments")
        except Exception:
            raise ParseError(f"{name[:100]}: arguments must be keyword literals") from None
        out.append({"name": name, "arguments": _arguments(kwargs), "form": form})
    return out


def _tool_use(block: str) -> dict:
    fields, pos = {}, [(m.group(1).lower(), m.start(), m.end()) for m in FIELD.finditer(block)]
    for i, (key, _, end) in enumerate(pos):
        stop = pos[i + 1][1] if i + 1 < len(pos) else len(block)
        fields[key] = _clean(block[end:stop].strip())
    if "to" not in fields:
        raise ParseError("<tool_use:email> without a to: line")
    return {"name": "send_email", "arguments": {"to": fields["to"], "subject": fields.get("subject", ""),
                                                "body": fields.get("body", "")}, "form": "tool_use"}


def _balanced_end(text: str, start: int) -> int:
    """Index past the ')' closing the first '(' at or after `start`, string literals skipped; -1
    if it does not close within MAX_BLOB characters."""
    depth, i = 0, start
    while (m := PAREN_STOP.search(text, i)) and m.start() - start < MAX_BLOB:
        if m[0] in "\"'":
            i = _string_end(text, m.start())
            if i < 0:
                return -1
            continue
        depth += 1 if m[0] == "(" else -1
        i = m.end()
        if depth == 0:
            return i
    return -1


@functools.lru_cache(maxsize=16)
def _call_start(known: tuple[str, ...]) -> re.Pattern:
    names = "|".join(map(re.escape, known))
    return re.compile(rf"(?:\bprint\s*\(\s*)?((?:\bdefault_api\s*\.\s*)?\b(?:{names})\s*\()")


def _fence_body(text: str, i: int) -> int | None:
    """Where the body of the ```json / ```tool_call / ```tool_code fence at text[i] starts, or None."""
    j = i + len(FENCE)
    for lang in FENCE_LANGS:
        if text.startswith(lang, j):
            k = HSPACE.match(text, j + len(lang)).end()
            if text.startswith("\n", k):
                return k + 1
    return None


def _function_head(text: str, i: int) -> tuple[str, int] | None:
    m = FN_NAME.match(text, i + len(FN_OPEN))
    return (m[1], m.end()) if m else None


def _use_close_end(text: str, i: int) -> int | None:
    j = i + len(USE_CLOSE)
    return j + 1 if text.startswith(">", j) else j + 7 if text.startswith(":email>", j) else None


class _Find:
    """The next occurrence of `needle` at or after a position that `check` accepts. Positions asked
    for only grow (the scan moves forward), so each part of the text is searched once."""

    __slots__ = ("text", "needle", "check", "asked", "at")

    def __init__(self, text: str, needle: str, check=None):
        self.text, self.needle, self.check, self.asked, self.at = text, needle, check, -1, -1

    def __call__(self, pos: int) -> int:
        if 0 <= self.asked <= pos and (self.at < 0 or pos <= self.at):
            return self.at
        i = pos
        while (i := self.text.find(self.needle, i)) >= 0 and self.check and self.check(self.text, i) is None:
            i += 1
        self.asked, self.at = pos, i
        return i


class _Bare:
    """Candidates for bare JSON calls: balanced {...} spans that hold "name", found by one pass over
    brackets and JSON strings (a chunk runs from a '{' until its brackets close or the text ends), in
    order of their start, each with its nesting depth. A chunk is only read when it starts before the
    next candidate of the other forms, and read again (a few times per message) when another form took
    text inside it: strings in that text may have misled the pass."""

    def __init__(self, text: str):
        self.text, self.spans, self.k, self.first, self.scanned, self.rescans = text, [], 0, -1, 0, 0
        self.names = [m.start() for m in re.finditer('"name"', text)]
        self.tried = set()

    def peek(self, pos: int, limit: int) -> int:
        """Where the next candidate at or after `pos` starts; -1 when none starts before `limit`."""
        t = self.text
        while True:
            spans = self.spans
            while self.k < len(spans) and (spans[self.k][0] < pos or spans[self.k][0] in self.tried):
                self.k += 1
            if self.k < len(spans):
                return spans[self.k][0]
            start = max(pos, self.scanned)
            if start >= len(t) or bisect.bisect_left(self.names, start) == len(self.names):
                return -1
            first = t.find("{", start, limit)
            if first < 0:
                return -1  # nothing before the other form's candidate: no need to read further yet
            self._chunk(first)

    def taken(self, end: int) -> None:
        """Another form took the text up to `end`."""
        if self.first < end < self.scanned and self.rescans < MAX_RESCANS:
            self.rescans += 1
            self.spans, self.k, self.scanned = [], 0, end

    def take(self) -> tuple[int, int, int]:
        span = self.spans[self.k]
        self.k += 1
        self.tried.add(span[0])
        return span

    def _chunk(self, first: int) -> None:
        """Read the chunk that starts with the '{' at text[first]."""
        t, names = self.text, self.names
        self.first = first
        stack, found, i, end, broken = [[first, "{", 0]], [], first + 1, len(t), False
        while stack:
            m = BARE_STOP.search(t, i)
            if m is None:
                break  # brackets left open: the spans that closed inside still count
            c, j = m[0], m.start()
            if c == '"':
                s = JSON_STRING.match(t, j)
                if s is None:
                    broken = True  # a string that never closes: maybe a stray quote, so look again
                    break
                i = s.end()
                continue
            i = j + 1
            if c in "{[":
                stack.append([j, c, 0])
                continue
            if stack[-1][1] != ("{" if c == "}" else "["):
                continue  # a stray closer
            o, kind, below = stack.pop()
            if stack and stack[-1][2] <= below:
                stack[-1][2] = below + 1
            if kind == "{":
                x = bisect.bisect_left(names, o)
                if x < len(names) and names[x] < j:
                    found.append((o, j + 1, below + 1))
        else:
            end = i
        found.sort()
        self.spans, self.k = found, 0
        if broken and self.rescans < MAX_RESCANS:
            self.rescans += 1
            self.scanned = first + 1  # again from inside the first '{', where a stray quote may have been
        else:
            self.scanned = end


class _Python:
    """Candidates for Python-style calls of known tools: where the next one starts."""

    def __init__(self, text: str, known: tuple[str, ...]):
        self.text, self.rx, self.whole, self.done, self.m, self.floor = text, _call_start(known), True, False, None, 0

    def start(self, m: re.Match) -> int:
        return m.start() if self.whole else m.start(1)

    def peek(self, pos: int) -> int:
        if self.done:
            return -1
        pos = max(pos, self.floor)
        if self.m is None or self.start(self.m) < pos:
            self.m = self.rx.search(self.text, pos)
            if self.m is None:
                self.done = True
                return -1
        return self.start(self.m)


LOOSE = "_loose"  # marks unfenced Python-style calls while the scan runs (see _Scan.result)


class _Scan:
    """One left-to-right pass: at each point the candidate of any form that starts first is read, and
    the text it takes is skipped by all forms."""

    def __init__(self, text: str, known: tuple[str, ...]):
        t = self.text = text
        self.n, self.known = len(text), known
        self.calls, self.errors, self.soft, self.attempts = [], [], [], 0
        self.tag_open, self.tag_close = _Find(t, TAG_OPEN), _Find(t, TAG_CLOSE)
        self.fn_open, self.fn_next = _Find(t, FN_OPEN, _function_head), _Find(t, FN_OPEN)
        self.fn_close = _Find(t, FN_CLOSE)
        self.use_open, self.use_close = _Find(t, USE_OPEN), _Find(t, USE_CLOSE, _use_close_end)
        self.fence_open, self.fence_close = _Find(t, FENCE, _fence_body), _Find(t, FENCE)
        self.bare = _Bare(t)
        self.py = _Python(t, known) if known else None

    def run(self) -> None:
        forms = [(self.tag_open, self._tagged), (self.fence_open, self._fenced), (self.fn_open, self._function),
                 (self.use_open, self._tool_use)]
        if self.py:
            forms.append((self.py.peek, self._python))
        pos = 0
        while pos < self.n and len(self.calls) <= MAX_CALLS:
            best, take = -1, None
            for peek, form_take in forms:
                s = peek(pos)
                if s >= 0 and (best < 0 or s < best):
                    best, take = s, form_take
            s = self.bare.peek(pos, best if best >= 0 else self.n)  # bare JSON is read last: the most work
            if s >= 0 and (best < 0 or s < best):
                best, take = s, self._bare
            if take is None:
                return
            if self.attempts >= MAX_ATTEMPTS:
                self.errors.append(f"stopped after {MAX_ATTEMPTS} attempts to read a call: the rest of the "
                                   "message was not read")
                return
            end = take(best)
            if end > pos:
                if take != self._bare:
                    self.bare.taken(end)
                pos = end  # past the text it took (a form that took none has moved on by itself)

    def result(self) -> tuple[list[dict], list[str]]:
        calls, errors = self.calls, self.errors
        if any(LOOSE not in c for c in calls):
            # an unfenced Python-style call beside a delimited one is prose about the call ("I'll
            # use send_email(...)"), not a second call: it would otherwise run twice
            calls = [c for c in calls if LOOSE not in c]
        calls = [{k: v for k, v in c.items() if k != LOOSE} for c in calls]
        if len(calls) > MAX_CALLS:
            errors.append(f"more than {MAX_CALLS} calls in one message: the calls after the first "
                          f"{MAX_CALLS} were ignored")
            calls = calls[:MAX_CALLS]
        if not calls and not errors:
            errors = self.soft  # a call-like fragment, and nothing else: say why it is no call
        return calls, [_clean(e) for e in errors]

    def _commit(self, form: str, read: tuple) -> None:
        calls, err, _ = read
        self.calls.extend(calls)
        if err:
            self.errors.append(f"{form}: {err}")

    def _read_json(self, lo: int, hi: int, form: str) -> tuple[list[dict], str | None, int | None]:
        """(calls, error, end of the JSON read or None) for the JSON in text[lo:hi]."""
        try:
            blob, i = _unfence(self.text[lo:hi], SPACE.match(self.text, lo, hi).end() - lo)
            values, j = _json_values(blob, i, multi=True)
            calls, err = _calls_of(values, form)
            return calls, err, None if j is None else lo + j
        except Exception as e:
            return [], _why(e), None

    def _delimited(self, form: str, s: int, b: int, nxt: _Find, close: _Find, close_len: int, read) -> int:
        """A tagged or function call whose body starts at b; returns where the text it takes ends."""
        self.attempts += 1
        c, o = close(b), nxt(b)
        if c >= 0 and (o < 0 or o > c):
            self._commit(form, read(b, c))
            return c + close_len
        if c < 0:  # left open: up to the next opener, and only as far as its JSON goes
            hi = o if o >= 0 else self.n
            r = read(b, hi)
            self._commit(form, r)
            return self._open_end(r, b, hi)
        # another opener before the close: text inside this call (in a string), or this one was left open
        r = read(b, c)
        if not r[1] and (r[2] is None or r[2] > o):
            self._commit(form, r)
            return c + close_len
        if r[1]:
            r = read(b, o)
        self._commit(form, r)
        return self._open_end(r, b, o)

    def _open_end(self, r: tuple, b: int, hi: int) -> int:
        """Where a tag left open (body from b, at most to hi) ends: past its JSON when that was read,
        at hi when its text read otherwise, and at the next tag of any form when it did not read."""
        if r[1]:
            return min([p for p in (self.tag_open(b), self.fn_next(b), self.use_open(b)) if 0 <= p < hi], default=hi)
        return hi if r[2] is None else r[2]

    def _tagged(self, s: int) -> int:
        return self._delimited("tagged", s, s + len(TAG_OPEN), self.tag_open, self.tag_close, len(TAG_CLOSE),
                               lambda lo, hi: self._read_json(lo, hi, "tagged"))

    def _function(self, s: int) -> int:
        name, b = _function_head(self.text, s)

        def read(lo, hi):
            try:
                blob, i = _unfence(self.text[lo:hi], SPACE.match(self.text, lo, hi).end() - lo)
                if not blob[i:].strip():
                    args, j = {}, None
                else:
                    values, j = _json_values(blob, i)
                    args = values[0]
                call = {"name": _clean(name), "arguments": _arguments(args), "form": "function"}
                return [call], None, None if j is None else lo + j
            except Exception as e:
                return [], _why(e), None

        return self._delimited("function", s, b, self.fn_next, self.fn_close, len(FN_CLOSE), read)

    def _fenced(self, s: int) -> int:
        t = self.text
        b = _fence_body(t, s)
        c = self.fence_close(b)
        hi, end = (c, c + len(FENCE)) if c >= 0 else (self.n, self.n)
        if t.startswith(WRAPPED, SPACE.match(t, b, hi).end(), hi):
            return b  # only a wrapper: the tag inside is read next, in its own form
        self.attempts += 1
        blob = t[b:hi]
        try:
            try:
                values, j = _json_values(blob, 0, multi=True)
            except ParseError as e:
                try:
                    calls = _python_calls(blob, self.known, strict=False)
                except ParseError:
                    raise e from None
                r = [dict(c, form="fenced") if c["form"] == "python" else c for c in calls], None, None
            else:
                r = (*_calls_of(values, "fenced"), None if j is None else b + j)
        except Exception as e:
            r = [], _why(e), None
        self._commit("fenced", r)
        return end if c >= 0 else self._open_end(r, b, self.n)

    def _tool_use(self, s: int) -> int:
        t, b = self.text, s + len(USE_OPEN)
        self.attempts += 1
        c, o = self.use_close(b), self.use_open(b)
        if c >= 0 and (o < 0 or c < o):
            hi, end = c, _use_close_end(t, c)
        else:  # left open: up to the next tag of any form
            hi = end = self._open_end(([], "open", None), b, o if o >= 0 else self.n)
        try:
            r = [_tool_use(t[b:hi].strip())], None, None
        except Exception as e:
            r = [], _why(e), None
        self._commit("tool_use", r)
        return end

    def _bare(self, s: int) -> int:
        o, e, depth = self.bare.take()
        if depth > MAX_DEPTH or e - o > MAX_BLOB:
            return -1  # not a call; the objects inside it are looked at next
        self.attempts += 1
        try:
            try:
                obj, end = JSON.raw_decode(self.text, o)
            except json.JSONDecodeError:
                try:
                    obj, end = JSON.raw_decode(_repair(self.text[o:e]))[0], e
                except json.JSONDecodeError:
                    return -1  # not JSON; the objects inside it are looked at next
            call = _bare_call(obj, self.known)
        except Exception as err:
            self.errors.append(f"bare_json: {_why(err)}")
            return e
        if call is not None:
            self.calls.append(call)
        return end  # JSON that is no call is skipped whole, as one value

    def _python(self, s: int) -> int:
        py, t = self.py, self.text
        m, py.m = py.m, None
        start, end = s, _balanced_end(t, s)
        if end < 0 and m.start(1) > start:
            # print( left open: read the call alone, here and from now on (one failed scan to the end only)
            start, end, py.whole = m.start(1), _balanced_end(t, m.start(1)), False
        if end < 0:
            py.done = True  # never closed: every later call is inside this one, so stop (keeps the scan linear)
            return -1
        py.floor = end
        self.attempts += 1
        try:
            calls = _python_calls(t[start:end], self.known, strict=True)
        except _NotPython as e:
            self.soft.append(f"python: {e}")
            return -1  # prose, not a call: other forms may still read this text
        except Exception as e:
            self.errors.append(f"python: {_why(e)}")
            return end
        self.calls.extend(dict(c, **{LOOSE: True}) for c in calls)
        return end


def parse_tool_calls(text: str, known: tuple[str, ...] = KNOWN_TOOLS) -> tuple[list[dict], list[str]]:
    """(calls, errors). Each call is {"name", "arguments", "form"}, in the order the calls start in the
    text; each error is a short sentence naming the form that failed. Never raises, whatever the text."""
    if not isinstance(text, str):
        return [], ["model output is not text"]
    scan = None
    try:
        scan = _Scan(text, tuple(k for k in known if isinstance(k, str) and k))
        scan.run()
    except Exception as e:  # a bug here, not the text's fault: what was read so far still counts
        if scan is None:
            return [], [f"parser: could not read the message ({type(e).__name__})"]
        scan.errors.append(f"parser: stopped early ({type(e).__name__})")
    return scan.result()
