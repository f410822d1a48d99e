"""Tolerant tool-call parser for untrusted model text.

Forms are tried in a fixed order; the first form that occurs in the text is the one used, and every
call records it:
  1. tagged     <tool_call>{"name": ..., "arguments": {...}}</tool_call> (also unterminated at the end)
  2. fenced     ```json / ```tool_call / ```tool_code blocks, JSON or Python-style calls inside (one
                per line allowed); Gemma's print(default_api.NAME(...)) calls are recorded as "tool_code"
  3. function   <function=NAME>{...arguments...}</function> (Llama 3.1's custom format)
  4. bare_json  JSON objects with "name" and "arguments" / "parameters" anywhere in the text
  5. python     a Python-style call list, [send_email(to="...", body="...")] or one bare call,
                read with `ast` (never eval); only names of known tools count. Unfenced
                [print(]default_api.NAME(...)[)] calls are read here too, recorded as "tool_code"
  6. tool_use   <tool_use:email> blocks with to: / subject: / body: lines (a send_email)
JSON is repaired for trailing commas and single quotes; raw newlines, tabs and other control
characters inside strings are accepted in every form (models write multi-line bodies that way);
argument aliases are mapped (recipient -> to, content / message -> body). Several calls per
message come back in order. Nothing here runs model text: JSON and `ast.literal_eval`-style literals
only, with size and nesting limits.
"""

from __future__ import annotations

import ast
import json
import re
import warnings

KNOWN_TOOLS = ("list_inbox", "read_email", "send_email", "end_session")
ALIASES = {"recipient": "to", "recipients": "to", "content": "body", "message": "body", "text": "body",
           "id": "email_id"}
MAX_BLOB = 2_000_000    # characters of one call's text that the parser will look at
MAX_DEPTH = 32          # nesting beyond this is not a tool call (and would be a JSON bomb)
MAX_CALLS = 64          # calls taken from one message; the rest are reported as one error

TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.S)
FENCED = re.compile(r"```(?:json|tool_call|tool_code)[ \t]*\n(.*?)(?:```|\Z)", re.S)
FUNCTION = re.compile(r"<function=([A-Za-z_][\w.-]*)>\s*(.*?)\s*(?:</function>|\Z)", re.S)
TOOL_USE = re.compile(r"<tool_use:email>\s*(.*?)\s*(?:</tool_use(?::email)?>|\Z)", re.S)
FIELD = re.compile(r"^(to|subject|body)\s*:\s?", re.I | re.M)
JSON = json.JSONDecoder(strict=False)  # strict=False: raw control characters in strings stay as they are
STRING_STOP = {q: re.compile(r"\\.|" + q, re.S) for q in ('"', "'", '"""', "'''")}
PY_STOP = re.compile(r"[\"'#]")
PAREN_STOP = re.compile(r"[()\"']")
CONTROL = re.compile(r"\\.|[\x00-\x1f]", re.S)


class ParseError(ValueError):
    pass


def _depth_ok(text: str) -> bool:
    depth = worst = 0
    for ch in text:
        if ch in "[{(":
            depth += 1
            worst = max(worst, depth)
            if worst > MAX_DEPTH:
                return False
        elif ch in "]})":
            depth -= 1
    return True


def _repair(blob: str) -> str:
    return re.sub(r",\s*([}\]])", r"\1", blob)


def decode_json(blob: str):
    """One JSON value from `blob` (trailing text ignored), repaired for trailing commas and single
    quotes. Raises ParseError with a short reason."""
    blob = blob.strip()
    if len(blob) > MAX_BLOB:
        raise ParseError(f"call text over {MAX_BLOB} characters")
    if not _depth_ok(blob):
        raise ParseError(f"nested deeper than {MAX_DEPTH} levels")
    first_error = None
    for candidate in (blob, _repair(blob)):
        try:
            return JSON.raw_decode(candidate)[0]
        except json.JSONDecodeError as e:
            first_error = first_error or e.msg
    try:  # single quotes, True/False/None: Python literals, never code
        value = ast.literal_eval(_parse_python(_repair(blob), "eval"))
        if isinstance(value, (dict, list)):
            return value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    raise ParseError(f"invalid JSON ({first_error})")


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


def _plain(v, depth: int = 0):
    """Python literals (sets, bytes, tuples, complex, non-string keys) as plain JSON values."""
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v
    if depth > MAX_DEPTH:
        return str(v)[:1000]
    if isinstance(v, dict):
        return {str(k): _plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_plain(x, depth + 1) for x in v]
    return str(v)


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
    return {"name": obj["name"].strip(), "arguments": _arguments(obj.get("arguments", obj.get("parameters", {}))),
            "form": form}


def _calls_from_json(blob: str, form: str) -> list[dict]:
    obj = decode_json(blob)
    items = obj if isinstance(obj, list) else [obj]
    return [_as_call(o, form) for o in items]


