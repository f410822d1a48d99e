"""Sigmoid DPO with LoRA in MLX, plus OCT's two extra terms: a length-normalised NLL on the chosen
answer and (from OCT's OpenRLHF fork) a per-token KL penalty, the mean squared log-ratio between
policy and reference over the answer tokens of both sides.

The reference policy is the same model with its LoRA switched off (no second model in memory).
Because a fresh LoRA starts at zero, the reference per-token log-probs are computed once per pair
before training and cached (one forward pass per pair instead of one per step): at step 1 policy ==
reference, the DPO term is exactly ln 2 and the KL term is 0.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .lora import adapters_disabled
from .loop import encode_chat, pad_batch, token_logps


def encode_pair(tokenizer, pair: dict):
    """(chosen ids, chosen mask), (rejected ids, rejected mask): loss only on the assistant reply."""
    return encode_chat(tokenizer, pair["chosen"]), encode_chat(tokenizer, pair["rejected"])


def _pad(arrays: list[np.ndarray], width: int) -> mx.array:
    out = np.zeros((len(arrays), width), dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return mx.array(out)


def pair_batch(rows):
    """rows: [((c_ids, c_mask), (r_ids, r_mask), ref_c, ref_r)] with per-token reference log-probs
    -> (tokens, target masks, reference log-probs), chosen rows first, then rejected rows."""
    toks, masks = pad_batch([r[0] for r in rows] + [r[1] for r in rows])
    ref = _pad([r[2] for r in rows] + [r[3] for r in rows], masks.shape[1])
    return toks, masks, ref


def reference_logps(model, encoded: list, batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-token log-probs of every pair's chosen and rejected chat under the model with its LoRA
    switched off: [(chosen (len-1,), rejected (len-1,))]."""
    out = []
    with adapters_disabled(model):
        for i in range(0, len(encoded), batch_size):
            chunk = encoded[i:i + batch_size]
            seqs = [c for c, _ in chunk] + [r for _, r in chunk]
            toks, masks = pad_batch(seqs)
            lp = mx.stop_gradient(token_logps(model, toks, masks))
            lp = np.array(lp.astype(mx.float32))
            rows = [lp[k, :len(ids) - 1].copy() for k, (ids, _) in enumerate(seqs)]
            n = len(chunk)
            out += list(zip(rows[:n], rows[n:]))
    return out


def make_dpo_loss(beta: float, nll_coef: float, kl_coef: float = 0.0):
    def loss_fn(model, toks, masks, ref):
        lp = token_logps(model, toks, masks)
        logps = (lp * masks).sum(-1)
        ref_logps = (ref * masks).sum(-1)
        ntok = masks.sum(-1)
        B = logps.shape[0] // 2
        chosen, rejected = logps[:B], logps[B:]
        margin = beta * ((chosen - ref_logps[:B]) - (rejected - ref_logps[B:]))
        dpo = -nn.log_sigmoid(margin).mean()
        nll = -(chosen / mx.maximum(ntok[:B], 1)).mean()
        kl = (((lp - ref) ** 2) * masks).sum() / mx.maximum(masks.sum(), 1)
        loss = dpo + nll_coef * nll + kl_coef * kl
        return loss, {"dpo_loss": dpo, "nll": nll, "kl": kl,
                      "reward_accuracy": (margin > 0).astype(mx.float32).mean(),
                      "reward_margin": (margin / beta).mean(), "chosen_logp": chosen.mean(),
                      "rejected_logp": rejected.mean()}
    return loss_fn
