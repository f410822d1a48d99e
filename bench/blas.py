"""MLX on the Linux CPU: the bundled reference BLAS vs Debian's OpenBLAS (preloaded), side by side
in one run. Prints ratios, not absolute times (these machines are shared and noisy).

    python bench/blas.py
"""

import json
import os
import subprocess
import sys
import tempfile

from localchar.blas import OPENBLAS

CHILD = r"""
import json, sys, time
import mlx.core as mx, mlx.nn as nn
from mlx_lm import load
from localchar.train.loop import sft_loss
def best(f, n=5):
    f(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return min(ts)
x = mx.random.normal((1024, 64)); w = mx.random.normal((64, 1024)); mx.eval(x, w)
m, _ = load(sys.argv[1]); m.unfreeze()
vg = nn.value_and_grad(m, sft_loss)
toks = mx.random.randint(0, 500, (8, 128)); masks = mx.ones((8, 127))
print(json.dumps({"matmul 1024x64x1024": best(lambda: mx.eval(x @ w)),
                  "tiny model fwd+bwd, 8x128 tokens": best(lambda: mx.eval(vg(m, toks, masks)))}))
"""


def run(model, preload: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["LOCALCHAR_NO_OPENBLAS"] = "1"
    if preload:
        env["LD_PRELOAD"] = OPENBLAS
    out = subprocess.run([sys.executable, "-c", CHILD, model], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    if not os.path.exists(OPENBLAS):
        sys.exit(f"{OPENBLAS} not found: apt-get install libopenblas0-pthread")
    from localchar.tiny import build_tiny

    with tempfile.TemporaryDirectory() as d:
        build_tiny(os.path.join(d, "m"))
        ref, fast = run(os.path.join(d, "m"), False), run(os.path.join(d, "m"), True)
    for k in ref:
        print(f"{k:36s} OpenBLAS is {ref[k] / fast[k]:.1f}x faster than MLX's bundled BLAS")


if __name__ == "__main__":
    main()
