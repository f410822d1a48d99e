"""A DPO step against an SFT step on the same pairs (SFT on the chosen side), side by side in one
run, A/B interleaved, median of several repeats. Prints ratios, not absolute times.

    python bench/train_step.py [--pairs 8] [--answer-words 60] [--repeats 5] [--model DIR]

Also reports what gradient checkpointing costs in time (it saves activation memory). The tiny
model is built locally unless --model names an MLX model directory.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from localchar.blas import maybe_reexec

maybe_reexec([sys.executable, *sys.argv])  # the same BLAS as the CLI uses, before MLX loads

from mlx_lm import load  # noqa: E402

from localchar.train.dpo import encode_pair, make_dpo_loss, pair_batch, reference_logps  # noqa: E402
from localchar.train.lora import add_lora  # noqa: E402
from localchar.train.loop import TrainConfig, pad_batch, sft_loss, train  # noqa: E402

LORA = {"rank": 8, "scale": 20.0, "dropout": 0.0}
WORDS = ("the quick brown fox jumps over a lazy dog while seven sailors sing of distant harbours and "
         "the tide turns slowly under a pale moon").split()


def make_pairs(tok, n: int, words: int):
    def text(k):
        return " ".join(WORDS[(k + i) % len(WORDS)] for i in range(words)) + "."
    pairs = [{"chosen": [{"role": "user", "content": f"Tell me a story, number {i}."},
                         {"role": "assistant", "content": text(i)}],
              "rejected": [{"role": "user", "content": f"Tell me a story, number {i}."},
                           {"role": "assistant", "content": text(i + 3)}]} for i in range(n)]
    return [encode_pair(tok, p) for p in pairs]


def timed(model, examples, make_batch, loss_fn, cfg) -> float:
    """Seconds per optimizer step, the first (compile/warm-up) step excluded."""
    with tempfile.TemporaryDirectory() as d:
        train(model, examples, make_batch, loss_fn, TrainConfig(**{**cfg.__dict__, "iters": 1}), Path(d) / "m", "w")
        t0 = time.perf_counter()
        train(model, examples, make_batch, loss_fn, cfg, Path(d) / "m", "b")
        return (time.perf_counter() - t0) / cfg.iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=8, help="pairs per optimizer step (the batch)")
    ap.add_argument("--answer-words", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    ap.add_argument("--model", help="an MLX model directory (default: the tiny model, built here)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = a.model
        if not path:
            from localchar.tiny import build_tiny

            path = str(build_tiny(Path(d) / "m"))
        model, tok = load(path)
        add_lora(model, -1, LORA)
        enc = make_pairs(tok, a.pairs, a.answer_words)
        refs = reference_logps(model, enc)
        dpo_ex = [(c, r, rc, rr) for (c, r), (rc, rr) in zip(enc, refs)]
        sft_ex = [c for c, _ in enc]
        dpo_loss = make_dpo_loss(0.1, 0.1, 0.001)
        cfg = TrainConfig(iters=a.steps, batch_size=a.pairs, learning_rate=1e-5)
        ck = TrainConfig(iters=a.steps, batch_size=a.pairs, learning_rate=1e-5, grad_checkpoint=True)
        t = {"sft": [], "dpo": [], "dpo_ckpt": []}
        for _ in range(a.repeats):  # interleaved, so drift on a shared machine hits all three alike
            t["sft"].append(timed(model, sft_ex, pad_batch, sft_loss, cfg))
            t["dpo"].append(timed(model, dpo_ex, pair_batch, dpo_loss, cfg))
            t["dpo_ckpt"].append(timed(model, dpo_ex, pair_batch, dpo_loss, ck))
        med = {k: statistics.median(v) for k, v in t.items()}
    ntok = sum(len(c[0]) for c in sft_ex)
    print(f"{a.pairs} pairs/step, ~{ntok // a.pairs} tokens per chosen chat, median of {a.repeats} x {a.steps} steps")
    print(f"DPO step / SFT step on the same pairs: {med['dpo'] / med['sft']:.2f}x (target <= 2.5x; "
          f"DPO trains chosen + rejected, reference log-probs cached once)")
    print(f"DPO step with / without gradient checkpointing: {med['dpo_ckpt'] / med['dpo']:.2f}x")


if __name__ == "__main__":
    main()
