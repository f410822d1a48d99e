"""Generation engines behind one small interface:

    engine.generate(chats, sampling, seed, prefills=None, adapters=None) -> list[str]
        # adapters: one per chat (a persona adapter dir or None for the base model), routed per
        # row while the base model stays loaded; without it, the adapter the engine was opened with

Prompts are rendered once, from the model's own chat template (see `render`), so every engine
sees the same text.
"""

from __future__ import annotations

from pathlib import Path


def open_engine(name: str, model_path: str | Path, **kw):
    if name == "mlx":
        from .mlx import MlxEngine

        return MlxEngine(model_path, **kw)
    from ..errors import LocalcharError

    raise LocalcharError(f"engine '{name}' is not available (engines: mlx; llama_cpp and openai arrive in step 5)")
