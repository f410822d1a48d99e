import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# GGUF conversions and measured rates go to a cache of the test session, not the user's; llama.cpp's
# converters stay where setup.sh put them
if "LOCALCHAR_LLAMA_CPP_DIR" not in os.environ:
    from localchar.gguf import LLAMA_CPP_PYTHON
    from localchar.paths import cache_root

    os.environ["LOCALCHAR_LLAMA_CPP_DIR"] = str(cache_root() / f"llama.cpp-{LLAMA_CPP_PYTHON}")
import tempfile  # noqa: E402

os.environ["LOCALCHAR_CACHE"] = tempfile.mkdtemp(prefix="localchar-test-cache-")
# In-process tests use small models; whole-recipe tests go through the CLI, which preloads the
# fast BLAS itself (localchar/blas.py).

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The random tiny Gemma-3-shaped model (no instruction tuning), built once per session."""
    from localchar.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "model")
