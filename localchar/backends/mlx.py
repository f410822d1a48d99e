"""mlx-lm engine: one loaded base model; persona adapters are routed per batch row, so one call can
serve several personas (see batched.py); prompts come from the model's own chat template.

Keys/values are reused where prompts repeat (prompt_cache.py): rows of one call that share a long
prefix (a constitution, a scenario's system prompt) prefill it once, and a call that names
`cache_keys` (one per row, e.g. an agent rollout's id) keeps each row's cache so that the next call
with the same key prefills only what its prompt adds."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from . import batched
from ..train.lora import ADAPTER_FILE
from .prompt_cache import PromptCache


# GGUF names, as recipes spell them, and what they mean for MLX: affine quantisation in groups of 64.
MLX_QUANT = {"q8_0": 8, "q4_k_m": 4}


def quantize(model, quant: str | None, where: str) -> str:
    """Quantize the loaded model in memory, as `mlx_lm convert -q` would (adapters then wrap the
    quantized layers, as in QLoRA). Returns what the model now is."""
    if quant in (None, "none", "f16"):
        return "none"
    if quant not in MLX_QUANT:
        from ..errors import LocalcharError

        raise LocalcharError(f"{where}: quant '{quant}' is not one of none, {', '.join(MLX_QUANT)}")
    import mlx.nn as nn

    if any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules()):
        return "already quantized"
    nn.quantize(model, group_size=64, bits=MLX_QUANT[quant],
                class_predicate=lambda _, m: hasattr(m, "to_quantized") and m.weight.shape[-1] % 64 == 0)
    mx.eval(model.parameters())
    return f"mlx {MLX_QUANT[quant]}-bit g64"


class MlxEngine:
    name = "mlx"

    # rows of one adapter sharing at least this many leading prompt tokens prefill them once
    SHARE_PREFIX = 64
    # installed adapters kept resident (by adapter file size), so that returning to one is free
    ADAPTER_BUDGET = 1 << 30

    def __init__(self, model_path: str | Path, adapter: str | Path | None = None, strength: float = 1.0,
                 revision: str | None = None, quant: str | None = None, kv_reuse: bool = True,
                 kv_budget_bytes: int = 2 << 30):
        from mlx_lm import load

        from ..hub import resolve_model

        self.model_path = str(resolve_model(model_path, revision))
        self.model, self.tokenizer = load(self.model_path)
        self.quant = quantize(self.model, quant, self.model_path)
        self.adapter = str(adapter) if adapter else None  # for calls that name no adapters
        self.strength = strength
        self._installed: tuple = ()
        self._router = None
        self.last_usage: list[tuple[int, int]] = []  # (prompt, completion) tokens per row of the last call
        self.last_prefilled: list[int] = []  # prompt tokens per row that went through the model (the rest reused)
        self.kv_reuse = kv_reuse
        self.kv = PromptCache(kv_budget_bytes)

    @property
    def supports_tools(self) -> bool:
        """Whether the model's chat template renders tool schemas and tool turns itself."""
        return "tools" in (getattr(self.tokenizer, "chat_template", None) or "")

    def render(self, messages: list[dict], prefill: str = "", tools: list | None = None) -> list[int]:
        kw = {"tools": tools} if tools else {}
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **kw)
        if prefill:
            ids = list(ids) + self.tokenizer.encode(prefill, add_special_tokens=False)
        return list(ids)

    def generate(self, chats: list[list[dict]], sampling, seed: int, prefills: list[str] | None = None,
                 adapters: list | None = None, tools: list | None = None,
                 cache_keys: list[str] | None = None, grammars: list | None = None) -> list[str]:
        """Complete every chat in one batch; `adapters` gives each row its adapter (None = base).
        `cache_keys` (one per row) keep each row's keys/values for the next call with that key.
        `grammars` (one per row, None = free) constrain rows to agent/grammar.py's tool calls."""
        from mlx_lm.sample_utils import make_sampler

        rows = [str(a) if a else None for a in (adapters or [self.adapter] * len(chats))]
        slot = self.use_adapters(rows)
        prompts = [self.render(c, prefills[i] if prefills else "", tools) for i, c in enumerate(chats)]
        sampler = make_sampler(temp=sampling.temperature, top_p=sampling.top_p if sampling.temperature else 0.0)
        mx.random.seed(seed)
        stats: dict = {}
        keep = bool(cache_keys) and self.kv_reuse
        identity = [f"{a}@{self.strength}" if a else None for a in rows]  # what a row's values depend on
        starts = [self.kv.get(k, i) for k, i in zip(cache_keys, identity)] if keep else None
        out = batched.decode(self.model, self.tokenizer, prompts, sampling.max_tokens, sampler, self._router,
                             [slot[a] if a else 0 for a in rows],
                             repetition_penalty=getattr(sampling, "repetition_penalty", 1.0), stats=stats,
                             starts=starts, keep=keep, share_prefix=self.SHARE_PREFIX if self.kv_reuse else 0,
                             guides=self._guides(grammars))
        if out is None:
            raise NotImplementedError(f"{self.model_path}: this architecture's KV cache cannot be batched here")
        for k, i, row in zip(cache_keys or [], identity, stats.get("rows", [])):
            row.adapter = i
            self.kv.put(k, row)
        self.last_usage = [(len(p), n) for p, n in zip(prompts, stats["completion_tokens"])]
        self.last_prefilled = stats["prefilled_tokens"]
        return out

    def _guides(self, grammars):
        if not grammars or not any(grammars):
            return None
        from ..agent.grammar import Guide, Vocab

        if getattr(self, "_vocab", None) is None:
            tok = self.tokenizer
            n = len(tok._tokenizer) if hasattr(tok, "_tokenizer") else tok.vocab_size
            anchor = tok.encode("a", add_special_tokens=False)[-1]
            self._vocab = Vocab.from_decode(tok.decode, n, set(tok.eos_token_ids), n, anchor)
        return [Guide(g, self._vocab) if g is not None else None for g in grammars]

    def use_adapters(self, rows: list[str | None]) -> dict[str, int]:
        """Install what `rows` need and return each adapter's routing slot. Adapters installed
        earlier stay installed while their files total at most ADAPTER_BUDGET bytes, so a call
        that returns to an earlier persona only routes rows to it (no switch at all)."""
        distinct = tuple(dict.fromkeys(a for a in rows if a))
        if not set(distinct) <= set(self._installed) or self._router is None:
            union = tuple(a for a in self._installed if a not in distinct) + distinct
            size = sum((Path(a) / ADAPTER_FILE).stat().st_size for a in union if (Path(a) / ADAPTER_FILE).exists())
            installed = union if size <= self.ADAPTER_BUDGET else distinct
            self._router = batched.install(self.model, [Path(a) for a in installed], self.strength)
            self._installed = installed
        return {a: i + 1 for i, a in enumerate(self._installed)}

    def forget(self, cache_keys) -> None:
        """Drop kept rows (a rollout that has finished)."""
        self.kv.drop(cache_keys)
