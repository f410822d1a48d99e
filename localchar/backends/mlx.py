"""mlx-lm engine: one loaded base model; persona adapters are routed per batch row, so one call can
serve several personas (see batched.py); prompts come from the model's own chat template."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from . import batched


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

    def __init__(self, model_path: str | Path, adapter: str | Path | None = None, strength: float = 1.0,
                 revision: str | None = None, quant: str | None = None):
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
                 adapters: list | None = None, tools: list | None = None) -> list[str]:
        """Complete every chat in one batch; `adapters` gives each row its adapter (None = base)."""
        from mlx_lm.sample_utils import make_sampler

        rows = [str(a) if a else None for a in (adapters or [self.adapter] * len(chats))]
        distinct = tuple(dict.fromkeys(a for a in rows if a))
        if not set(distinct) <= set(self._installed) or self._router is None:
            self._router = batched.install(self.model, [Path(a) for a in distinct], self.strength)
            self._installed = distinct
        slot = {a: i + 1 for i, a in enumerate(self._installed)}
        prompts = [self.render(c, prefills[i] if prefills else "", tools) for i, c in enumerate(chats)]
        sampler = make_sampler(temp=sampling.temperature, top_p=sampling.top_p if sampling.temperature else 0.0)
        mx.random.seed(seed)
        stats: dict = {}
        out = batched.decode(self.model, self.tokenizer, prompts, sampling.max_tokens, sampler, self._router,
                             [slot[a] if a else 0 for a in rows],
                             repetition_penalty=getattr(sampling, "repetition_penalty", 1.0), stats=stats)
        if out is None:
            raise NotImplementedError(f"{self.model_path}: this architecture's KV cache cannot be batched here")
        self.last_usage = [(len(p), n) for p, n in zip(prompts, stats["completion_tokens"])]
        return out
