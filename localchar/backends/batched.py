"""Batched decoding in which every row may carry a different persona adapter.

`MultiLoRALinear` holds the LoRA matrices of several adapters stacked on a leading axis (ranks
zero-padded to the largest, which is exact) plus a zero slot for the base model; `decode` runs one
left-padded batch through mlx-lm's batch KV caches and routes each row to its adapter. So a whole
sweep (variants x personas) is one batch instead of one small batch per adapter: on a CPU, where a
decode step costs about the same for 4 rows as for 64, that is the difference between minutes and
an hour.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten


class Router:
    """Which adapter slot each batch row uses; shared by every MultiLoRALinear of a model."""

    def __init__(self):
        self.idx = mx.array([0])


class MultiLoRALinear(nn.Module):
    def __init__(self, linear, a: mx.array, b: mx.array, scales: mx.array, router: Router):
        super().__init__()
        self.linear = linear
        self.lora_a, self.lora_b, self.scales = a, b, scales  # (n, in, r), (n, r, out), (n,)
        self._router = router
        self.freeze()

    def __call__(self, x):
        y = self.linear(x)
        idx = self._router.idx
        a, b = self.lora_a[idx], self.lora_b[idx]          # (B, in, r), (B, r, out)
        z = (x.astype(a.dtype) @ a) @ b                      # (B, T, out)
        return y + (self.scales[idx][:, None, None] * z).astype(y.dtype)


def install(model, adapters: list[Path | None], strength: float = 1.0) -> Router:
    """Wrap the model's linears for the given adapters; slot 0 is always the base model."""
    from ..train.lora import check_adapter, read_adapter

    remove(model)
    loaded = [read_adapter(p) for p in adapters if p]
    for p, (_, w) in zip([p for p in adapters if p], loaded):
        check_adapter(model, p, w)
    modules = dict(model.named_modules())
    targets = sorted({k.rsplit(".", 1)[0] for _, w in loaded for k in w})
    router = Router()
    wrapped = []
    for name in targets:
        base = modules[name]
        ins = [w.get(f"{name}.lora_a") for _, w in loaded]
        shape = next(x for x in ins if x is not None).shape[0]
        out_dim = next(w[f"{name}.lora_b"] for _, w in loaded if f"{name}.lora_b" in w).shape[1]
        r = max(w[f"{name}.lora_a"].shape[1] for _, w in loaded if f"{name}.lora_a" in w)
        A = [mx.zeros((shape, r))]
        B = [mx.zeros((r, out_dim))]
        S = [0.0]
        for cfg, w in loaded:
            a, b = w.get(f"{name}.lora_a"), w.get(f"{name}.lora_b")
            if a is None:
                A.append(mx.zeros((shape, r)))
                B.append(mx.zeros((r, out_dim)))
                S.append(0.0)
                continue
            pad = r - a.shape[1]
            A.append(mx.pad(a, [(0, 0), (0, pad)]) if pad else a)
            B.append(mx.pad(b, [(0, pad), (0, 0)]) if pad else b)
            S.append(cfg["lora_parameters"]["scale"] * strength)
        wrapped.append((name, MultiLoRALinear(base, mx.stack(A), mx.stack(B), mx.array(S), router)))
    model.update_modules(tree_unflatten(wrapped))
    mx.eval(model.parameters())
    return router


def remove(model) -> None:
    found = [(n, m.linear) for n, m in model.named_modules() if isinstance(m, MultiLoRALinear)]
    if found:
        model.update_modules(tree_unflatten(found))


def batch_caches(model, left_padding: list[int]):
    """mlx-lm's per-layer caches, as their left-padded batch versions (None if unsupported)."""
    from mlx_lm.models.cache import (BatchKVCache, BatchRotatingKVCache, KVCache, RotatingKVCache,
                                     make_prompt_cache)

    out = []
    for c in make_prompt_cache(model):
        if type(c) is KVCache:
            out.append(BatchKVCache(left_padding))
        elif type(c) is RotatingKVCache:
            out.append(BatchRotatingKVCache(c.max_size, left_padding))
        else:
            return None
    return out


def penalize_repeats(logits: mx.array, recent: mx.array, penalty: float) -> mx.array:
    """mlx-lm's repetition penalty, per row: the logits of each row's recent tokens are divided by
    `penalty` when positive and multiplied by it when negative."""
    seen = mx.take_along_axis(logits, recent, axis=-1)
    seen = mx.where(seen < 0, seen * penalty, seen / penalty)
    return mx.put_along_axis(logits, recent, seen, axis=-1)


def decode(model, tokenizer, prompts: list[list[int]], max_tokens: int, sampler, router: Router | None = None,
           slots: list[int] | None = None, prefill_step: int = 512, repetition_penalty: float = 1.0,
           repetition_context: int = 20, stats: dict | None = None) -> list[str] | None:
    """Generate for all prompts in one batch; returns None when the model's caches cannot batch.
    `stats`, when given, receives "completion_tokens": generated tokens per row (end-of-turn included)."""
    L = max(len(p) for p in prompts)
    pads = [L - len(p) for p in prompts]
    cache = batch_caches(model, pads)
    if cache is None:
        return None
    if router is not None:
        router.idx = mx.array(slots if slots is not None else [0] * len(prompts))
    x = mx.array([[0] * pad + p for pad, p in zip(pads, prompts)])
    for start in range(0, L - 1, prefill_step):  # prefill all but the last token in chunks
        chunk = x[:, start:min(start + prefill_step, L - 1)]
        model(chunk, cache=cache)
        mx.eval([c.state for c in cache])
    logits = model(x[:, L - 1:], cache=cache)[:, -1, :]
    stop = set(tokenizer.eos_token_ids)
    out = [[] for _ in prompts]
    done = [False] * len(prompts)
    C = repetition_context
    recent = mx.array([([p[0]] * C + p)[-C:] for p in prompts]) if repetition_penalty != 1.0 else None
    for _ in range(max_tokens):
        if recent is not None:
            logits = penalize_repeats(logits, recent, repetition_penalty)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        y = sampler(logprobs)
        mx.eval(y)
        for i, t in enumerate(y.tolist()):
            if not done[i]:
                if t in stop:
                    done[i] = True
                else:
                    out[i].append(t)
        if all(done):
            break
        if recent is not None:
            recent = mx.concatenate([recent[:, 1:], y[:, None]], axis=1)
        logits = model(y[:, None], cache=cache)[:, -1, :]
    if stats is not None:
        stats["completion_tokens"] = [len(o) + (1 if d else 0) for o, d in zip(out, done)]
    return [tokenizer.decode(o) for o in out]
