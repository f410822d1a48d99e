"""Switching persona with the base model loaded vs loading base + adapter afresh (MLX side).

    python bench/persona_switch.py [--model 67m] [--adapters 4] [--rank 64] [--repeats 5] [--quick]

"Switch" is everything until the model is ready to generate with the other persona (weights
evaluated; one greedy token, untimed, checks that they all agree):
  - engine routing: MlxEngine.use_adapters to a persona it already holds (it keeps the adapters it
    has installed, up to a byte budget): rows are routed by index, nothing is loaded;
  - install: `batched.install` of an adapter dir not yet held (read from disk, stacked);
  - fresh load: mlx-lm's `load(base, adapter_path=...)` (the page cache is warm after the first
    round, as it is on a laptop switching back and forth);
  - apply_adapter: the trainers' swap, for context.
Random LoRA adapters in our format (adapters.safetensors + adapter_config.json), rank 64 / scale 2
on every linear layer as gemma-all's DPO. Interleaved per repeat, rotating the order; ratios of
medians. The ratio against a fresh load grows with base size / adapter size: here the base is
small (278 MB in fp32) and a rank-64 adapter on every layer is 15% of it.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from localchar.blas import maybe_reexec

maybe_reexec([sys.executable, *sys.argv])  # the same BLAS as the CLI uses, before MLX loads

import mlx.core as mx  # noqa: E402
from mlx.utils import tree_map  # noqa: E402
from mlx_lm import load  # noqa: E402

from localchar.backends import batched  # noqa: E402
from localchar.backends.mlx import MlxEngine  # noqa: E402
from localchar.tiny import build_tiny  # noqa: E402
from localchar.train.lora import add_lora, apply_adapter, save_adapter  # noqa: E402


def first_token(model, prompt):
    return mx.argmax(model(mx.array([prompt]))[0, -1]).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="67m", choices=["tiny", "67m"])
    ap.add_argument("--adapters", type=int, default=4)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the tiny model, 3 repeats")
    a = ap.parse_args()
    if a.quick:
        a.model, a.repeats = "tiny", 3
    lora = {"rank": a.rank, "scale": 2.0, "dropout": 0.0}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        base = str(build_tiny(d / "m", shape=a.model))
        paths = []
        for k in range(a.adapters):
            model, _ = load(base)
            add_lora(model, -1, lora, seed=k)
            model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.02, model.trainable_parameters()))
            save_adapter(model, d / f"persona{k}", -1, lora)
            paths.append(d / f"persona{k}")
        model, tok = load(base)
        prompt = tok.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True)
        trainer_model, _ = load(base)

        engine = MlxEngine(base)
        engine.use_adapters([str(p) for p in paths])  # holds every persona (within its budget)

        def route(p):
            engine._router.idx = mx.array([engine.use_adapters([str(p)])[str(p)]])
            return engine.model

        def install(p):
            batched.install(model, [p]).idx = mx.array([1])  # every row on the new persona
            return model

        def fresh(p):
            return load(base, adapter_path=str(p))[0]

        def swap(p):
            apply_adapter(trainer_model, p)
            return trainer_model

        ways = {"engine routing": route, "install": install, "fresh load": fresh, "apply_adapter": swap}
        for f in ways.values():  # warm-up: first calls compile, first reads fill the page cache
            first_token(f(paths[0]), prompt)
        secs = {k: [] for k in ways}
        for r in range(a.repeats):
            names = list(ways)
            names = names[r % len(names):] + names[:r % len(names)]
            p = paths[(r + 1) % len(paths)]
            tokens = set()
            for name in names:
                t0 = time.perf_counter()
                ready = ways[name](p)
                secs[name].append(time.perf_counter() - t0)
                tokens.add(first_token(ready, prompt))
            assert len(tokens) == 1, "the ways disagree on the first token"
    med = {k: statistics.median(v) for k, v in secs.items()}
    print(f"{a.model} model, rank-{a.rank} adapters on every linear layer, median of {a.repeats} switches")
    print(f"persona switch by engine routing (adapter held) is {med['fresh load'] / med['engine routing']:.0f}x "
          f"a fresh mlx_lm.load of base + adapter (target >= 10x; {med['engine routing'] * 1e3:.2f} ms vs "
          f"{med['fresh load'] * 1e3:.0f} ms here)")
    print(f"persona switch by batched.install (adapter not yet held) is {med['fresh load'] / med['install']:.1f}x "
          f"a fresh load ({med['install'] * 1e3:.0f} ms here)")
    print(f"trainers' apply_adapter: {med['fresh load'] / med['apply_adapter']:.1f}x a fresh load")


if __name__ == "__main__":
    main()
