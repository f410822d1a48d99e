"""Sequential mlx-lm `stream_generate` (one prompt at a time) against our batched decoder
(`batched.decode`, the path every stage uses), greedy, side by side in one run: the two are
interleaved, each repeat alternating which goes first, and the ratio is of median throughputs.
Absolute tok/s are printed only as context (these machines are shared and noisy).

    python bench/generate_mlx.py [--models tiny 67m] [--rows 4 16] [--tokens 64] [--repeats N] [--quick]

The sequential baseline decodes `--seq-sample` of the prompts (its per-token rate does not depend
on how many prompts there are); the batched decoder decodes all of them in one batch. Repeats
default to 5 on the tiny model and 2 on the 67M one (about 2.5 minutes in all here). Both models
are built locally (localchar/tiny.py: the 6-layer test model and the 67M "67m" shape).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from localchar.blas import maybe_reexec

maybe_reexec([sys.executable, *sys.argv])  # the same BLAS as the CLI uses, before MLX loads

from mlx_lm import load, stream_generate  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402

from localchar.backends import batched  # noqa: E402
from localchar.tiny import build_tiny  # noqa: E402

TOPICS = ["the sea", "tea", "a lighthouse", "the moon", "trains", "bread", "winter", "a garden",
          "music", "maps", "rain", "bees", "a library", "glass", "rivers", "clocks"]


def prompts_for(tok, n):
    return [tok.apply_chat_template([{"role": "user", "content": f"Question {i}: tell me about {TOPICS[i % 16]}."}],
                                    add_generation_prompt=True) for i in range(n)]


def sequential(model, tok, prompts, tokens, sampler):
    """(generated tokens, seconds, texts), one prompt at a time through mlx-lm."""
    n, texts = 0, []
    t0 = time.perf_counter()
    for p in prompts:
        text = ""
        for r in stream_generate(model, tok, p, max_tokens=tokens, sampler=sampler):
            text += r.text
        n += r.generation_tokens
        texts.append(text)
    return n, time.perf_counter() - t0, texts


def batch(model, tok, prompts, tokens, sampler):
    stats = {}
    t0 = time.perf_counter()
    texts = batched.decode(model, tok, prompts, tokens, sampler, stats=stats)
    return sum(stats["completion_tokens"]), time.perf_counter() - t0, texts


def bench(path, rows, tokens, repeats, seq_sample):
    model, tok = load(str(path))
    sampler = make_sampler(0.0)
    batch(model, tok, prompts_for(tok, 2), 4, sampler)  # warm-up (first calls compile)
    sequential(model, tok, prompts_for(tok, 1), 4, sampler)
    out = []
    for n in rows:
        prompts = prompts_for(tok, n)
        seq_prompts = prompts[:min(n, seq_sample)]
        rates = {"seq": [], "batch": []}
        for k in range(repeats):
            order = ("seq", "batch") if k % 2 == 0 else ("batch", "seq")
            for which in order:
                if which == "seq":
                    ntok, sec, seq_texts = sequential(model, tok, seq_prompts, tokens, sampler)
                else:
                    ntok, sec, batch_texts = batch(model, tok, prompts, tokens, sampler)
                rates[which].append(ntok / sec)
        same = sum(a == b for a, b in zip(seq_texts, batch_texts))
        med = {k: statistics.median(v) for k, v in rates.items()}
        out.append((n, med, same, len(seq_texts)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny", "67m"], choices=["tiny", "67m"])
    ap.add_argument("--rows", nargs="+", type=int, default=[4, 16], help="prompts per batch")
    ap.add_argument("--tokens", type=int, default=64, help="greedy tokens per prompt")
    ap.add_argument("--repeats", type=int, help="default: 5 on the tiny model, 2 on the 67M model")
    ap.add_argument("--seq-sample", type=int, default=2, help="prompts the sequential baseline decodes")
    ap.add_argument("--quick", action="store_true", help="the tiny model only, 4 prompts, 1 repeat")
    a = ap.parse_args()
    if a.quick:
        a.models, a.rows, a.repeats = ["tiny"], [4], 2
    with tempfile.TemporaryDirectory() as d:
        for shape in a.models:
            path = build_tiny(Path(d) / shape, shape=shape)
            repeats = a.repeats or (5 if shape == "tiny" else 2)
            for n, med, same, checked in bench(path, a.rows, a.tokens, repeats, a.seq_sample):
                print(f"{shape:4s} {n:2d} prompts x {a.tokens} greedy tokens: batched.decode is "
                      f"{med['batch'] / med['seq']:.1f}x sequential mlx-lm generate "
                      f"({med['batch']:.0f} vs {med['seq']:.1f} tok/s here, median of {repeats}; "
                      f"same text on {same}/{checked} checked rows)")


if __name__ == "__main__":
    main()
