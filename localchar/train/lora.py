"""LoRA adapters in mlx-lm's own format (adapters.safetensors + adapter_config.json)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ..store import write_json

ADAPTER_FILE = "adapters.safetensors"
CONFIG_FILE = "adapter_config.json"


def lora_config(rank: int, scale: float, dropout: float, keys: list[str] | None) -> dict:
    cfg = {"rank": int(rank), "scale": float(scale), "dropout": float(dropout)}
    if keys:
        cfg["keys"] = list(keys)
    return cfg


def add_lora(model, num_layers: int, params: dict, seed: int = 0) -> None:
    """Freeze the model and wrap the last `num_layers` blocks' linears (-1 = all) in fresh LoRA.
    The random A matrices come from `seed` (MLX's global generator starts from the clock)."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    mx.random.seed(seed)
    model.freeze()
    n = len(model.layers) if num_layers < 0 else num_layers
    linear_to_lora_layers(model, n, dict(params))


def stack_lora(model, params: dict, seed: int = 0) -> int:
    """Train a new LoRA on top of the adapter already applied: every LoRA wrapper becomes the frozen
    base of a fresh one. The model is then base + frozen delta + trainable delta, exactly, with
    no fusing (fusing into a 4-bit base would requantize, rounding the first delta away), and the
    new adapter saves under the same module names as one trained on the bare base. Returns the
    number of wrapped layers."""
    from mlx_lm.tuner.lora import LoRALinear

    wrapped = lora_modules(model)
    if not wrapped:
        raise ValueError("stack_lora: no adapter applied to stack on")
    mx.random.seed(seed)
    model.freeze()
    new = []
    for name, inner in wrapped:
        in_dims, out_dims = inner.lora_a.shape[0], inner.lora_b.shape[1]
        outer = LoRALinear(in_dims, out_dims, r=params["rank"], dropout=params.get("dropout", 0.0),
                           scale=params["scale"])
        outer.linear = inner
        new.append((name, outer))
    model.update_modules(tree_unflatten(new))
    return len(new)


def remove_lora(model) -> None:
    from mlx_lm.tuner.utils import remove_lora_layers

    remove_lora_layers(model)


def save_adapter(model, out: Path, num_layers: int, params: dict, extra: dict | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    tmp = out / f".{ADAPTER_FILE}.tmp.safetensors"
    mx.save_safetensors(str(tmp), weights)
    tmp.replace(out / ADAPTER_FILE)
    write_json(out / CONFIG_FILE, {"fine_tune_type": "lora", "num_layers": num_layers,
                                   "lora_parameters": params, **(extra or {})})


def read_adapter(path: Path) -> tuple[dict, dict]:
    """(adapter_config, weights); a missing, malformed or truncated file is a LocalcharError naming it."""
    from ..errors import LocalcharError

    from ..config import LoraCfg, check_option
    from ..hub import safetensors_header
    from ..inputs import directory, read_json

    path = directory(path, "adapter")
    if not (path / CONFIG_FILE).exists():
        raise LocalcharError(f"{path / CONFIG_FILE}: missing (not an mlx-lm adapter directory)")
    cfg = read_json(path / CONFIG_FILE, limit=1 << 20)
    where = path / CONFIG_FILE
    lp = cfg.get("lora_parameters") if isinstance(cfg, dict) else None
    if not isinstance(lp, dict):
        raise LocalcharError(f"{where}: not an mlx-lm LoRA adapter config (no 'lora_parameters' table)")
    # the same types and ranges as the recipe's lora table (config.LoraCfg)
    for field, key, v in (("rank", "lora_parameters.rank", lp.get("rank")),
                          ("scale", "lora_parameters.scale", lp.get("scale")),
                          ("dropout", "lora_parameters.dropout", lp.get("dropout", 0.0)),
                          ("num_layers", "num_layers", cfg.get("num_layers"))):
        check_option(LoraCfg, field, v, key, str(where))
    safetensors_header(path / ADAPTER_FILE)  # whole and well-formed before MLX reads it
    try:
        weights = dict(mx.load(str(path / ADAPTER_FILE)))
    except Exception as e:  # mlx raises plain RuntimeError/ValueError for unreadable files
        raise LocalcharError(f"{path / ADAPTER_FILE}: unreadable (truncated or not safetensors: {e})") from None
    return cfg, weights


def check_adapter(model, path: Path, weights: dict) -> None:
    """Every LoRA matrix must name a linear layer of this model and fit its shape."""
    from ..errors import LocalcharError

    modules = dict(model.named_modules())
    for key, w in weights.items():
        if "." not in key:
            raise LocalcharError(f"{path}: '{key}' is not a LoRA weight name (adapter for another tool?)")
        name, kind = key.rsplit(".", 1)
        m = modules.get(name)
        m = getattr(m, "linear", m)  # already wrapped
        if m is None or not hasattr(m, "weight") or kind not in ("lora_a", "lora_b"):
            raise LocalcharError(f"{path}: '{key}' does not match a linear layer of this model (adapter for "
                                 "another model?)")
        out_dims, in_dims = m.weight.shape
        if hasattr(m, "bits"):
            in_dims = in_dims * 32 // m.bits
        if w.ndim != 2 or (kind == "lora_a" and w.shape[0] != in_dims) or (kind == "lora_b" and w.shape[1] != out_dims):
            raise LocalcharError(f"{path}: '{key}' has shape {tuple(w.shape)}, which does not fit this model's "
                                 f"{in_dims}->{out_dims} layer (adapter for another model?)")


def apply_adapter(model, path: Path | None, strength: float = 1.0) -> None:
    """Swap the adapter on an already loaded base model (no reload of the base weights).

    `strength` scales the adapter's delta (persona_strength); 0 gives the base model.
    """
    from mlx_lm.tuner.lora import LoRALinear

    if any(isinstance(m, LoRALinear) for _, m in model.named_modules()):
        remove_lora(model)
    if path is None:
        return
    cfg, weights = read_adapter(path)
    check_adapter(model, path, weights)
    params = dict(cfg["lora_parameters"])
    params["scale"] = params["scale"] * strength
    add_lora(model, cfg["num_layers"], params)
    model.load_weights(list(weights.items()), strict=False)
    mx.eval(model.parameters())


def lora_modules(model):
    from mlx_lm.tuner.lora import LoRALinear

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


@contextmanager
def adapters_disabled(model):
    """The reference policy: every LoRA wrapper temporarily replaced by its frozen base layer."""
    wrapped = lora_modules(model)
    model.update_modules(tree_unflatten([(n, m.linear) for n, m in wrapped]))
    try:
        yield model
    finally:
        model.update_modules(tree_unflatten(wrapped))


def fuse_lora(model) -> None:
    """Fold the current LoRA deltas into the base weights in memory (W <- W + scale * B^T A^T)."""
    fused = [(n, m.fuse()) for n, m in lora_modules(model)]
    if fused:
        model.update_modules(tree_unflatten(fused))


def merge_adapters(parts: list[tuple[Path, float]], out: Path) -> dict:
    """Exact weighted sum of LoRA adapters by concatenating ranks.

    With y = W x + s (x A) B, the sum  sum_i w_i s_i (x A_i) B_i  equals  s (x [A_1 .. A_n]) [B_1'; ..; B_n']
    where B_i' = B_i * w_i * s_i / s. (PEFT's "linear" mix averages A and B separately and so adds
    cross terms; concatenation has none.)
    """
    cfgs, weights = zip(*(read_adapter(p) for p, _ in parts))
    layers = {c["num_layers"] for c in cfgs}
    keysets = {tuple(sorted(c["lora_parameters"].get("keys") or [])) for c in cfgs}
    if len(layers) != 1 or len(keysets) != 1:
        raise ValueError("merge needs adapters over the same layers and keys")
    s = cfgs[0]["lora_parameters"]["scale"]
    modules = sorted({k.rsplit(".", 1)[0] for k in weights[0]})
    merged = {}
    for mod in modules:
        a = [w[f"{mod}.lora_a"] for w in weights]
        b = [w[f"{mod}.lora_b"] * (wt * c["lora_parameters"]["scale"] / s)
             for w, c, (_, wt) in zip(weights, cfgs, parts)]
        merged[f"{mod}.lora_a"] = mx.concatenate(a, axis=1)
        merged[f"{mod}.lora_b"] = mx.concatenate(b, axis=0)
    rank = sum(c["lora_parameters"]["rank"] for c in cfgs)
    params = {**cfgs[0]["lora_parameters"], "rank": rank, "scale": s, "dropout": 0.0}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / ADAPTER_FILE), merged)
    write_json(out / CONFIG_FILE, {"fine_tune_type": "lora", "num_layers": layers.pop(),
                                   "lora_parameters": params,
                                   "merged_from": [{"adapter": str(p), "weight": w} for p, w in parts]})
    return params
