"""What SFT, DPO and the tiny model's instruction tuning share: chat tokenisation with
assistant-only masks, padded batches, the LR schedule and one optimisation loop with metrics."""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_map

from ..progress import progress


def encode_chat(tokenizer, messages: list[dict], max_tokens: int | None = None) -> tuple[list[int], list[int]] | None:
    """Token ids of a whole chat and a 0/1 mask that is 1 on every assistant turn (its end-of-turn
    marker included). Returns None when the chat is longer than `max_tokens`."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    if max_tokens and len(ids) > max_tokens:
        return None
    mask = [0] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True, tokenize=True))
        end = len(tokenizer.apply_chat_template(messages[: i + 1], tokenize=True))
        for k in range(start, min(end, len(ids))):
            mask[k] = 1
    return ids, mask


def pad_batch(rows: list[tuple[list[int], list[int]]]) -> tuple[mx.array, mx.array]:
    """(B, T) tokens and (B, T-1) target masks aligned with tokens[:, 1:]."""
    T = max(len(ids) for ids, _ in rows)
    toks = [ids + [0] * (T - len(ids)) for ids, _ in rows]
    masks = [m[1:] + [0] * (T - len(m)) for _, m in rows]
    return mx.array(toks), mx.array(masks, dtype=mx.float32)


# mlx-lm model classes whose forward is exactly `model.model(x)` then the output head (tied or not)
_SPLIT = {"mlx_lm.models.llama", "mlx_lm.models.qwen2", "mlx_lm.models.gemma3_text"}


def split_head(model):
    """(trunk, head) for a model whose logits are head(trunk(tokens)), else None. Gemma-3's
    multimodal wrapper is unwrapped to its language model."""
    m = getattr(model, "language_model", model)
    if type(m).__module__ not in _SPLIT:
        return None
    head = m.lm_head if "lm_head" in m else m.model.embed_tokens.as_linear
    return m.model, head


def token_logps(model, toks: mx.array, masks: mx.array | None = None) -> mx.array:
    """log p(token_t | tokens_<t) for every target position: (B, T-1). With `masks` ((B, T-1), the
    positions a loss reads), the output head and softmax run only there and other positions are 0:
    on a 49k vocabulary the head is a fifth of a small model's compute, and a transcript's masked
    assistant turns are often a third of its tokens or less."""
    split = split_head(model) if masks is not None else None
    if split is None:
        logits = model(toks[:, :-1]).astype(mx.float32)
        return -nn.losses.cross_entropy(logits, toks[:, 1:], reduction="none")
    trunk, head = split
    B, T = toks.shape[0], toks.shape[1] - 1
    sel = np.flatnonzero(np.array(masks).reshape(-1) > 0)
    if not sel.size:
        return mx.zeros((B, T), dtype=mx.float32)
    idx = mx.array(sel.astype(np.int32))
    h = trunk(toks[:, :-1]).reshape(B * T, -1)[idx]
    lp = -nn.losses.cross_entropy(head(h).astype(mx.float32), toks[:, 1:].reshape(-1)[idx], reduction="none")
    return mx.zeros((B * T,), dtype=mx.float32).at[idx].add(lp).reshape(B, T)


def sft_loss(model, toks, masks):
    lp = token_logps(model, toks, masks)
    n = masks.sum()
    return -(lp * masks).sum() / mx.maximum(n, 1), n


def make_schedule(lr: float, iters: int, warmup: int):
    warmup = max(0, min(warmup, iters - 1))
    decay = optim.cosine_decay(lr, max(1, iters - warmup), end=lr * 0.1)
    if warmup == 0:
        return decay
    return optim.join_schedules([optim.linear_schedule(lr * 0.01, lr, warmup), decay], [warmup])


@dataclass
class TrainConfig:
    iters: int
    batch_size: int
    learning_rate: float
    warmup: int = 0
    grad_accum: int = 1
    seed: int = 0
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    grad_checkpoint: bool = False
    checkpoint_every: int = 0         # save a resumable training state every N steps (0 = never)

    @classmethod
    def from_stage(cls, t, n_examples: int, seed: int) -> "TrainConfig":
        """From a recipe's dpo/sft table (config.TrainCfg) and the number of examples."""
        iters = t.steps(n_examples)
        return cls(iters=iters, batch_size=min(t.batch_size, n_examples), learning_rate=t.learning_rate,
                   warmup=round(t.warmup_ratio * iters), grad_accum=t.grad_accum, seed=seed,
                   grad_checkpoint=t.grad_checkpoint, checkpoint_every=t.checkpoint_every)


