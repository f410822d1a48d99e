"""Generation engines behind one small interface:

    engine.generate(chats, sampling, seed, prefills=None, adapters=None, tools=None) -> list[str]
        # adapters: one per chat (a persona adapter dir or None for the base model), routed per
        # row while the base model stays loaded; without it, the adapter the engine was opened with
    engine.render(messages, prefill="", tools=None)   # the prompt, from the model's own template
    engine.last_usage                                 # (prompt, completion) tokens per row

Engines that keep keys/values between calls say so with `engine.kv_reuse = True`; their generate()
also takes `cache_keys` (one distinct key per row, e.g. an agent rollout's id: the next call with
that key prefills only what its prompt added) and `engine.forget(keys)` releases them.

Engines: mlx (mlx-lm; batched multi-adapter decoding), llama_cpp (llama-cpp-python over GGUF with
GGUF LoRAs), openai (any OpenAI-compatible server), and auto (MLX on Apple silicon, llama.cpp
elsewhere when it is installed, else MLX).
"""

from __future__ import annotations

import platform
from pathlib import Path

ENGINES = ("mlx", "llama_cpp", "openai", "auto")


def llama_cpp_installed() -> bool:
    try:
        import llama_cpp  # noqa: F401  (is it installed?)
    except ImportError:
        return False
    return True


def resolve(name: str) -> str:
    """The engine 'auto' stands for on this machine."""
    if name != "auto":
        return name
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mlx"
    return "llama_cpp" if llama_cpp_installed() else "mlx"


def open_engine(name: str, model_path: str | Path, **kw):
    name = resolve(name)
    if name == "mlx":
        from .mlx import MlxEngine

        return MlxEngine(model_path, **kw)
    if name == "llama_cpp":
        from .llama_cpp import LlamaCppEngine

        if kw.get("quant") in (None, "none"):
            kw["quant"] = "f16"
        return LlamaCppEngine(model_path, **kw)
    if name == "openai":
        from .openai import OpenAIEngine

        kw.pop("quant", None)
        return OpenAIEngine(model_path, **kw)
    from ..errors import LocalcharError

    raise LocalcharError(f"engine '{name}' is not one of {', '.join(ENGINES)}")
