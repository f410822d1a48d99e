"""GGUF export for llama.cpp: one base GGUF per model and one GGUF LoRA per persona adapter.

The conversion itself is llama.cpp's own (`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`),
taken from the llama-cpp-python sdist whose runtime reads the files, so writer and reader agree on
the format. `./setup.sh` extracts those scripts into the cache (nothing of llama.cpp is in this
repo); LOCALCHAR_LLAMA_CPP_DIR points at another llama.cpp checkout instead. Quantisation goes
through llama.cpp's C API (`llama_model_quantize`).

An mlx-lm adapter becomes a PEFT adapter first (A and B transposed, `lora_alpha = scale x rank`,
since llama.cpp scales by alpha / rank where mlx-lm scales by `scale`). The exact merge of step 2
is an ordinary adapter of summed rank, so it converts like any other.

Engines call `base_gguf` / `lora_gguf`, which convert once into a content-addressed cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import LocalcharError
from .hub import mlx_quantized
from .paths import cache_root
from .store import sha256_tree

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist setup.sh takes the converters from
QUANTS = {"f32": None, "f16": None, "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def converter_dir() -> Path:
    d = Path(os.environ.get("LOCALCHAR_LLAMA_CPP_DIR") or cache_root() / f"llama.cpp-{LLAMA_CPP_PYTHON}")
    if not (d / "convert_hf_to_gguf.py").is_file() or not (d / "convert_lora_to_gguf.py").is_file():
        raise LocalcharError(
            f"{d}: llama.cpp's GGUF converters are not there. Run ./setup.sh (it extracts them from the "
            f"llama-cpp-python {LLAMA_CPP_PYTHON} sdist) or set LOCALCHAR_LLAMA_CPP_DIR to a llama.cpp checkout")
    return d


def _convert(script: str, args: list[str]) -> None:
    cmd = [sys.executable, str(converter_dir() / script), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-6:])
        raise LocalcharError(f"{script} failed (exit {p.returncode}) on {args[-1]}:\n{tail}")


def check_convertible(model_dir: Path) -> dict:
    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise LocalcharError(f"{model_dir}: no config.json (GGUF export needs a Hugging Face / MLX model directory)")
    cfg = json.loads(cfg_path.read_text())
    if mlx_quantized(model_dir):
        raise LocalcharError(
            f"{cfg_path}: quantization: an MLX-quantized model cannot be converted to GGUF; export the "
            "unquantized base (an adapter trained on the 4-bit model applies to it) and pick --quant instead")
    if "gemma" in str(cfg.get("model_type", "")) and not (model_dir / "tokenizer.model").is_file():
        raise LocalcharError(f"{model_dir}: no tokenizer.model (Gemma's GGUF vocabulary is built from it; "
                             "copy it from the original checkpoint)")
    return cfg


def quantize(src: Path, dst: Path, quant: str) -> None:
    from .backends.llama_cpp import _require

    llama_cpp = _require()

    if QUANTS.get(quant) is None:
        raise LocalcharError(f"--quant: '{quant}' is not one of {', '.join(QUANTS)}")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, QUANTS[quant])
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), p) != 0:
        raise LocalcharError(f"{src}: llama.cpp could not quantize it to {quant}")


def write_base(model_dir: Path, out: Path, quant: str = "f16") -> Path:
    """Convert the model to `out` (a .gguf file) at f16 (f32 if asked), then quantize through llama.cpp."""
    if quant not in QUANTS:
        raise LocalcharError(f"--quant: '{quant}' is not one of {', '.join(QUANTS)}")
    check_convertible(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".gguf-") as tmp:
        f16 = Path(tmp) / "f.gguf"
        outtype = "f32" if quant == "f32" else "f16"
        _convert("convert_hf_to_gguf.py", ["--outtype", outtype, "--outfile", str(f16), str(model_dir)])
        check_special_tokens(f16, model_dir)
        if QUANTS[quant] is None:
            os.replace(f16, out)
        else:
            q = Path(tmp) / "q.gguf"
            quantize(f16, q, quant)
            os.replace(q, out)
    return out


def special_tokens(model_dir: Path) -> list[str]:
    """The source tokenizer's added special tokens (Gemma's <start_of_turn>, Qwen's <|im_start|>...),
    from tokenizer_config.json or else tokenizer.json."""
    model_dir = Path(model_dir)
    tc, tj = model_dir / "tokenizer_config.json", model_dir / "tokenizer.json"
    if tc.is_file():
        added = list((json.loads(tc.read_text()).get("added_tokens_decoder") or {}).values())
    else:
        added = json.loads(tj.read_text()).get("added_tokens") or [] if tj.is_file() else []
    return sorted({t["content"] for t in added if t.get("special", True) and t.get("content")})


def check_special_tokens(path: Path, model_dir: Path) -> None:
    """Each special token of the source tokenizer must stay one token in the GGUF (a converter that
    loses them splits the chat-turn markers into characters, and every prompt changes)."""
    from .backends.llama_cpp import _require

    llm = _require().Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        for marker in special_tokens(model_dir):
            if len(llm.tokenize(marker.encode(), add_bos=False, special=True)) != 1:
                raise LocalcharError(f"{path}: {marker} is not one token in the GGUF vocabulary "
                                     "(the converter did not see the tokenizer's special tokens)")
    finally:
        llm.close()


def to_peft(adapter_dir: Path, dst: Path) -> None:
    """Write an mlx-lm LoRA adapter as a PEFT adapter (what llama.cpp's LoRA converter reads)."""
    import mlx.core as mx
    import numpy as np
    from safetensors.numpy import save_file

    from .train.lora import read_adapter

    cfg, weights = read_adapter(Path(adapter_dir))
    if cfg.get("fine_tune_type", "lora") != "lora":
        raise LocalcharError(f"{adapter_dir}/adapter_config.json: fine_tune_type: only plain LoRA converts to GGUF")
    lp = cfg["lora_parameters"]
    tensors, targets = {}, set()
    for k, v in weights.items():
        mod, leaf = k.rsplit(".", 1)
        mod = mod.removeprefix("language_model.")
        a = np.ascontiguousarray(np.asarray(v.astype(mx.float32)).T)
        if leaf not in ("lora_a", "lora_b"):
            raise LocalcharError(f"{adapter_dir}/adapters.safetensors: unexpected tensor '{k}'")
        tensors[f"base_model.model.{mod}.{'lora_A' if leaf == 'lora_a' else 'lora_B'}.weight"] = a
        targets.add(mod.rsplit(".", 1)[-1])
    dst.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dst / "adapter_model.safetensors"))
    (dst / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lp["rank"], "lora_alpha": lp["scale"] * lp["rank"],
        "lora_dropout": 0.0, "target_modules": sorted(targets), "base_model_name_or_path": "",
        "bias": "none", "fan_in_fan_out": False}, indent=2))


