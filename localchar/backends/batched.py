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

from .prompt_cache import RowKV, common_prefix


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


def batch_caches(model, left_padding: list[int], margin: int = 0):
    """mlx-lm's per-layer caches, as their left-padded batch versions (None if unsupported).
    `margin` > 0 makes sliding-window layers hold that many positions beyond their window (the
    attention mask still applies the window), so a kept row can be cut back by up to `margin`."""
    from mlx_lm.models.cache import BatchKVCache, BatchRotatingKVCache

    windows = layer_windows(model)
    if windows is None:
        return None
    return [BatchKVCache(left_padding) if w is None else BatchRotatingKVCache(w + margin, left_padding)
            for w in windows]


def layer_windows(model) -> list[int | None] | None:
    """Per layer: its sliding window, None for a full-attention layer; None if some layer's cache
    is of a kind that cannot batch here."""
    from mlx_lm.models.cache import KVCache, RotatingKVCache, make_prompt_cache

    out = []
    for c in make_prompt_cache(model):
        if type(c) is KVCache:
            out.append(None)
        elif type(c) is RotatingKVCache and c.keep == 0:
            out.append(c.max_size)
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
           repetition_context: int = 20, stats: dict | None = None, starts: list[RowKV | None] | None = None,
           keep: bool = False, share_prefix: int = 0, guides: list | None = None) -> list[str] | None:
    """Generate for all prompts in one batch; returns None when the model's caches cannot batch.
    `stats`, when given, receives "completion_tokens": generated tokens per row (end-of-turn
    included) and "prefilled_tokens": the prompt tokens per row that went through the model.

    Reuse of keys/values (prompt_cache.py): `starts` gives rows a kept cache whose common token
    prefix with the prompt is not prefilled again; `share_prefix` = n > 0 prefills a prefix of at
    least n tokens shared by rows of the same adapter once, for all of them; `keep` returns each
    row's cache in stats["rows"] (RowKV: the prompt and every token fed after it). `guides` (one per
    row, None = free) hold rows to a grammar (agent/grammar.py): their logits are masked per step."""
    B = len(prompts)
    slots = list(slots) if slots is not None else [0] * B
    windows = layer_windows(model)
    if windows is None:
        return None
    margin = max_tokens + 2 if keep else 0  # a kept row must be able to drop its whole reply
    starts = list(starts or [None] * B)
    views, use = [None] * B, [0] * B
    for i, (s, p) in enumerate(zip(starts, prompts)):
        n = min(common_prefix(s.tokens, p), len(p) - 1) if s is not None else 0
        if n > 0 and (v := s.view(n, windows, margin)) is not None:
            views[i], use[i] = v, n
    groups = _share_groups(prompts, slots, use, share_prefix) if share_prefix else []
    if groups:
        for row, n, rows in _prefill_groups(model, prompts, groups, router, prefill_step):
            for i in rows:
                if (v := row.view(n, windows, margin)) is not None:
                    views[i], use[i] = v, n
    if router is not None:
        router.idx = mx.array(slots)
    if any(views) or keep:
        cache = _resume(views, windows, margin)
        _prefill(model, cache, [p[u:-1] for p, u in zip(prompts, use)], prefill_step)
    else:  # nothing to reuse: left-pad the prompts
        L = max(len(p) for p in prompts)
        pads = [L - len(p) for p in prompts]
        cache = batch_caches(model, pads)
        x = mx.array([[0] * pad + p for pad, p in zip(pads, prompts)])
        for start in range(0, L - 1, prefill_step):  # prefill all but the last token in chunks
            model(x[:, start:min(start + prefill_step, L - 1)], cache=cache)
            mx.eval([c.state for c in cache])
    logits = model(mx.array([[p[-1]] for p in prompts]), cache=cache)[:, -1, :]
    out, done, fed = _sample(model, cache, logits, prompts, max_tokens, sampler, set(tokenizer.eos_token_ids),
                             repetition_penalty, repetition_context, guides if guides and any(guides) else None)
    if stats is not None:
        stats["completion_tokens"] = [len(o) + (1 if d else 0) for o, d in zip(out, done)]
        stats["prefilled_tokens"] = [len(p) - u for p, u in zip(prompts, use)]
        if keep:
            stats["rows"] = [RowKV(p + [t[i] for t in fed], [c.extract(i) for c in cache])
                             for i, p in enumerate(prompts)]
    return [tokenizer.decode(o) for o in out]


