"""Sigmoid DPO with LoRA in MLX, plus a length-normalised NLL term on the chosen side.

The reference policy is the same model with its LoRA switched off (no second model in memory).
Because a fresh LoRA starts at zero, the reference log-probs are computed once per pair before
training and cached: at step 1 policy == reference and the loss is exactly ln 2.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .lora import adapters_disabled
from .loop import encode_chat, pad_batch, token_logps


def encode_pair(tokenizer, pair: dict):
    """(chosen ids, chosen mask), (rejected ids, rejected mask): loss only on the assistant reply."""
    return encode_chat(tokenizer, pair["chosen"]), encode_chat(tokenizer, pair["rejected"])


def pair_batch(rows):
    """rows: [((c_ids, c_mask), (r_ids, r_mask), ref_c, ref_r)] -> chosen rows then rejected rows."""
    toks, masks = pad_batch([r[0] for r in rows] + [r[1] for r in rows])
    ref = mx.array([r[2] for r in rows] + [r[3] for r in rows])
    return toks, masks, ref


def sequence_logps(model, toks, masks):
    lp = token_logps(model, toks)
    return (lp * masks).sum(-1), masks.sum(-1)


def reference_logps(model, encoded: list, batch_size: int = 8) -> list[tuple[float, float]]:
    out = []
    with adapters_disabled(model):
        for i in range(0, len(encoded), batch_size):
            chunk = encoded[i:i + batch_size]
            toks, masks = pad_batch([c for c, _ in chunk] + [r for _, r in chunk])
            lp, _ = sequence_logps(model, toks, masks)
            lp = mx.stop_gradient(lp)
            mx.eval(lp)
            n = len(chunk)
            out += list(zip(lp[:n].tolist(), lp[n:].tolist()))
    return out


def make_dpo_loss(beta: float, nll_coef: float):
    def loss_fn(model, toks, masks, ref):
        logps, ntok = sequence_logps(model, toks, masks)
        B = logps.shape[0] // 2
        chosen, rejected = logps[:B], logps[B:]
        margin = beta * ((chosen - ref[:B]) - (rejected - ref[B:]))
        dpo = -nn.log_sigmoid(margin).mean()
        nll = -(chosen / mx.maximum(ntok[:B], 1)).mean()
        loss = dpo + nll_coef * nll
        return loss, {"dpo_loss": dpo, "nll": nll, "reward_accuracy": (margin > 0).astype(mx.float32).mean(),
                      "reward_margin": (margin / beta).mean(), "chosen_logp": chosen.mean(),
                      "rejected_logp": rejected.mean()}
    return loss_fn
