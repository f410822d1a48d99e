"""KV-cache reuse across agent turns: each turn of a rollout re-renders the whole transcript; with
reuse (MlxEngine with `cache_keys`) only what the transcript added since the last call is
prefilled, without it all of it is. Greedy, so both produce the same text (checked).

    python bench/agent_kv.py [--model 67m] [--rollouts 1] [--turns 6] [--reply-tokens 32] [--quick]

The transcript is a real scenario's (recipes/data/scenarios): its system prompt with the tool
schemas, then per turn the model's reply and a real tool result from the simulated client (the
inbox listing, ~390 tokens, then one email per turn, ~150-190 tokens). Replies are the random
model's own greedy text. Side by side in one run: every turn runs both ways, alternating which
goes first, on one loaded model; the ratio is of the summed times. Absolute seconds are printed
only as context.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from localchar.blas import maybe_reexec

maybe_reexec([sys.executable, *sys.argv])  # the same BLAS as the CLI uses, before MLX loads

from agent_turns import ab_turns  # noqa: E402
from localchar.backends.mlx import MlxEngine  # noqa: E402
from localchar.config import Sampling  # noqa: E402
from localchar.tiny import build_tiny  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="67m", choices=["tiny", "67m"])
    ap.add_argument("--rollouts", type=int, default=1, help="rollouts advancing in lock-step (one batch)")
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--reply-tokens", type=int, default=32, help="max tokens per reply")
    ap.add_argument("--quick", action="store_true", help="the tiny model, 2 rollouts")
    a = ap.parse_args()
    if a.quick:
        a.model, a.rollouts = "tiny", 2
    sampling = Sampling(temperature=0.0, max_tokens=a.reply_tokens)
    with tempfile.TemporaryDirectory() as d:
        engine = MlxEngine(build_tiny(Path(d) / "m", shape=a.model))
        for reuse in (False, True):  # warm-up: first calls compile
            engine.kv_reuse = reuse
            engine.generate([[{"role": "user", "content": "hi"}]], Sampling(temperature=0.0, max_tokens=4), 0,
                            cache_keys=["warm"] if reuse else None)
        engine.forget(["warm"])

        def call(reuse, chats, keys, turn):
            engine.kv_reuse = reuse
            texts = engine.generate(chats, sampling, seed=turn, cache_keys=keys if reuse else None)
            return texts, sum(p for p, _ in engine.last_usage), sum(engine.last_prefilled)

        print(f"{a.model} model, {a.rollouts} rollout(s), {a.reply_tokens}-token greedy replies")
        secs, same, replies = ab_turns(a.rollouts, a.turns, call, "with reuse")
    print(f"{a.turns}-turn rollout: KV reuse across turns is {secs[False] / secs[True]:.2f}x re-prefilling every "
          f"turn (target >= 2x; {secs[False]:.0f} s vs {secs[True]:.0f} s here; same text on {same}/{replies} replies)")


if __name__ == "__main__":
    main()
