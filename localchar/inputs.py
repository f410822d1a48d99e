"""Reading what the user gives us, in one place. Every reader checks that the path is what it should
be (a regular file, not a directory, device or FIFO; a directory), bounds the bytes it will read,
decodes UTF-8 and parses, and turns any failure into a LocalcharError that names the file and what
is wrong (with the line, byte offset or field). JSONL rows are checked against a small row schema:
field name -> the types it may hold."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any, Iterator

from .errors import LocalcharError

MAX_TEXT = 512 << 20      # bytes of one text input (recipe, constitution, prompts, scenario, JSON config)
MAX_LINE = 16 << 20       # bytes of one JSONL row

# Row schemas: field -> allowed types. `None` in the tuple: the field may be absent.
STR = (str,)
ID = (str, int)
_TYPE_NAMES = {object: "anything", str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "an object", type(None): "null"}


def _kind(v: Any) -> str:
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def regular_file(path: Path | str, what: str = "") -> Path:
    """`path`, if it is a regular file (symlinks followed); else a one-line error."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise LocalcharError(f"{label}: file not found") from None
    except OSError as e:
        raise LocalcharError(f"{label}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise LocalcharError(f"{label}: is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise LocalcharError(f"{label}: not a regular file (a device, FIFO or socket); give a file")
    return path


def directory(path: Path | str, what: str = "") -> Path:
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise LocalcharError(f"{label}: directory not found")
    if not path.is_dir():
        raise LocalcharError(f"{label}: is a file, expected a directory")
    return path


def _bounded(path: Path | str, limit: int) -> Path:
    path = regular_file(path)
    size = path.stat().st_size
    if size > limit:
        raise LocalcharError(f"{path}: {size} bytes, over the {limit >> 20} MiB this input may have")
    return path


def read_bytes(path: Path | str, limit: int = MAX_TEXT) -> bytes:
    path = _bounded(path, limit)
    try:
        return path.read_bytes()
    except OSError as e:
        raise LocalcharError(f"{path}: cannot read ({e.strerror})") from None


def decode(data: bytes, where: str, base: int = 0) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LocalcharError(f"{where}: not UTF-8 text (byte offset {base + e.start}: "
                             f"0x{data[e.start]:02x}); save it as UTF-8") from None


def read_text(path: Path | str, limit: int = MAX_TEXT) -> str:
    return decode(read_bytes(path, limit), str(path))


def read_toml(path: Path | str) -> dict:
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LocalcharError(f"{path}: invalid TOML: {e}") from None


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def loads_json(text: str, where: str) -> Any:
    """Strict JSON: NaN / Infinity are refused, and numbers too long to convert are an error, not a
    traceback."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise LocalcharError(f"{where}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # int digits limit, our constants hook, absurd nesting
        raise LocalcharError(f"{where}: invalid JSON: {str(e).splitlines()[0][:120]}") from None


def read_json(path: Path | str, limit: int = MAX_TEXT) -> Any:
    return loads_json(read_text(path, limit), str(path))


def check_row(row: Any, schema: dict, where: str) -> dict:
    if not isinstance(row, dict):
        raise LocalcharError(f"{where}: expected an object (a table), got {_kind(row)}")
    for key, types in schema.items():
        if key not in row:
            if None in types:
                continue
            raise LocalcharError(f"{where}: missing field '{key}'")
        v = row[key]
        allowed = tuple(t for t in types if t is not None)
        if object in allowed:
            continue
        if isinstance(v, bool) and bool not in allowed or not isinstance(v, allowed):
            names = " or ".join(_TYPE_NAMES[t] for t in allowed)
            raise LocalcharError(f"{where}: field '{key}': expected {names}, got {_kind(v)} ({json.dumps(v)[:40]})")
    return row


def iter_jsonl(path: Path | str, schema: dict | tuple = ()) -> Iterator[dict]:
    """Rows of a JSONL file. `schema`: field -> allowed types (see check_row), or a tuple of field
    names that must be present. Blank lines are skipped."""
    if isinstance(schema, tuple):
        schema = {k: (object,) for k in schema}
    path = _bounded(path, MAX_TEXT)
    offset = 0
    with path.open("rb") as f:
        for n, raw in enumerate(iter(lambda: f.readline(MAX_LINE + 1), b""), 1):
            if len(raw) > MAX_LINE:
                raise LocalcharError(f"{path}:{n}: line over {MAX_LINE >> 20} MiB")
            line = decode(raw, f"{path}:{n}", offset)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_constant=_no_constants)
            except json.JSONDecodeError as e:
                raise LocalcharError(f"{path}:{n}: malformed JSON line ({e.msg})") from None
            except (ValueError, RecursionError) as e:
                raise LocalcharError(f"{path}:{n}: malformed JSON line ({str(e).splitlines()[0][:120]})") from None
            yield check_row(row, schema, f"{path}:{n}")