def _python_calls(src: str, known: tuple[str, ...], strict: bool) -> list[dict]:
    """Calls written as Python: `f(a=1)`, `[f(a=1), g()]`, one per line, or Gemma's
    `print(default_api.f(a=1))` (form "tool_code"). Only literal keyword arguments are accepted."""
    src = src.strip()
    if len(src) > MAX_BLOB or not _depth_ok(src):
        raise ParseError("call text too large or too deeply nested")
    try:
        tree = _parse_python(src, "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ParseError("not a Python-style call") from None
    nodes = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise ParseError("not a Python-style call")
        nodes += stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) else [stmt.value]
    if not nodes:
        raise ParseError("not a Python-style call")
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
            raise ParseError("not a Python-style call")
        if strict and name not in known:
            raise ParseError(f"unknown tool '{name}'")
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in n.keywords if k.arg}
            if n.args:
                raise ValueError("positional arguments")
        except (ValueError, SyntaxError, TypeError, RecursionError):
            raise ParseError(f"{name}: arguments must be keyword literals") from None
        out.append({"name": name, "arguments": _arguments(kwargs), "form": form})
    return out


def _tool_use(block: str) -> dict:
    fields, pos = {}, [(m.group(1).lower(), m.start(), m.end()) for m in FIELD.finditer(block)]
    for i, (key, _, end) in enumerate(pos):
        stop = pos[i + 1][1] if i + 1 < len(pos) else len(block)
        fields[key] = block[end:stop].strip()
    if "to" not in fields:
        raise ParseError("<tool_use:email> without a to: line")
    return {"name": "send_email", "arguments": {"to": fields["to"], "subject": fields.get("subject", ""),
                                                "body": fields.get("body", "")}, "form": "tool_use"}


def _bare_json_calls(text: str) -> list[dict]:
    calls, i = [], 0
    while len(calls) <= MAX_CALLS:
        i = text.find("{", i)
        if i < 0:
            break
        try:
            obj, end = JSON.raw_decode(text, i)
        except (json.JSONDecodeError, RecursionError):
            i += 1
            continue
        if end - i <= MAX_BLOB:
            try:
                calls.append(_as_call(obj, "bare_json"))
            except ParseError:
                pass
        i = max(end, i + 1)
    return calls


def parse_tool_calls(text: str, known: tuple[str, ...] = KNOWN_TOOLS) -> tuple[list[dict], list[str]]:
    """(calls, errors). Each call is {"name", "arguments", "form"}; each error is a short sentence
    naming the form that failed. Never raises, whatever the text."""
    if not isinstance(text, str):
        return [], ["model output is not text"]
    calls, errors = [], []

    def take(items, form, convert):
        for item in items:
            try:
                calls.extend(convert(item))
            except ParseError as e:
                errors.append(f"{form}: {e}")
            except (RecursionError, MemoryError):
                errors.append(f"{form}: too large or too deeply nested")

    def fenced(blob):
        try:
            return _calls_from_json(blob, "fenced")
        except ParseError as e:
            try:
                return [dict(c, form="fenced") if c["form"] == "python" else c
                        for c in _python_calls(blob, known, strict=False)]
            except ParseError:
                raise e from None

    def function(match):
        name, blob = match
        args = decode_json(blob) if blob.strip() else {}
        return [{"name": name, "arguments": _arguments(args), "form": "function"}]

    if (found := TAGGED.findall(text)):
        take(found, "tagged", lambda b: _calls_from_json(b, "tagged"))
    elif (found := FENCED.findall(text)):
        take(found, "fenced", fenced)
    elif (found := FUNCTION.findall(text)):
        take(found, "function", function)
    elif (found := _bare_json_calls(text)):
        calls = found
    elif (found := _python_call_spans(text, known)):
        take(found, "python", lambda s: _python_calls(s, known, strict=True))
    elif (found := TOOL_USE.findall(text)):
        take(found, "tool_use", lambda b: [_tool_use(b)])
    if len(calls) > MAX_CALLS:
        errors.append(f"{len(calls) - MAX_CALLS} calls beyond the limit of {MAX_CALLS} per message were ignored")
        calls = calls[:MAX_CALLS]
    return calls, errors


def _python_call_spans(text: str, known: tuple[str, ...]) -> list[str]:
    """Substrings that look like a call of a known tool (optionally inside [...], or Gemma's
    [print(]default_api.NAME(...)[)]): balanced parentheses from the match on, skipping over string
    literals."""
    spans, last_end, whole = [], 0, True
    names = "|".join(map(re.escape, known))
    for m in re.finditer(rf"(?:\bprint\s*\(\s*)?((?:\bdefault_api\s*\.\s*)?\b(?:{names})\s*\()", text):
        if m.start() < last_end:  # inside the previous call (e.g. a tool name in an email body)
            continue
        start = m.start() if whole else m.start(1)
        if (end := _balanced_end(text, start)) < 0 and m.start(1) > start:
            # print( left open: read the call alone, here and from now on (one failed scan to the end only)
            start, end, whole = m.start(1), _balanced_end(text, m.start(1)), False
        if end < 0:
            break  # never closed: every later match is inside this one, so stop (keeps the scan linear)
        spans.append(text[start:end])
        last_end = end
        if len(spans) > MAX_CALLS:
            break
    return spans


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
