"""Where shipped recipes, model cards and data live (repo root; LOCALCHAR_HOME overrides)."""

import os
from pathlib import Path

ROOT = Path(os.environ.get("LOCALCHAR_HOME", Path(__file__).resolve().parent.parent))
RECIPES = ROOT / "recipes"
MODELS = ROOT / "models"
DATA = RECIPES / "data"
CONSTITUTIONS = Path(__file__).resolve().parent / "personas" / "constitutions"
