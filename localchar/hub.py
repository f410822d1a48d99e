"""Model directories: a local path, or a Hugging Face repo fetched through huggingface_hub
(pinned revision when the model card has one, resumable, cached). Offline (HF_HUB_OFFLINE=1, as in
every test) a model that is not cached is a clear error, never a hang or a download."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import LocalcharError


# config.json sizes that mlx-lm allocates from: each must be a positive integer no larger than the
# largest dimension of any tensor the weights hold (read from the safetensors headers, before
# anything is allocated), and the layer count no more than the layers the weights hold
SIZES = ("hidden_size", "intermediate_size", "vocab_size", "num_attention_heads", "num_key_value_heads",
         "head_dim", "num_hidden_layers", "max_position_embeddings")
MAX_HEADER = 100 << 20


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (tensor name -> dtype, shape, offsets), checked against
    the file's size; a LocalcharError naming the file otherwise."""
    from .inputs import loads_json, regular_file

    path = regular_file(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > min(MAX_HEADER, size - 8):
            raise LocalcharError(f"{path}: not a safetensors file ({size} bytes; empty or truncated?)")
        raw = f.read(n)
    try:
        header = loads_json(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        header = None
    if not isinstance(header, dict):
        raise LocalcharError(f"{path}: not a safetensors file (unreadable header)")
    header.pop("__metadata__", None)
    end = 0
    for name, t in header.items():
        if not (isinstance(t, dict) and isinstance(t.get("shape"), list) and isinstance(t.get("data_offsets"), list)
                and len(t["data_offsets"]) == 2 and all(isinstance(x, int) for x in t["shape"] + t["data_offsets"])):
            raise LocalcharError(f"{path}: tensor '{name[:60]}' has a malformed header entry")
        end = max(end, t["data_offsets"][1])
    if 8 + n + end > size:
        raise LocalcharError(f"{path}: truncated ({size} bytes; the header describes {8 + n + end})")
    return header


def _check_sizes(cfg: dict, cfg_path: Path, weights: list[Path]) -> None:
    tables = [cfg] + [v for k, v in cfg.items() if k.endswith("_config") and isinstance(v, dict)]
    for t in tables:
        for k in SIZES:
            v = t.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise LocalcharError(f"{cfg_path}: {k}: expected a positive integer, got {json.dumps(v)[:40]}")
    if not weights:
        return
    dims, layers = [], 0
    for w in weights:
        for name, t in safetensors_header(w).items():
            dims += t["shape"]
            parts = name.split(".")
            for a, b in zip(parts, parts[1:]):
                if a in ("layers", "h", "blocks") and b.isdigit():
                    layers = max(layers, int(b) + 1)
    biggest = max(dims, default=0)
    for t in tables:
        for k in ("hidden_size", "intermediate_size", "vocab_size"):
            if t.get(k, 0) > biggest:
                raise LocalcharError(f"{cfg_path}: {k} = {t[k]} is larger than any tensor in the weights "
                                     f"(largest dimension {biggest}): config and weights do not match")
        n = t.get("num_hidden_layers", 0)
        if layers and n > layers:
            raise LocalcharError(f"{cfg_path}: num_hidden_layers = {n}, but the weights hold {layers} layers")


def check_model_dir(d: Path) -> Path:
    """A directory MLX can load: config.json with a model_type that mlx-lm implements, sizes that
    the weights files bear out, and weights files that are whole."""
    import importlib.util

    from .inputs import directory, read_json

    d = directory(d, "model")
    cfg_path = d / "config.json"
    if not cfg_path.exists():
        raise LocalcharError(f"{d}: not a model directory (no config.json)")
    cfg = read_json(cfg_path, limit=16 << 20)
    if not isinstance(cfg, dict):
        raise LocalcharError(f"{cfg_path}: expected a JSON object")
    model_type = cfg.get("model_type")
    if not model_type:
        raise LocalcharError(f"{cfg_path}: no 'model_type'")
    if not isinstance(model_type, str):
        raise LocalcharError(f"{cfg_path}: model_type: expected a string, got {json.dumps(model_type)[:40]}")
    from mlx_lm.utils import MODEL_REMAPPING

    name = MODEL_REMAPPING.get(model_type, model_type)
    if not name.isidentifier() or importlib.util.find_spec(f"mlx_lm.models.{name}") is None:
        raise LocalcharError(f"{cfg_path}: unsupported architecture '{model_type[:40]}' (mlx-lm has no implementation)")
    _check_sizes(cfg, cfg_path, sorted(d.glob("*.safetensors")))
    return d


def mlx_quantized(model_dir: str | Path) -> bool:
    """Whether a model directory holds quantized weights (MLX's `quantization`, or a HF
    `quantization_config`): such weights cannot be converted to GGUF or run unquantized."""
    cfg = Path(model_dir) / "config.json"
    if not cfg.is_file():
        return False
    from .inputs import read_json

    c = read_json(cfg)
    if not isinstance(c, dict):
        return False
    return bool(c.get("quantization") or c.get("quantization_config"))


def card_source(card) -> str:
    """Where a model card's weights come from: a packaged GGUF's dequantized directory (made once),
    else its local path, MLX conversion or hub id."""
    if card.package.name:
        from .packaged import model_dir

        return str(model_dir(card))
    return card.path or card.mlx_id or card.hf_id


def resolve_model(path_or_id: str | Path, revision: str | None = None) -> Path:
    p = Path(path_or_id)
    if p.exists():
        return check_model_dir(p)
    text = str(path_or_id)
    if p.is_absolute() or text.startswith(".") or text.count("/") != 1:
        raise LocalcharError(f"{text}: model directory not found (and not a Hugging Face repo id like 'org/name')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    try:
        d = snapshot_download(text, revision=revision or None, local_files_only=offline)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise LocalcharError(f"model '{text}' is not in the local Hugging Face cache and downloads are off "
                             f"(HF_HUB_OFFLINE=1 or no network); fetch it once online: hf download {text}") from None
    except GatedRepoError:
        raise LocalcharError(f"model '{text}' is gated: accept its licence on huggingface.co, then `hf auth login`") \
            from None
    except RepositoryNotFoundError:
        raise LocalcharError(f"model '{text}': no such repository on the Hugging Face hub (or no access)") from None
    except RevisionNotFoundError:
        raise LocalcharError(f"model '{text}': revision '{revision}' not found") from None
    return check_model_dir(Path(d))
