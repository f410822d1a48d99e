import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# In-process tests use small models; whole-recipe tests go through the CLI, which preloads the
# fast BLAS itself (localchar/blas.py).

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The random tiny Gemma-3-shaped model (no instruction tuning), built once per session."""
    from localchar.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "model")