def write_lora(adapter_dir: Path, model_dir: Path, out: Path, outtype: str = "f16") -> Path:
    check_convertible(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".lora-") as tmp:
        peft = Path(tmp) / "peft"
        to_peft(adapter_dir, peft)
        f = Path(tmp) / "lora.gguf"
        _convert("convert_lora_to_gguf.py", ["--base", str(model_dir), "--outtype", outtype, "--outfile", str(f),
                                             str(peft)])
        os.replace(f, out)
    return out


# --- content-addressed cache used by the engines -------------------------------------------------

def fingerprint(model_dir: Path) -> str:
    """Small files by content, large weight files by name, size and mtime (hashing 8 GB per engine
    open would cost more than the generation it serves)."""
    h = hashlib.sha256(f"llama-cpp-python {LLAMA_CPP_PYTHON}".encode())
    for p in sorted(q for q in Path(model_dir).rglob("*") if q.is_file()):
        st = p.stat()
        h.update(str(p.relative_to(model_dir)).encode())
        h.update(sha256_tree(p).encode() if st.st_size < (64 << 20) else f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _cached(name: str, make) -> Path:
    path = cache_root() / "gguf" / name
    if not path.is_file():
        make(path)
    return path


def base_gguf(model_dir: Path, quant: str = "f16") -> Path:
    return _cached(f"base-{fingerprint(model_dir)[:16]}-{quant}.gguf", lambda p: write_base(model_dir, p, quant))


def lora_gguf(adapter_dir: Path, model_dir: Path) -> Path:
    key = hashlib.sha256((sha256_tree(adapter_dir) + fingerprint(model_dir)).encode()).hexdigest()[:16]
    return _cached(f"lora-{key}-f16.gguf", lambda p: write_lora(adapter_dir, model_dir, p))


def adapter_label(adapter_dir: Path) -> str:
    """A file name for an adapter: its directory, or the stage instance above a dir called 'adapter'."""
    p = Path(adapter_dir).resolve()
    return p.parent.name if p.name == "adapter" else p.name


def export(model_dir: Path, adapters: list[Path], out: Path, quant: str = "f16") -> dict:
    """`localchar export gguf`: base GGUF + one LoRA GGUF per adapter in `out`."""
    out = Path(out)
    base = write_base(Path(model_dir), out / f"base-{quant}.gguf", quant)
    loras = {}
    for a in adapters:
        label = adapter_label(a)
        if label in loras:
            raise LocalcharError(f"{a}: two adapters would both be written as {label}-lora-f16.gguf")
        loras[label] = str(write_lora(Path(a), Path(model_dir), out / f"{label}-lora-f16.gguf"))
    return {"base": str(base), "quant": quant, "loras": loras}
