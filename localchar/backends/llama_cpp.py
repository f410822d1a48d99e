"""llama.cpp engine (llama-cpp-python): one base GGUF loaded once; persona adapters are GGUF LoRAs
loaded once each and switched on the context (no model reload); prompts come from the GGUF's own
chat template (never one of llama-cpp-python's built-in formats: its "gemma" format drops the
system turn).

Rows are grouped by adapter; within a group they are generated one after another in one context,
and llama-cpp-python keeps the KV cache of the longest common token prefix between calls, so an
agent rollout's next turn or prompts sharing a system prompt only prefill what is new.

An MLX/Hugging Face model directory is converted on first use (localchar.gguf, cached by content);
a .gguf file is used as it is.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from ..errors import LocalcharError
from ..store import derive_seed


_quiet = None


def _require():
    global _quiet
    try:
        import llama_cpp
    except ImportError:
        raise LocalcharError(
            "engine 'llama_cpp' needs llama-cpp-python: ./setup.sh installs it (extra localchar[gguf]); "
            "see the README's 'llama.cpp' section for Metal / CUDA builds") from None
    if _quiet is None and not os.environ.get("LOCALCHAR_LLAMA_LOG"):
        # llama.cpp's log goes to stderr past verbose=False (its level numbers and the binding's
        # disagree), which scrolls over our progress bars; LOCALCHAR_LLAMA_LOG=1 keeps it
        _quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
    return llama_cpp


class LlamaCppEngine:
    name = "llama_cpp"

    def __init__(self, model_path: str | Path, adapter: str | Path | None = None, strength: float = 1.0,
                 revision: str | None = None, quant: str = "f16", n_ctx: int = 8192, n_threads: int | None = None,
                 repetition_context: int = 20, **llama_kw):
        llama_cpp = _require()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from .. import gguf

        self.quant = quant
        src = str(model_path)
        if src.endswith(".gguf"):
            self.model_dir, base = None, Path(src)
            if not base.is_file():
                raise LocalcharError(f"{base}: no such GGUF file")
        else:
            from ..hub import resolve_model

            self.model_dir = Path(resolve_model(src, revision))
            base = gguf.base_gguf(self.model_dir, quant)
        self.model_path = str(base)
        probe = llama_cpp.Llama(model_path=str(base), vocab_only=True, verbose=False)
        meta = probe.metadata
        trained = int(meta.get(f"{meta.get('general.architecture')}.context_length", 0) or 0)
        n_ctx = min(n_ctx, trained) if trained else n_ctx
        probe.close()
        # repetition_context: llama.cpp's penalty window, set to mlx-lm's 20 tokens
        self.llm = llama_cpp.Llama(model_path=str(base), n_ctx=n_ctx, n_threads=n_threads, seed=0, verbose=False,
                                   last_n_tokens_size=repetition_context, n_gpu_layers=-1, **llama_kw)
        meta = self.llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise LocalcharError(f"{base}: no tokenizer.chat_template in the GGUF metadata")
        tok = lambda key: self.llm.detokenize([int(meta[key])], special=True).decode() if key in meta else ""
        self._template = template
        self._format = Jinja2ChatFormatter(template, eos_token=tok("tokenizer.ggml.eos_token_id"),
                                           bos_token=tok("tokenizer.ggml.bos_token_id"))
        self.adapter = str(adapter) if adapter else None
        self.strength = strength
        self._loras: dict[str, object] = {}
        self._active: str | None = None
        self.last_usage: list[tuple[int, int]] = []

    @property
    def supports_tools(self) -> bool:
        return "tools" in self._template

    def render(self, messages: list[dict], prefill: str = "", tools: list | None = None) -> list[int]:
        try:
            text = self._format(messages=messages, tools=tools).prompt
        except ValueError as e:  # the template's raise_exception
            raise LocalcharError(f"{self.model_path}: chat template refused the conversation: {e}") from None
        return self.llm.tokenize((text + prefill).encode(), add_bos=False, special=True)

    def _lora(self, adapter: str):
        if adapter not in self._loras:
            import llama_cpp

            from .. import gguf

            if adapter.endswith(".gguf"):
                path = Path(adapter)
            elif self.model_dir is None:
                raise LocalcharError(f"{adapter}: an mlx-lm adapter needs the model directory, not a .gguf base "
                                     "(give the adapter as a GGUF LoRA, or the base as a model directory)")
            else:
                path = gguf.lora_gguf(Path(adapter), self.model_dir)
            handle = llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
            if not handle:
                raise LocalcharError(f"{path}: llama.cpp could not load this LoRA for {self.model_path}")
            self._loras[adapter] = handle
        return self._loras[adapter]

    def use(self, adapter: str | None) -> None:
        """Switch the context to `adapter` (None = the base model); the cached prefix is dropped."""
        if adapter == self._active:
            return
        import llama_cpp

        if adapter is None:
            rc = llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)
        else:
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._lora(adapter))
            rc = llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, arr, 1, (ctypes.c_float * 1)(self.strength))
        if rc:
            raise LocalcharError(f"{adapter}: llama.cpp could not set this LoRA on the context")
        self.llm.reset()
        self._active = adapter

    def generate(self, chats: list[list[dict]], sampling, seed: int, prefills: list[str] | None = None,
                 adapters: list | None = None, tools: list | None = None) -> list[str]:
        rows = [str(a) if a else None for a in (adapters or [self.adapter] * len(chats))]
        prompts = [self.render(c, prefills[i] if prefills else "", tools) for i, c in enumerate(chats)]
        out: list[str | None] = [None] * len(chats)
        usage: list[tuple[int, int]] = [(0, 0)] * len(chats)
        for adapter in dict.fromkeys(rows):  # one switch per adapter, in first-seen order
            self.use(adapter)
            for i in (j for j, a in enumerate(rows) if a == adapter):
                ids, ended = self._complete(prompts[i], sampling, derive_seed(seed, i))
                # decoded as Hugging Face tokenizers do (an incomplete UTF-8 byte sequence becomes U+FFFD),
                # so both engines hand the classifier the same text for the same tokens
                out[i] = self.llm.detokenize(ids, special=True).decode("utf-8", errors="replace")
                usage[i] = (len(prompts[i]), len(ids) + ended)  # the end-of-turn token counts, as in MLX
        self.last_usage = usage
        return out

    def _budget(self, prompt: list[int], sampling) -> int:
        room = self.llm.n_ctx() - len(prompt)
        if room <= 1:
            raise LocalcharError(f"prompt of {len(prompt)} tokens does not fit the llama.cpp context of "
                                 f"{self.llm.n_ctx()} tokens")
        return min(sampling.max_tokens, room - 1)

    def _complete(self, prompt: list[int], sampling, seed: int) -> tuple[list[int], bool]:
        """Token ids up to end of turn (not included) or the budget, and whether the turn ended. The
        KV cache of the prefix this prompt shares with the previous one is reused (llama-cpp-python's
        generate() keeps it)."""
        import llama_cpp

        budget = self._budget(prompt, sampling)
        temp = float(sampling.temperature)
        self.llm.set_seed(seed)
        ids: list[int] = []
        vocab = self.llm._model.vocab
        for tok in self.llm.generate(prompt, temp=temp, top_p=sampling.top_p if temp else 1.0, top_k=0, min_p=0.0,
                                     repeat_penalty=getattr(sampling, "repetition_penalty", 1.0)):
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                return ids, True
            ids.append(tok)
            if len(ids) >= budget:
                break
        return ids, False

    def close(self) -> None:
        import llama_cpp

        self.use(None)
        for h in self._loras.values():
            llama_cpp.llama_adapter_lora_free(h)
        self._loras.clear()
        self.llm.close()
