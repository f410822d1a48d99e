"""The `corpus` teacher: in-character answers read from a JSONL file instead of generated.

tiny-all uses it (there is no real teacher model offline); users can bring their own persona data
this way. Rows: {"id": <train prompt id>, "response": "..."} in <corpus dir>/<persona>.jsonl.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LocalcharError
from ..store import read_jsonl


class CorpusEngine:
    name = "corpus"

    def __init__(self, corpus_dir: Path, persona: str):
        path = Path(corpus_dir) / f"{persona}.jsonl"
        if not path.exists():
            raise LocalcharError(f"{path}: no corpus for persona '{persona}' (teacher.engine = 'corpus')")
        self.path = path
        self.answers: dict[str, list[str]] = {}
        for row in read_jsonl(path, {"id": (str, int), "response": (str,)}):
            self.answers.setdefault(row["id"], []).append(row["response"])

    def answer(self, prompt_id: str, sample: int) -> str | None:
        got = self.answers.get(prompt_id)
        return got[sample % len(got)] if got else None
