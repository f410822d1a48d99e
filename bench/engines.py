"""Generation engines side by side on one model: our MLX batched decoder, llama.cpp through
llama-cpp-python's own `Llama.create_completion` (one stream, f16 and q8_0 GGUFs), Hugging Face
`transformers` generate (fp32, torch CPU, one stream), and our llama_cpp engine one row at a time
(`slots=1`) and batched (`slots` = rows). Greedy, the same chat prompts for all.

    python bench/engines.py [--model 67m] [--prompts 4] [--rows 4 16] [--tokens 64] [--repeats 3]
                            [--threads N] [--skip mlx hf] [--quick]

Every repeat runs every engine, in a rotated order; the ratios are of median tokens/s, against raw
llama.cpp q8_0 (and ours against raw llama.cpp on the same GGUF). Absolute tok/s are context only
(these machines are shared and noisy). All engines get the same thread count (llama.cpp's batch
threads too, and torch's); both llama.cpp paths use flash attention. The model is built locally (localchar/tiny.py, "67m": Gemma-3-270M's
block x 12 layers) and converted to GGUF by llama.cpp's own converter.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TOPICS = ["the sea", "tea", "a lighthouse", "the moon", "trains", "bread", "winter", "a garden",
          "music", "maps", "rain", "bees", "a library", "glass", "rivers", "clocks"]


def chats_for(n):
    return [[{"role": "user", "content": f"Question {i}: tell me about {TOPICS[i % 16]}."}] for i in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="67m", choices=["tiny", "67m"])
    ap.add_argument("--prompts", type=int, default=4, help="prompts for the one-stream engines and MLX")
    ap.add_argument("--rows", nargs="+", type=int, default=[4, 16], help="rows per call of our batched engine")
    ap.add_argument("--tokens", type=int, default=64, help="greedy tokens per prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--skip", nargs="*", default=[], choices=["mlx", "hf"])
    ap.add_argument("--quick", action="store_true", help="1 repeat, 32 tokens, no MLX / transformers")
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.tokens, a.skip = 1, 32, ["mlx", "hf"]
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))  # MLX's BLAS (preloaded below)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

    from localchar.blas import maybe_reexec

    maybe_reexec([sys.executable, *sys.argv])  # the same BLAS as the CLI uses, before MLX loads

    import llama_cpp

    from localchar import gguf
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.config import Sampling
    from localchar.tiny import build_tiny

    T = a.threads
    greedy = Sampling(temperature=0.0, max_tokens=a.tokens, repetition_penalty=1.0)
    chats = chats_for(a.prompts)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model_dir = build_tiny(d / "m", shape=a.model)
        f16, q8 = d / "f16.gguf", d / "q8_0.gguf"
        gguf.write_base(model_dir, f16, "f16")
        gguf.quantize(f16, q8, "q8_0")

        runs = {}  # name -> () -> generated tokens

        def raw(path):
            # flash attention as in our engine (llama.cpp's "auto" picks it on a CPU; Llama's default is off)
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=T, n_threads_batch=T, flash_attn=True,
                                  verbose=False)
            ours = LlamaCppEngine(str(path), slots=1, n_threads=T)
            prompts = [ours.render(c) for c in chats]
            ours.close()

            def run():
                n = 0
                for p in prompts:
                    llm.reset()
                    r = llm.create_completion(p, max_tokens=a.tokens, temperature=0.0)
                    n += r["usage"]["completion_tokens"]
                return n
            return run

        def ours(path, slots, rows):
            e = LlamaCppEngine(str(path), slots=slots, n_threads=T, kv_reuse=False)
            cs = chats_for(rows)

            def run():
                e.generate(cs, greedy, 0)
                return sum(u[1] for u in e.last_usage)
            return run

        runs["llama.cpp q8_0, Llama.create_completion"] = raw(q8)
        runs["llama.cpp f16, Llama.create_completion"] = raw(f16)
        runs["ours llama_cpp q8_0, one row at a time"] = ours(q8, 1, a.prompts)
        runs["ours llama_cpp f16, one row at a time"] = ours(f16, 1, a.prompts)
        for n in a.rows:
            runs[f"ours llama_cpp q8_0, {n} rows batched"] = ours(q8, n, n)
        runs[f"ours llama_cpp f16, {a.rows[0]} rows batched"] = ours(f16, a.rows[0], a.rows[0])
        if "hf" not in a.skip:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            torch.set_num_threads(T)
            hf = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
            tok = AutoTokenizer.from_pretrained(str(model_dir))
            ids = [tok(tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False), add_special_tokens=False,
                       return_tensors="pt").input_ids for c in chats]

            def run_hf():
                n = 0
                with torch.inference_mode():
                    for x in ids:
                        y = hf.generate(x, max_new_tokens=a.tokens, do_sample=False, attention_mask=torch.ones_like(x))
                        n += y.shape[1] - x.shape[1]
                return n
            runs["transformers fp32 generate, torch CPU"] = run_hf
        if "mlx" not in a.skip:
            from mlx_lm import load
            from mlx_lm.sample_utils import make_sampler

            from localchar.backends import batched

            mm, mt = load(str(model_dir))
            mprompts = [mt.apply_chat_template(c, add_generation_prompt=True) for c in chats]

            def run_mlx():
                stats = {}
                batched.decode(mm, mt, mprompts, a.tokens, make_sampler(0.0), stats=stats)
                return sum(stats["completion_tokens"])
            runs[f"ours MLX batched.decode, {a.prompts} rows"] = run_mlx

        for run in runs.values():  # warm-up: first calls allocate / compile
            run()
        rates = {k: [] for k in runs}
        names = list(runs)
        for r in range(a.repeats):
            for k in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                n = runs[k]()
                rates[k].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["llama.cpp q8_0, Llama.create_completion"]
    print(f"{a.model} model, {a.prompts} prompts x {a.tokens} greedy tokens, {T} thread(s), "
          f"median of {a.repeats} rotated repeats")
    print(f"{'engine':45s} {'tok/s':>7s}  vs llama.cpp q8_0")
    for k in names:
        print(f"{k:45s} {med[k]:7.1f}  {med[k] / base:5.2f}x")
    print()
    for q in ("q8_0", "f16"):
        raw_rate = med[f"llama.cpp {q}, Llama.create_completion"]
        one = med[f"ours llama_cpp {q}, one row at a time"]
        print(f"ours one row at a time / raw llama.cpp, same {q} GGUF: {one / raw_rate:.2f}x (target >= 0.8x)")
    for n in a.rows:
        b = med[f"ours llama_cpp q8_0, {n} rows batched"]
        print(f"ours {n} rows batched / one stream, q8_0: {b / base:.2f}x raw llama.cpp, "
              f"{b / med['ours llama_cpp q8_0, one row at a time']:.2f}x ours one row at a time")


if __name__ == "__main__":
    main()
