"""The tool-call parser on hostile replies: an earlier revision's parser and the current one, side by
side in one process, on the inputs that made the old one slow or raise (issue Step 9). Prints each
one's seconds, the ratio and what each returned.

    PYTHONPATH=. python bench/parser_hostile.py [--old 7d0b85c]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "<tool_call>x + 100k spaces + y": "<tool_call>x" + " " * 100_000 + "y",
    "<function=send_email>x + 100k spaces + y": "<function=send_email>x" + " " * 100_000 + "y",
    "'{\"a\":' * 900 + a 98k-item list": '{"a":' * 900 + "[" + "1," * 98_000 + "1]",
    "'{' * 100k": "{" * 100_000,
    "5000-digit int in a tagged call": '<tool_call>{"name": "read_email", "arguments": {"email_id": '
                                       + "9" * 5000 + "}}</tool_call>",
}


def old_parser(rev: str):
    src = subprocess.run(["git", "show", f"{rev}:localchar/agent/parser.py"], capture_output=True, text=True,
                         check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_parser.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_parser", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.parse_tool_calls


def timed(f, text):
    t0 = time.perf_counter()
    try:
        calls, _ = f(text)
        what = f"{len(calls)} calls"
    except Exception as e:  # the old parser could raise; that is what is measured
        what = f"raises {type(e).__name__}"
    return time.perf_counter() - t0, what


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="7d0b85c", help="git revision of the parser to compare against")
    args = ap.parse_args()
    sys.set_int_max_str_digits(4300)  # Python's default limit, as a model reply meets it
    old = old_parser(args.old)
    from localchar.agent.parser import parse_tool_calls as new

    print(f"{'input':44s} {'old s':>8s} {'new s':>8s} {'old/new':>8s}  old -> new")
    for name, text in CASES.items():
        a, ra = timed(old, text)
        b, rb = timed(new, text)
        print(f"{name:44s} {a:8.3f} {b:8.3f} {a / max(b, 1e-6):8.0f}  {ra} -> {rb}")


if __name__ == "__main__":
    main()