@contextmanager
def checkpointed_blocks(model):
    """Gradient checkpointing: each transformer block's activations are recomputed in the backward
    pass instead of kept. Patches the block class for the duration (every block of a model shares
    one class) and restores it afterwards, so nothing leaks into later loads."""
    cls = type(model.layers[0])
    original = cls.__call__

    def call(self, *args, **kwargs):
        def inner(params, *a, **kw):
            self.update(params)
            return original(self, *a, **kw)

        return mx.checkpoint(inner)(self.trainable_parameters(), *args, **kwargs)

    cls.__call__ = call
    try:
        yield
    finally:
        cls.__call__ = original


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (little padding), in a shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _save_state(d: Path, step: int, model, opt, rng: random.Random, order: list, rows: list) -> None:
    """A resumable training state: trainable weights, optimizer state, data order and RNG, metrics.
    The weight files carry the step in their names and state.json (written last, atomically) names
    them, so a crash while saving leaves the previous state intact."""
    from mlx.utils import tree_flatten

    from ..store import write_json

    d.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(d / f"weights-{step}.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    mx.save_safetensors(str(d / f"optimizer-{step}.safetensors"), dict(tree_flatten(opt.state)))
    version, internal, gauss = rng.getstate()
    write_json(d / "state.json", {"step": step, "rng": [version, list(internal), gauss], "order": order,
                                  "rows": rows})
    for f in d.glob("*.safetensors"):
        if not f.name.endswith(f"-{step}.safetensors"):
            f.unlink()


def _load_state(d: Path, model, opt, rng: random.Random) -> tuple[int, list, list]:
    from mlx.utils import tree_unflatten

    st = json.loads((d / "state.json").read_text())
    step = st["step"]
    model.load_weights(list(mx.load(str(d / f"weights-{step}.safetensors")).items()), strict=False)
    opt.init(model.trainable_parameters())
    opt.state = tree_unflatten(list(mx.load(str(d / f"optimizer-{step}.safetensors")).items()))
    mx.eval(model.trainable_parameters(), opt.state)
    version, internal, gauss = st["rng"]
    rng.setstate((version, tuple(internal), gauss))
    return step, st["order"], st["rows"]


def train(model, examples: list, make_batch: Callable, loss_fn: Callable, cfg: TrainConfig,
          metrics_path: Path, desc: str, lengths: list[int] | None = None,
          checkpoint: Path | None = None) -> list[dict]:
    """Minimise `loss_fn(model, *make_batch(rows))` over shuffled epochs of `examples`.

    With `lengths`, each epoch's batches group examples of similar length (padding is what a CPU
    pays for). loss_fn returns (loss, aux-dict-or-ntokens). One optimizer step = grad_accum
    micro-batches. Writes one JSON line per step to metrics_path (flushed), and returns the rows.
    With `checkpoint` (a directory) and cfg.checkpoint_every, the state is saved every N steps and
    a later call resumes from it; the result equals an uninterrupted run.
    """
    rng = random.Random(cfg.seed)
    opt = optim.Adam(learning_rate=make_schedule(cfg.learning_rate, cfg.iters, cfg.warmup),
                     betas=list(cfg.betas))
    value_and_grad = nn.value_and_grad(model, lambda m, *a: loss_fn(m, *a))
    order: list[int] = []
    rows = []
    done = 0
    if checkpoint is not None and (checkpoint / "state.json").exists():
        done, order, rows = _load_state(checkpoint, model, opt, rng)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = checkpointed_blocks(model) if cfg.grad_checkpoint else nullcontext()
    with ckpt, metrics_path.open("a") as log, progress(desc, total=cfg.iters) as bar:
        bar.advance(done)
        for step in range(done + 1, cfg.iters + 1):
            mx.random.seed(cfg.seed * 1_000_003 + step)  # dropout noise depends on the step only
            t0 = time.perf_counter()
            grads_sum, stats, ntoks = None, {}, 0
            for _ in range(cfg.grad_accum):
                if lengths is not None:
                    if not order:
                        order = length_batches(lengths, cfg.batch_size, rng)
                    idx = order.pop(0)
                else:
                    if len(order) < cfg.batch_size:
                        perm = list(range(len(examples)))
                        rng.shuffle(perm)
                        order += perm
                    idx, order = order[: cfg.batch_size], order[cfg.batch_size:]
                batch = make_batch([examples[i] for i in idx])
                (loss, aux), grads = value_and_grad(model, *batch)
                grads_sum = grads if grads_sum is None else tree_map(mx.add, grads_sum, grads)
                aux = aux if isinstance(aux, dict) else {"tokens": aux}
                for k, v in {"loss": loss, **aux}.items():
                    stats[k] = stats.get(k, 0.0) + float(v) / cfg.grad_accum
                ntoks += int(batch[0].size)
            grads = tree_map(lambda g: g / cfg.grad_accum, grads_sum)
            if cfg.grad_clip:
                grads, _ = optim.clip_grad_norm(grads, cfg.grad_clip)
            opt.update(model, grads)
            mx.eval(model.trainable_parameters(), opt.state)
            dt = time.perf_counter() - t0
            row = {"step": step, **{k: round(v, 6) for k, v in stats.items()},
                   "lr": float(opt.learning_rate), "batch_tokens": ntoks, "tokens_per_s": round(ntoks / dt, 1),
                   "peak_memory_gb": round(mx.get_peak_memory() / 1e9, 3)}
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(f"{desc}: loss is {row['loss']} at step {step}")
            log.write(json.dumps(row) + "\n")
            log.flush()
            rows.append(row)
            bar.advance(1, loss=row["loss"])
            if checkpoint is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 \
                    and step < cfg.iters:
                _save_state(checkpoint, step, model, opt, rng, order, rows)
    return rows  # the caller deletes `checkpoint` once it has saved what it trained
