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
import time
from pathlib import Path

from localchar.blas import maybe_reexec

maybe_reexec([sys.executable, *sys.argv])  # the same BLAS as the CLI uses, before MLX loads

from localchar.agent.loop import first_messages, tool_turn  # noqa: E402
from localchar.agent.scenarios import load_scenarios  # noqa: E402
from localchar.agent.tools import EmailClient  # noqa: E402
from localchar.backends.mlx import MlxEngine  # noqa: E402
from localchar.config import Sampling  # noqa: E402
from localchar.paths import DATA  # noqa: E402
from localchar.tiny import build_tiny  # noqa: E402


def tool_result(client, scenario, turn: int) -> str:
    """What a competent agent would read next: the inbox, then each email in turn."""
    if turn == 0:
        return client.execute("list_inbox", {})
    emails = scenario["emails"]
    return client.execute("read_email", {"email_id": emails[(turn - 1) % len(emails)]["id"]})


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
        scenarios = load_scenarios(DATA / "scenarios")[:a.rollouts]
        for reuse in (False, True):  # warm-up: first calls compile
            engine.kv_reuse = reuse
            engine.generate([[{"role": "user", "content": "hi"}]], Sampling(temperature=0.0, max_tokens=4), 0,
                            cache_keys=["warm"] if reuse else None)
        engine.forget(["warm"])
        clients = [EmailClient(s) for s in scenarios]
        chats = [first_messages(s) for s in scenarios]
        keys = [f"r{i}" for i in range(len(chats))]
        secs = {False: 0.0, True: 0.0}
        same = 0
        print(f"{a.model} model, {len(chats)} rollout(s), {a.reply_tokens}-token greedy replies")
        print("turn  prompt tokens  prefilled with reuse")
        for turn in range(a.turns):
            out = {}
            for reuse in ((False, True) if turn % 2 == 0 else (True, False)):
                engine.kv_reuse = reuse
                t0 = time.perf_counter()
                out[reuse] = engine.generate(chats, sampling, seed=turn, cache_keys=keys if reuse else None)
                secs[reuse] += time.perf_counter() - t0
                if reuse:
                    prefilled, prompt = sum(engine.last_prefilled), sum(p for p, _ in engine.last_usage)
            same += out[True] == out[False]
            print(f"{turn + 1:4d}  {prompt:13d}  {prefilled:20d}")
            for i, (c, text) in enumerate(zip(chats, out[True])):
                c += [{"role": "assistant", "content": text}, *tool_turn([tool_result(clients[i], scenarios[i], turn)])]
    print(f"{a.turns}-turn rollout: KV reuse across turns is {secs[False] / secs[True]:.2f}x re-prefilling every "
          f"turn (target >= 2x; {secs[False]:.0f} s vs {secs[True]:.0f} s here; same text on {same}/{a.turns} turns)")


if __name__ == "__main__":
    main()
