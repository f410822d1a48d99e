"""What a recipe will cost before it runs: tokens per stage from the recipe and its data, and hours
on a stated machine from public MLX throughput figures (`localchar recipe NAME --dry-run`).

Every number here is an estimate and the dry-run says so. The token counts are close (they come
from the real prompt files and the recipe's sizes); the hours rest on the rates below, which are
scaled from published measurements (see docs/fidelity.md), not measured on the machine named.
"""

from __future__ import annotations

from dataclasses import dataclass

# Answers rarely use their whole budget; generated tokens are counted at this share of max_tokens.
FILL = 0.6
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class Machine:
    name: str
    ref_params_b: float   # the model size the rates below are for (4-bit weights)
    decode: float         # tok/s, one sequence
    prefill: float        # tok/s
    train: float          # LoRA forward + backward tok/s (QLoRA, batch 2)
    batch_cap: int = 32   # batched decoding gains sqrt(batch) up to this batch

    def decode_rate(self, params_b: float, batch: int) -> float:
        return self.decode * (self.ref_params_b / params_b) * min(max(batch, 1), self.batch_cap) ** 0.5

    def prefill_rate(self, params_b: float) -> float:
        return self.prefill * self.ref_params_b / params_b

    def train_rate(self, params_b: float) -> float:
        return self.train * self.ref_params_b / params_b


# Decode is memory-bound: M2 Max (400 GB/s) against the published M4 Max (546 GB/s) 135 tok/s and
# M3 Pro (150 GB/s) 45 tok/s for a 4-bit 4B model. Prefill about 1.2k tok/s (M4 Max 1.6-1.8k,
# M3 Pro 0.6k). LoRA training: 420 tok/s published for Gemma-3-4B 4-bit QLoRA at batch 2 on an M1
# Ultra (about 21 TFLOPS); an M2 Max has about 13.6, so about 270. sqrt(batch) decoding gain: mlx-lm
# PR #468 reports 6.1x at batch 32 (sqrt(32) = 5.7).
MAC = Machine("Apple M2 Max (38-core GPU), 32 GB, MLX, 4-bit weights", ref_params_b=4.0,
              decode=100.0, prefill=1200.0, train=270.0)

# A 16 GB Mac: base M4 (10-core GPU, 120 GB/s). Decode: the M3 Pro's published 44.6 tok/s scaled
# by bandwidth (150 -> 120 GB/s) is 36; llama.cpp's published base-M4 16 GB Llama-3.1-8B Q4_K_M
# 20.9 tok/s, scaled to a model half the size, is ~40: so 38. Prefill and training are compute-bound:
# the M3 Pro's 615 tok/s prefill scaled by GPU FP32 throughput (~5.7-7.4 -> ~4.3 TFLOPS) is 350-460,
# the lower end taken; LoRA 420 tok/s on the M1 Ultra (~21 TFLOPS) scaled is ~86, and 16 GB means
# batch 1 with gradient checkpointing (published on the M1 Ultra: 350 vs 420 tok/s), so ~70. Memory
# caps batched decoding at about 8 rows of a 4B model's KV cache next to its weights.
M4_16 = Machine("Apple M4 (10-core GPU), 16 GB, MLX, 4-bit weights", ref_params_b=4.0,
                decode=38.0, prefill=350.0, train=70.0, batch_cap=8)

MACHINES = {"m2max-32": MAC, "m4-16": M4_16}


@dataclass
class Work:
    """What one stage instance does, in tokens. `on` is the model card that does it ("" = none)."""
    on: str = ""
    prefill: float = 0.0
    generate: float = 0.0
    train: float = 0.0
    batch: int = 1
    what: str = ""

    def hours(self, params_b: float, machine: Machine = MAC) -> float:
        if not params_b:
            return 0.0
        s = 0.0
        if self.prefill:
            s += self.prefill / machine.prefill_rate(params_b)
        if self.generate:
            s += self.generate / machine.decode_rate(params_b, self.batch)
        if self.train:
            s += self.train / machine.train_rate(params_b)
        return s / 3600

    def tokens(self) -> str:
        parts = [(self.prefill, "prefill"), (self.generate, "gen"), (self.train, "train")]
        return ", ".join(f"{_short(v)} {k}" for v, k in parts if v) or "-"


def _short(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def text_tokens(text: str) -> float:
    return len(text) / CHARS_PER_TOKEN


def mean_tokens(texts: list[str]) -> float:
    return sum(map(text_tokens, texts)) / max(len(texts), 1)


def answer_tokens(sampling) -> float:
    return FILL * sampling.max_tokens


# --- rates measured on this machine ---------------------------------------------------------------
GENERATION_STAGES = ("student", "introspection", "chat_eval", "agent")
TRAINING_STAGES = ("dpo", "sft")


@dataclass(frozen=True)
class Measured:
    """Throughput a finished run of this model card measured here: generation (prompt + generated
    tokens per second of generation-stage wall time, at the recipe's own batch sizes) and training
    tokens per second. Used by the dry-run next to the published-rate estimate."""
    name: str
    gen: float
    train: float
    params_b: float

    def hours(self, work: Work, params_b: float) -> float:
        scale = params_b / self.params_b if self.params_b and params_b else 1.0
        s = (work.prefill + work.generate) / self.gen if self.gen else 0.0
        s += work.train / self.train if self.train else 0.0
        return s * scale / 3600


def _rates_file():
    from .paths import cache_root

    return cache_root() / "rates.json"


def _rates_key(card_name: str, engine: str) -> str:
    import platform

    return f"{platform.node()}|{card_name}|{engine}"


def record_rates(card, engine: str, timings: list[dict], run_dir) -> None:
    """Keep what a run measured (per host, model card and engine) for later dry-runs."""
    import time

    from .store import read_json, write_json

    t = {r["stage"]: r for r in timings}
    gen_s = sum(t[s]["seconds"] for s in GENERATION_STAGES if s in t)
    gen_tok = sum(t[s].get("prefill", 0) + t[s].get("generated", 0) for s in GENERATION_STAGES if s in t)
    tr_s = sum(t[s]["seconds"] for s in TRAINING_STAGES if s in t)
    tr_tok = sum(t[s].get("trained", 0) for s in TRAINING_STAGES if s in t)
    if gen_s < 1 or tr_s < 1 or not gen_tok or not tr_tok:
        return  # too little ran in this invocation to say anything
    path = _rates_file()
    try:
        rates = read_json(path) if path.exists() else {}
    except Exception:  # a damaged cache file is rebuilt, never fatal
        rates = {}
    rates[_rates_key(card.name, engine)] = {"gen": round(gen_tok / gen_s, 1), "train": round(tr_tok / tr_s, 1),
                                            "params_b": card.params_b, "run": str(run_dir),
                                            "date": time.strftime("%Y-%m-%d")}
    write_json(path, rates)


def measured(card, engine: str) -> Measured | None:
    from .store import read_json

    path = _rates_file()
    try:
        r = (read_json(path) if path.exists() else {}).get(_rates_key(card.name, engine))
    except Exception:
        return None
    if not r:
        return None
    return Measured(f"this machine ({engine}, measured {r['date']} in {r['run']})", r["gen"], r["train"],
                    r.get("params_b") or 0.0)
