"""Where shipped recipes, model cards and data live (repo root; LOCALCHAR_HOME overrides)."""

import os
from pathlib import Path

ROOT = Path(os.environ.get("LOCALCHAR_HOME", Path(__file__).resolve().parent.parent))
RECIPES = ROOT / "recipes"
MODELS = ROOT / "models"
DATA = RECIPES / "data"
CONSTITUTIONS = Path(__file__).resolve().parent / "personas" / "constitutions"


def cache_root() -> Path:
    """Per-user cache: GGUF conversions, llama.cpp's converters, measured rates (LOCALCHAR_CACHE overrides)."""
    base = os.environ.get("LOCALCHAR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "localchar")
    return Path(base)
