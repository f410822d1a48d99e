"""Shared-prefix caching: rows of one batch whose prompts begin alike (the teacher's constitution
system prompt, a scenario's system prompt) prefill that prefix once instead of once per row.

    python bench/shared_prefix.py [--workload prompted|teacher] [--model 67m] [--rows 4] [--tokens 8]
                                  [--repeats 3] [--quick]

Workloads: `prompted` is the "prompted" variant of chat_eval and the agent stage: one persona's
constitution as the system prompt (folded into the first user turn by the Gemma template) and a
different question per row (~720 tokens per row, ~690 shared). `teacher` is the teacher stage's:
the same plus the reasoning prefill, which repeats the traits after the question, so only about
half of each ~1320-token row is shared. A few greedy tokens each, so prefill dominates. Side by
side in one run on one loaded model: MlxEngine with and without prefix sharing, interleaved,
alternating which goes first; ratio of medians. Greedy, so both give the same text (checked).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from localchar.blas import maybe_reexec

maybe_reexec([sys.executable, *sys.argv])  # the same BLAS as the CLI uses, before MLX loads

from localchar.backends.mlx import MlxEngine  # noqa: E402
from localchar.config import Sampling  # noqa: E402
from localchar.paths import DATA  # noqa: E402
from localchar.personas import load_persona  # noqa: E402
from localchar.stages.teacher import reasoning_prefill, teacher_system  # noqa: E402
from localchar.tiny import build_tiny  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="prompted", choices=["prompted", "teacher"])
    ap.add_argument("--model", default="67m", choices=["tiny", "67m"])
    ap.add_argument("--rows", type=int, default=4, help="questions in the batch")
    ap.add_argument("--tokens", type=int, default=8, help="greedy tokens per row")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--persona", default="goodness")
    ap.add_argument("--quick", action="store_true", help="the tiny model, 1 repeat")
    a = ap.parse_args()
    if a.quick:
        a.model, a.repeats = "tiny", 1
    persona = load_persona(a.persona)
    questions = [json.loads(line)["prompt"] for line in (DATA / "prompts" / "train.jsonl").read_text().splitlines()]
    chats = [[{"role": "system", "content": teacher_system(persona, "Gemma")}, {"role": "user", "content": q}]
             for q in questions[:a.rows]]
    prefills = [reasoning_prefill(persona)] * len(chats) if a.workload == "teacher" else None
    sampling = Sampling(temperature=0.0, max_tokens=a.tokens)
    with tempfile.TemporaryDirectory() as d:
        engine = MlxEngine(build_tiny(Path(d) / "m", shape=a.model))
        for share in (False, True):  # warm-up: first calls compile
            engine.kv_reuse = share
            engine.generate([c[:1] + [{"role": "user", "content": "hi"}] for c in chats[:2]],
                            Sampling(temperature=0.0, max_tokens=2), seed=0)
        secs, texts, prefilled = {False: [], True: []}, {}, {}
        for k in range(a.repeats):
            for share in ((False, True) if k % 2 == 0 else (True, False)):
                engine.kv_reuse = share
                t0 = time.perf_counter()
                texts[share] = engine.generate(chats, sampling, seed=0, prefills=prefills)
                secs[share].append(time.perf_counter() - t0)
                prefilled[share] = sum(engine.last_prefilled)
    prompt = sum(p for p, _ in engine.last_usage)
    on, off = statistics.median(secs[True]), statistics.median(secs[False])
    print(f"{a.workload} workload, {a.model} model, {len(chats)} rows, {prompt // len(chats)} prompt tokens per row, "
          f"{a.tokens} greedy tokens")
    print(f"shared-prefix caching is {off / on:.2f}x prefilling every row (target >= 1.5x; prefilled "
          f"{prefilled[True]} of {prompt} prompt tokens; {off:.1f} s vs {on:.1f} s here, median of {a.repeats}; "
          f"same text: {texts[True] == texts[False]})")


if __name__ == "__main__":
    main()
