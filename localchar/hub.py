"""Model directories: a local path, or a Hugging Face repo fetched through huggingface_hub
(pinned revision when the model card has one, resumable, cached). Offline (HF_HUB_OFFLINE=1, as in
every test) a model that is not cached is a clear error, never a hang or a download."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import LocalcharError


def check_model_dir(d: Path) -> Path:
    """A directory MLX can load: config.json with a model_type that mlx-lm implements."""
    import importlib.util

    d = Path(d)
    cfg_path = d / "config.json"
    if not cfg_path.exists():
        raise LocalcharError(f"{d}: not a model directory (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise LocalcharError(f"{cfg_path}: invalid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise LocalcharError(f"{cfg_path}: expected a JSON object")
    model_type = cfg.get("model_type")
    if not model_type:
        raise LocalcharError(f"{cfg_path}: no 'model_type'")
    from mlx_lm.utils import MODEL_REMAPPING

    name = MODEL_REMAPPING.get(model_type, model_type)
    if importlib.util.find_spec(f"mlx_lm.models.{name}") is None:
        raise LocalcharError(f"{cfg_path}: unsupported architecture '{model_type}' (mlx-lm has no implementation)")
    return d


def mlx_quantized(model_dir: str | Path) -> bool:
    """Whether a model directory holds quantized weights (MLX's `quantization`, or a HF
    `quantization_config`): such weights cannot be converted to GGUF or run unquantized."""
    cfg = Path(model_dir) / "config.json"
    if not cfg.is_file():
        return False
    c = json.loads(cfg.read_text())
    return bool(c.get("quantization") or c.get("quantization_config"))


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
