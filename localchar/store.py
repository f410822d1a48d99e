"""Atomic writes, resumable JSONL, content hashing."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    from .inputs import read_json as read

    return read(path)


def read_jsonl(path: Path, required: tuple[str, ...] | dict = ()) -> list[dict]:
    """Read a JSONL file; a malformed line, a missing field or one of the wrong type is a
    LocalcharError naming the file, the line and the field (localchar/inputs.py)."""
    return list(iter_jsonl(path, required))


def iter_jsonl(path: Path, required: tuple[str, ...] | dict = ()) -> Iterator[dict]:
    from .inputs import iter_jsonl as rows

    return rows(path, required)


class JsonlAppender:
    """Append-only JSONL with stable row ids, flushed per write, so a crashed stage resumes.

    A torn last line (crash mid-write) is dropped on open.
    """

    def __init__(self, path: Path, id_key: str = "id"):
        self.path = Path(path)
        self.id_key = id_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        if self.path.exists():
            good = []
            for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
                if not line.endswith("\n"):
                    break
                try:
                    self.rows.append(json.loads(line))
                    good.append(line)
                except json.JSONDecodeError:
                    break
            atomic_write_text(self.path, "".join(good))
        self.done = {r[id_key] for r in self.rows}
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        for r in rows:
            if r[self.id_key] in self.done:
                continue
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
            self.rows.append(r)
            self.done.add(r[self.id_key])
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of every file under a directory (relative names included)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any parts (seed, key, row id...): reruns and resumes get the same one."""
    return int(sha256_json([str(p) for p in parts])[:8], 16) & 0x7FFFFFFF
