"""One batch routed to several persona adapters vs one mlx-lm batch per adapter, side by side in one
run on the tiny model. Prints the ratio, not absolute times.

    python bench/multi_adapter.py [--adapters 8] [--rows 8] [--tokens 48]
"""

import argparse
import tempfile
import time
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_map
from mlx_lm import batch_generate, load
from mlx_lm.sample_utils import make_sampler

from localchar.backends import batched
from localchar.tiny import build_tiny
from localchar.train.lora import add_lora, apply_adapter, save_adapter

LORA = {"rank": 8, "scale": 20.0, "dropout": 0.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", type=int, default=8)
    ap.add_argument("--rows", type=int, default=8, help="prompts per adapter")
    ap.add_argument("--tokens", type=int, default=48)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        build_tiny(d / "m")
        paths = []
        for k in range(a.adapters):
            model, _ = load(str(d / "m"))
            add_lora(model, -1, LORA)
            mx.random.seed(k)
            model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.02, model.trainable_parameters()))
            save_adapter(model, d / f"a{k}", -1, LORA)
            paths.append(d / f"a{k}")
        model, tok = load(str(d / "m"))
        prompts = [tok.apply_chat_template([{"role": "user", "content": f"Question number {i}: how are you?"}],
                                           add_generation_prompt=True) for i in range(a.rows)]
        sampler = make_sampler(0.0)

        t0 = time.perf_counter()
        for p in paths:
            apply_adapter(model, p)
            batch_generate(model, tok, prompts, max_tokens=a.tokens, sampler=sampler)
        per_adapter = time.perf_counter() - t0
        apply_adapter(model, None)

        router = batched.install(model, paths)
        t0 = time.perf_counter()
        batched.decode(model, tok, prompts * a.adapters, a.tokens, sampler, router,
                       [k + 1 for k in range(a.adapters) for _ in prompts])
        routed = time.perf_counter() - t0
    print(f"{a.adapters} adapters x {a.rows} prompts x {a.tokens} tokens: one routed batch is "
          f"{per_adapter / routed:.1f}x faster than one mlx-lm batch per adapter")


if __name__ == "__main__":
    main()