def _sample(model, cache, logits, prompts, max_tokens, sampler, stop, penalty, context, guides=None):
    """The decoding loop. The next step's graph is built and queued before this step's tokens are
    read back, so Python bookkeeping overlaps the model (as mlx-lm's generate_step does). Returns
    the tokens per row, whether each row stopped, and the tokens fed per step (one list per step).
    With guides the next step's mask depends on this step's tokens, so the loop runs in step."""
    recent = mx.array([([p[0]] * context + p)[-context:] for p in prompts]) if penalty != 1.0 else None

    def pick(logits, recent):
        if recent is not None:
            logits = penalize_repeats(logits, recent, penalty)
        if guides is not None:
            logits = logits + _mask(guides, logits.shape[-1])
        return sampler(logits - mx.logsumexp(logits, axis=-1, keepdims=True))

    if guides is not None:
        return _sample_guided(model, cache, logits, prompts, max_tokens, pick, stop, recent, guides)
    y = pick(logits, recent)
    mx.async_eval(y)
    out = [[] for _ in prompts]
    done = [False] * len(prompts)
    fed = []
    for n in range(max_tokens):
        if n + 1 < max_tokens:
            if recent is not None:
                recent = mx.concatenate([recent[:, 1:], y[:, None]], axis=1)
            nxt = pick(model(y[:, None], cache=cache)[:, -1, :], recent)
            mx.async_eval(nxt)
        toks = y.tolist()
        if n + 1 < max_tokens:
            fed.append(toks)
        _take(toks, out, done, stop)
        if all(done) or n + 1 == max_tokens:
            break
        y = nxt
    return out, done, fed


def _take(toks, out, done, stop, guides=None) -> None:
    """One step's tokens into the rows that have not stopped (and their grammar guides)."""
    for i, t in enumerate(toks):
        if not done[i]:
            if t in stop:
                done[i] = True
            else:
                out[i].append(t)
                if guides and guides[i] is not None:
                    guides[i].advance(t)


def _mask(guides, vocab: int) -> mx.array:
    import numpy as np

    m = np.zeros((len(guides), vocab), dtype=np.float32)
    for i, g in enumerate(guides):
        if g is not None and (ok := g.allowed()).any():  # (a dead end would leave no token: the row goes free)
            row = np.full(vocab, -np.inf, dtype=np.float32)
            row[:len(ok)][ok[:vocab]] = 0.0
            m[i] = row
    return mx.array(m)


def _sample_guided(model, cache, logits, prompts, max_tokens, pick, stop, recent, guides):
    out, done, fed = [[] for _ in prompts], [False] * len(prompts), []
    y = pick(logits, recent)
    for n in range(max_tokens):
        toks = y.tolist()
        _take(toks, out, done, stop, guides)
        if all(done) or n + 1 == max_tokens:
            break
        fed.append(toks)
        if recent is not None:
            recent = mx.concatenate([recent[:, 1:], y[:, None]], axis=1)
        y = pick(model(y[:, None], cache=cache)[:, -1, :], recent)
    return out, done, fed


def _resume(views: list[list | None], windows: list[int | None], margin: int):
    """One left-padded batch cache per layer, from each row's single-row caches (None: empty)."""
    from mlx_lm.models.cache import BatchKVCache, BatchRotatingKVCache, KVCache, RotatingKVCache

    out = []
    for k, w in enumerate(windows):
        if w is None:
            out.append(BatchKVCache.merge([v[k] if v else KVCache() for v in views]))
        else:
            out.append(BatchRotatingKVCache.merge([v[k] if v else RotatingKVCache(w + margin) for v in views]))
    return out


def _prefill(model, cache, rows: list[list[int]], prefill_step: int) -> None:
    """Feed each row its tokens after what the cache holds. Rows of unequal length are right-padded;
    the caches roll the padding to the left afterwards (mlx-lm's prepare/finalize), where the mask
    hides it."""
    S = max(len(r) for r in rows)
    if S == 0:
        return
    pad = [S - len(r) for r in rows]
    for c in cache:
        c.prepare(lengths=[len(r) for r in rows], right_padding=pad)
    x = mx.array([r + [0] * p for r, p in zip(rows, pad)])
    for start in range(0, S, prefill_step):
        model(x[:, start:start + prefill_step], cache=cache)
        mx.eval([c.state for c in cache])
    for c in cache:
        c.finalize()


def _share_groups(prompts, slots, use, min_len) -> list[tuple[int, list[int], int]]:
    """Rows of one adapter whose prompts share at least `min_len` leading tokens beyond what they
    already reuse: (slot, rows, shared length). Sorting the prompts puts sharers next to each other."""
    groups = []
    for slot in sorted(set(slots)):
        rows = sorted((i for i in range(len(prompts)) if slots[i] == slot), key=lambda i: prompts[i])
        run, n = [rows[0]], None
        for prev, i in zip(rows, rows[1:] + [None]):
            m = -1 if i is None else min(common_prefix(prompts[prev], prompts[i]), len(prompts[prev]) - 1,
                                         len(prompts[i]) - 1)
            if m >= min_len:
                run.append(i)
                n = m if n is None else min(n, m)
                continue
            gain = [r for r in run if n is not None and n > use[r]]
            if len(gain) > 1:
                groups.append((slot, gain, n))
            run, n = [i], None
    return groups


def _prefill_groups(model, prompts, groups, router, prefill_step):
    """Prefill each group's shared prefix once (all groups in one batch); yields (RowKV, length, rows)."""
    if router is not None:
        router.idx = mx.array([slot for slot, _, _ in groups])
    heads = [prompts[rows[0]][:n] for _, rows, n in groups]
    cache = batch_caches(model, [0] * len(groups))
    _prefill(model, cache, heads, prefill_step)
    for g, (_, rows, n) in enumerate(groups):
        yield RowKV(heads[g], [c.extract(g) for c in cache]), n, rows
