"""Resumable batched generation: rows in a fixed order, fixed batches, a seed per batch derived
from (seed, stage key, first row id), flushed JSONL. A resumed run equals an uninterrupted one."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .progress import progress
from .store import JsonlAppender, derive_seed


def generate_rows(engine, rows: list[dict], sampling, seed: int, key: str, out: Path, desc: str,
                  finish: Callable[[dict, str], dict | None] = lambda row, text: {**row, "response": text},
                  batch_size: int | None = None) -> dict:
    """Each input row needs "id" and "messages"; optional "prefill", and "adapter" (a path or None
    for the base model; rows without the key use the adapter the engine was opened with).
    `finish(row, text)` builds the output row (None drops it; dropped ids go to a sidecar
    <out>.dropped.jsonl so that a resume does not redo them and readers of `out` never see them). Rows are batched with others of similar prompt length, since a
    batch pays for its longest prompt. Returns the tokens this call prefilled and generated (from
    the engine's `last_usage`) for the run's "where the time goes" table."""
    bs = batch_size or sampling.batch_size
    rows = sorted(rows, key=lambda r: sum(len(m["content"]) for m in r["messages"]) + len(r.get("prefill", "")))
    dropped_path = out.with_name(out.stem + ".dropped.jsonl")
    engine = Counted(engine)
    with JsonlAppender(out) as sink, JsonlAppender(dropped_path) as dropped, progress(desc, total=len(rows)) as bar:
        for start in range(0, len(rows), bs):
            batch = rows[start:start + bs]
            if all(r["id"] in sink.done or r["id"] in dropped.done for r in batch):
                bar.advance(len(batch))
                continue
            texts = engine.generate([r["messages"] for r in batch], sampling,
                                    derive_seed(seed, key, batch[0]["id"]),
                                    prefills=[r.get("prefill", "") for r in batch],
                                    adapters=[r["adapter"] for r in batch] if "adapter" in batch[0] else None)
            kept, gone = [], []
            for r, t in zip(batch, texts):
                o = finish(r, t)
                (kept.append(o) if o is not None else gone.append({"id": r["id"], "completion": t}))
            sink.write(kept)
            dropped.write(gone)
            bar.advance(len(batch))
    return engine.tokens


class Counted:
    """An engine whose generate calls add up the tokens they prefilled and generated (from the
    engine's `last_usage`), for stages that call the engine themselves; everything else passes
    through."""

    def __init__(self, engine):
        self._engine = engine
        self.tokens = {"prefill": 0, "generated": 0}

    def generate(self, *args, **kw):
        out = self._engine.generate(*args, **kw)
        for p, c in getattr(self._engine, "last_usage", None) or []:
            self.tokens["prefill"] += p
            self.tokens["generated"] += c
        return out

    def __getattr__(self, name):
        return getattr(self._engine, name)
