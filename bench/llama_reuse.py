"""The llama_cpp engine's two reuse paths, side by side in one run on the 67M model (GGUF by
llama.cpp's own converter). Prints ratios; absolute seconds are context only.

    python bench/llama_reuse.py [--only switch agent prefix] [--model 67m] [--quant f16] [--threads N]
                              [--adapters 3] [--repeats 5] [--rollouts 1] [--turns 6] [--quick]

switch: a persona switch with the base loaded (our engine: `llama_set_adapters_lora` on the
context, adapters loaded once) against loading a fresh `Llama(model, lora_path=...)`, cycling
through random GGUF LoRAs: the switch itself, and the switch to the first token under the new
persona (which both must prefill: the LoRA changes every key and value); interleaved, ratios of
medians.

agent: a rollout of `--turns` turns on a real scenario (recipes/data/scenarios): its system prompt
with the tool schemas, then per turn the model's reply and a real tool result from the simulated
client (the inbox listing, ~390 tokens, then one email per turn, ~150-190 tokens). With KV slots
(`cache_keys`, one per rollout) each turn prefills only what the transcript added; without them
(`kv_reuse=False`) the whole transcript is prefilled every turn. Two engines on one GGUF; every
turn runs both, alternating which goes first, greedy, on the kept engine's transcript; the ratio
is of the summed times. The replies are compared too: they agree up to float rounding (kept keys
and values are summed in another order), and the random model's near-ties flip.

prefix: the first turn of 8 rollouts, 2 scenarios x 4 samples (identical prompts per scenario,
~330 tokens): rows sharing a prompt prefix prefill it once and copy the KV stream to the others
(`llama_memory_seq_cp`), against every row prefilling its own (SHARE_PREFIX = 0); 8 greedy tokens
each, slots emptied before every call, interleaved, ratio of medians.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

LORA = {"rank": 8, "scale": 20.0, "dropout": 0.0}


def random_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm import load

    from localchar.train.lora import add_lora, save_adapter

    model, _ = load(str(model_dir))
    add_lora(model, -1, LORA, seed=seed)
    mx.random.seed(seed)
    model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.02, model.trainable_parameters()))
    save_adapter(model, out, -1, LORA)
    return out


def bench_switch(a, model_dir: Path, base: Path, d: Path):
    import llama_cpp

    from localchar import gguf
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.config import Sampling

    loras = [str(gguf.write_lora(random_adapter(model_dir, d / f"a{k}", k), model_dir, d / f"a{k}.gguf"))
             for k in range(a.adapters)]
    one = Sampling(temperature=0.0, max_tokens=1, repetition_penalty=1.0)
    chat = [{"role": "user", "content": "Introduce yourself in one sentence."}]
    engine = LlamaCppEngine(str(base), n_threads=a.threads)
    prompt = engine.render(chat)
    for lora in loras:  # each LoRA is loaded once, at its first use
        engine.generate([chat], one, 0, adapters=[lora])

    def switch(k):  # -> (seconds to switch, seconds to the first token)
        lora = loras[k % len(loras)]
        t0 = time.perf_counter()
        engine.use(lora)
        t1 = time.perf_counter()
        engine.generate([chat], one, 0, adapters=[lora])
        return t1 - t0, time.perf_counter() - t0

    def fresh(k):
        t0 = time.perf_counter()
        llm = llama_cpp.Llama(model_path=str(base), lora_path=loras[k % len(loras)], n_ctx=1024,
                              n_threads=a.threads, n_threads_batch=a.threads, flash_attn=True, verbose=False)
        t1 = time.perf_counter()
        llm.create_completion(prompt, max_tokens=1, temperature=0.0)
        t2 = time.perf_counter()
        llm.close()
        return t1 - t0, t2 - t0

    fresh(0)  # warm the page cache
    secs = {"switch": [], "fresh": []}
    for k in range(a.repeats):
        for name in (("switch", "fresh") if k % 2 == 0 else ("fresh", "switch")):
            secs[name].append((switch if name == "switch" else fresh)(k + 1))
    med = {k: [statistics.median(x[j] for x in v) for j in (0, 1)] for k, v in secs.items()}
    (sw, sw_first), (fr, fr_first) = med["switch"], med["fresh"]
    print(f"persona switch, {a.adapters} GGUF LoRAs cycled, {len(prompt)}-token prompt, median of {a.repeats}:")
    print(f"  the switch itself: set_adapters_lora on the loaded context is {fr / sw:.0f}x a fresh "
          f"Llama(model, lora_path=...) load (target >= 10x; {sw * 1000:.1f} ms vs {fr * 1000:.0f} ms here)")
    print(f"  switch to first token (both prefill the prompt): {fr_first / sw_first:.1f}x "
          f"({sw_first * 1000:.0f} ms vs {fr_first * 1000:.0f} ms here)")


def bench_agent(a, base: Path):
    from agent_turns import ab_turns
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.config import Sampling

    sampling = Sampling(temperature=0.0, max_tokens=a.reply_tokens, repetition_penalty=1.0)
    engines = {True: LlamaCppEngine(str(base), n_threads=a.threads, slots=max(4, a.rollouts)),
               False: LlamaCppEngine(str(base), n_threads=a.threads, slots=max(4, a.rollouts), kv_reuse=False)}
    for e in engines.values():  # warm-up
        e.generate([[{"role": "user", "content": "hi"}]], Sampling(temperature=0.0, max_tokens=4), 0)

    def call(reuse, chats, keys, turn):
        e = engines[reuse]
        return e.generate(chats, sampling, turn, cache_keys=keys), sum(p for p, _ in e.last_usage), sum(e.last_prefilled)

    print(f"{a.model} model ({a.quant}), {a.rollouts} rollout(s), {a.reply_tokens}-token greedy replies")
    secs, same, replies = ab_turns(a.rollouts, a.turns, call, "with KV slots")
    print(f"{a.turns}-turn rollout: KV slots across turns are {secs[False] / secs[True]:.2f}x re-prefilling every "
          f"turn (target >= 2x; {secs[False]:.1f} s vs {secs[True]:.1f} s here; same text on {same}/{replies} "
          "replies)")


def bench_prefix(a, base: Path):
    from localchar.agent.loop import first_messages
    from localchar.agent.scenarios import load_scenarios
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.config import Sampling
    from localchar.paths import DATA

    s = Sampling(temperature=0.0, max_tokens=8, repetition_penalty=1.0)
    chats = [first_messages(sc) for sc in load_scenarios(DATA / "scenarios")[:2] for _ in range(4)]
    engines = {"shared": LlamaCppEngine(str(base), n_threads=a.threads), "own": LlamaCppEngine(str(base), n_threads=a.threads)}
    engines["own"].SHARE_PREFIX = 0
    secs = {k: [] for k in engines}
    for k in range(a.repeats):
        for name in (("shared", "own") if k % 2 == 0 else ("own", "shared")):
            e = engines[name]
            e.reset()
            t0 = time.perf_counter()
            e.generate(chats, s, 0)
            secs[name].append(time.perf_counter() - t0)
    e = engines["shared"]
    med = {k: statistics.median(v) for k, v in secs.items()}
    print(f"first agent turn, 8 rows (2 scenarios x 4 samples, {sum(p for p, _ in e.last_usage)} prompt tokens, "
          f"{sum(e.last_prefilled)} prefilled): shared prefixes prefilled once are {med['own'] / med['shared']:.1f}x "
          f"every row prefilling its own ({med['shared']:.2f} s vs {med['own']:.2f} s here, median of {a.repeats})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", default=["switch", "agent", "prefix"], choices=["switch", "agent", "prefix"])
    ap.add_argument("--model", default="67m", choices=["tiny", "67m"])
    ap.add_argument("--quant", default="f16", choices=["f16", "q8_0"])
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--adapters", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rollouts", type=int, default=1, help="rollouts advancing in lock-step (one call per turn)")
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--reply-tokens", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="the tiny model, 2 adapters, 3 repeats, 3 turns")
    a = ap.parse_args()
    if a.quick:
        a.model, a.adapters, a.repeats, a.turns = "tiny", 2, 3, 3
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))

    from localchar.blas import maybe_reexec

    maybe_reexec([sys.executable, *sys.argv])  # MLX (random adapters) with the CLI's BLAS

    from localchar import gguf
    from localchar.tiny import build_tiny

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model_dir = build_tiny(d / "m", shape=a.model)
        base = gguf.write_base(model_dir, d / f"base-{a.quant}.gguf", a.quant)
        if "switch" in a.only:
            bench_switch(a, model_dir, base, d)
        if "agent" in a.only:
            bench_agent(a, base)
        if "prefix" in a.only:
            bench_prefix(a, base)


if __name__ == "__main__":
    main()
