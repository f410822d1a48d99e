"""llama.cpp engine (llama-cpp-python's C API): one base GGUF loaded once; persona adapters are GGUF
LoRAs loaded once each and switched on the context (no model reload); prompts come from the GGUF's
own chat template (never one of llama-cpp-python's built-in formats: its "gemma" format drops the
system turn).

Decoding is batched: one llama.cpp context holds `slots` sequences, each in its own KV stream
(`kv_unified = False`, so a sequence's attention reads only its own keys/values), and every step
feeds one `llama_batch` with one token per running row (prompts are prefilled in the same batches,
`n_batch` tokens at a time). Rows are grouped by adapter, since a LoRA applies to the whole
context; within a group, rows beyond the slot count take the slot of the first row that finishes.

Sampling is ours, in numpy, row by row from each row's logits, with mlx-lm's rules (repetition
penalty over the last 20 tokens, prompt included; top-p on the untempered distribution; greedy =
argmax) and one generator per row seeded by derive_seed(seed, row index): no row's random draws
depend on which rows share its batch. Its numbers do, at the rounding level, on f16/f32 weights:
llama.cpp's CPU matmuls pick kernels by batch width (on q8_0 a row gets the same logits in any
batch), and kept keys/values are summed in another order than a fresh prefill's. So, as in the
MLX engine, greedy text matches up to float rounding (a near-tie can go either way); a rerun of
the same calls on a fresh engine reproduces every row.

Keys/values are kept between calls. Every slot remembers the tokens its stream holds; a new row
takes the free slot whose tokens share the longest prefix with its prompt and prefills only the
rest. With `cache_keys` (one per row: an agent rollout's id) a key keeps its slot, so the next
turn of that rollout prefills only what the turn added; `forget(keys)` releases them. Rows of one
call that share a long prompt prefix (a persona's system prompt, a scenario) prefill it once, and
the other slots get a copy of that stream (`llama_memory_seq_cp`). An adapter switch drops every
slot's keys/values (the LoRA changes them); a call's adapter groups start with the adapter already
set, so of two personas alternating call after call, each call keeps one group's slots.

Sliding-window models (Gemma 3) keep only the window's keys/values in their SWA layers, so a slot
is rolled back to a shorter prefix only while the window behind that prefix is still cached
(llama-server's rule); otherwise the row is prefilled from the start.

An MLX/Hugging Face model directory is converted on first use (localchar.gguf, cached by content);
a .gguf file is used as it is.
"""

from __future__ import annotations

import ctypes
import os
from collections import deque
from pathlib import Path

import numpy as np

from ..errors import LocalcharError
from ..store import derive_seed
from .prompt_cache import common_prefix as _lcp

_BACKEND = False


_quiet = None


def _require():
    global _quiet
    try:
        import llama_cpp
    except ImportError:
        raise LocalcharError(
            "engine 'llama_cpp' needs llama-cpp-python: ./setup.sh installs it (extra localchar[gguf]); "
            "see the README's 'llama.cpp' section for Metal / CUDA builds") from None
    if _quiet is None and not os.environ.get("LOCALCHAR_LLAMA_LOG"):
        # llama.cpp's log goes to stderr past verbose=False (its level numbers and the binding's
        # disagree), which scrolls over our progress bars; LOCALCHAR_LLAMA_LOG=1 keeps it
        _quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
    return llama_cpp


class _Slot:
    """One sequence of the context: the tokens its KV stream holds, and the key holding it, if any."""

    __slots__ = ("id", "tokens", "key", "used")

    def __init__(self, i: int):
        self.id, self.tokens, self.key, self.used = i, [], None, 0


class _Row:
    __slots__ = ("i", "prompt", "key", "rng", "slot", "pending", "out", "ended", "budget", "prefilled", "guide")

    def __init__(self, i: int, prompt: list[int], key, seed: int, budget: int):
        self.i, self.prompt, self.key, self.budget = i, prompt, key, budget
        self.rng = np.random.default_rng(seed)
        self.slot: _Slot | None = None
        self.pending: list[int] = []
        self.out: list[int] = []
        self.ended = False
        self.prefilled = 0
        self.guide = None          # agent/grammar.py Guide: the row's logits are masked per step


def sample(logits: np.ndarray, recent: list[int] | None, temperature: float, top_p: float, penalty: float,
           rng: np.random.Generator) -> int:
    """One token from one row's logits, by mlx-lm's rules: repetition penalty on the recent tokens
    (positive logits divided, negative multiplied), then argmax (temperature 0) or top-p on the
    untempered distribution and a categorical draw at `temperature`. Cost: a few passes over the
    vocabulary (262k for Gemma), and a sort of the head only."""
    if penalty != 1.0 and recent:
        logits = np.array(logits, dtype=np.float32)
        seen = np.unique(np.asarray(recent, dtype=np.int64))
        v = logits[seen]
        logits[seen] = np.where(v < 0, v * penalty, v / penalty)
    if not temperature:
        return int(np.argmax(logits))
    x = np.asarray(logits, dtype=np.float32)
    m = float(x.max())
    if 0.0 < top_p < 1.0:
        e = np.exp(x - m)
        z = float(e.sum(dtype=np.float64))
        # every token of the nucleus has probability >= (1 - top_p) / V: below that, the tokens ranked
        # above already hold top_p. So only those candidates are sorted.
        cand = np.flatnonzero(e >= z * (1.0 - top_p) / x.size)
        cand = cand[np.argsort(x[cand], kind="stable")]  # ascending, as mlx-lm sorts
        probs = e[cand].astype(np.float64) / z
        above = np.cumsum(probs[::-1])[::-1] - probs      # mass of the tokens ranked above each one
        threshold = x[cand[int((above >= top_p).sum())]]
        keep = cand[x[cand] >= threshold]
        w = np.exp((x[keep].astype(np.float64) - m) / temperature)
    else:
        keep = None
        w = np.exp((x.astype(np.float64) - m) / temperature)
    c = np.cumsum(w)
    i = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), c.size - 1)
    return int(keep[i]) if keep is not None else i


class LlamaCppEngine:
    name = "llama_cpp"

    # rows of one call sharing at least this many leading prompt tokens prefill them once
    SHARE_PREFIX = 32

    def __init__(self, model_path: str | Path, adapter: str | Path | None = None, strength: float = 1.0,
                 revision: str | None = None, quant: str = "f16", n_ctx: int = 8192, slots: int = 8,
                 n_threads: int | None = None, n_threads_batch: int | None = None, n_batch: int = 512,
                 repetition_context: int = 20, kv_reuse: bool = True, type_k: int | None = None,
                 type_v: int | None = None, flash_attn: bool | None = None, swa_full: bool = False,
                 n_gpu_layers: int = -1):
        """`n_ctx`: tokens per sequence (prompt + completion), capped at the model's trained context;
        `slots`: sequences decoded together (the KV cache holds slots x n_ctx tokens in its
        full-attention layers, slots x (window + n_batch) in its sliding-window layers unless
        `swa_full`). Threads: `n_threads` (default half the cores, as llama-cpp-python) also for
        batches of several tokens, which here are mostly decode steps of several rows."""
        global _BACKEND
        llama_cpp = _require()
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from .. import gguf

        self.quant = quant
        src = str(model_path)
        if src.endswith(".gguf"):
            self.model_dir, base = None, Path(src)
            if not base.is_file():
                raise LocalcharError(f"{base}: no such GGUF file")
        else:
            from ..hub import resolve_model

            self.model_dir = Path(resolve_model(src, revision))
            base = gguf.base_gguf(self.model_dir, quant)
        self.model_path = str(base)
        set_verbose(False)
        if not _BACKEND:
            llama_cpp.llama_backend_init()
            _BACKEND = True
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers == -1 else n_gpu_layers
        self._model = _internals.LlamaModel(path_model=str(base), params=mp, verbose=False)
        model = self._model.model
        self._vocab = self._model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        trained = self._model.n_ctx_train()
        n_ctx = min(n_ctx, trained) if trained > 0 else n_ctx
        slots = max(1, min(int(slots), llama_cpp.llama_max_parallel_sequences()))

        cp = llama_cpp.llama_context_default_params()
        cores = os.cpu_count() or 1
        cp.n_threads = n_threads or max(cores // 2, 1)   # llama-cpp-python's defaults
        cp.n_threads_batch = n_threads_batch or cp.n_threads
        cp.n_seq_max = slots
        cp.kv_unified = False                               # one KV stream per sequence
        cp.n_ctx = -(-n_ctx // 256) * 256 * slots           # llama.cpp gives each stream n_ctx / n_seq_max
        n_batch = max(n_batch, slots)                       # a decode step holds one token per slot
        cp.n_batch = cp.n_ubatch = n_batch
        cp.swa_full = swa_full
        # None: llama.cpp decides (flash attention where the backend has it: on a CPU, decoding several
        # rows is ~1.2-1.4x faster with it), except with an f32 cache, the configuration that
        # reproduces MLX token for token: flash attention's online softmax rounds differently
        if flash_attn is None and 0 in (type_k, type_v):
            flash_attn = False
        cp.flash_attn_type = {None: llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, True: llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              False: llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}[flash_attn]
        if type_k is not None:
            cp.type_k = type_k
        if type_v is not None:
            cp.type_v = type_v
        try:
            self._ctx = _internals.LlamaContext(model=self._model, params=cp, verbose=False)
        except ValueError:
            raise LocalcharError(f"{base}: llama.cpp could not create a context of {slots} slots x {n_ctx} tokens "
                                 "(out of memory? lower slots or n_ctx)") from None
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self.n_ctx = min(n_ctx, llama_cpp.llama_n_ctx_seq(self._ctx.ctx))  # per sequence
        self.n_batch = n_batch
        self.n_swa = max(0, llama_cpp.llama_model_n_swa(model))
        self._batch_owner = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self._batch = self._batch_owner.batch
        self._slots = [_Slot(i) for i in range(slots)]
        self._keys: dict[object, _Slot] = {}
        self._clock = 0
        self.repetition_context = repetition_context
        self.kv_reuse = kv_reuse

        meta = self._model.metadata()
        self.metadata = meta
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise LocalcharError(f"{base}: no tokenizer.chat_template in the GGUF metadata")
        tok = lambda key: self._model.detokenize([int(meta[key])], special=True).decode() if key in meta else ""
        self._template = template
        self._format = Jinja2ChatFormatter(template, eos_token=tok("tokenizer.ggml.eos_token_id"),
                                           bos_token=tok("tokenizer.ggml.bos_token_id"))
        self.adapter = str(adapter) if adapter else None
        self.strength = strength
        self._loras: dict[str, object] = {}
        self._active: str | None = None
        self.last_usage: list[tuple[int, int]] = []   # (prompt, completion) tokens per row of the last call
        self.last_prefilled: list[int] = []           # prompt tokens per row that went through the model

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def supports_tools(self) -> bool:
        return "tools" in self._template

    def render(self, messages: list[dict], prefill: str = "", tools: list | None = None) -> list[int]:
        try:
            text = self._format(messages=messages, tools=tools).prompt
        except ValueError as e:  # the template's raise_exception
            raise LocalcharError(f"{self.model_path}: chat template refused the conversation: {e}") from None
        return self._model.tokenize((text + prefill).encode(), add_bos=False, special=True)

    def detokenize(self, ids: list[int]) -> str:
        # decoded as Hugging Face tokenizers do (an incomplete UTF-8 byte sequence becomes U+FFFD),
        # so both engines hand the classifier the same text for the same tokens
        return self._model.detokenize(ids, special=True).decode("utf-8", errors="replace")

    # --- adapters ----------------------------------------------------------------------------------

    def _lora(self, adapter: str):
        if adapter not in self._loras:
            import llama_cpp

            from .. import gguf

            if adapter.endswith(".gguf"):
                path = Path(adapter)
            elif self.model_dir is None:
                raise LocalcharError(f"{adapter}: an mlx-lm adapter needs the model directory, not a .gguf base "
                                     "(give the adapter as a GGUF LoRA, or the base as a model directory)")
            else:
                path = gguf.lora_gguf(Path(adapter), self.model_dir)
            handle = llama_cpp.llama_adapter_lora_init(self._model.model, str(path).encode())
            if not handle:
                raise LocalcharError(f"{path}: llama.cpp could not load this LoRA for {self.model_path}")
            self._loras[adapter] = handle
        return self._loras[adapter]

    def use(self, adapter: str | None) -> None:
        """Switch the context to `adapter` (None = the base model); every slot's keys/values are dropped."""
        if adapter == self._active:
            return
        import llama_cpp

        if adapter is None:
            rc = llama_cpp.llama_set_adapters_lora(self._ctx.ctx, None, 0, None)
        else:
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._lora(adapter))
            rc = llama_cpp.llama_set_adapters_lora(self._ctx.ctx, arr, 1, (ctypes.c_float * 1)(self.strength))
        if rc:
            raise LocalcharError(f"{adapter}: llama.cpp could not set this LoRA on the context")
        self._clear()
        self._active = adapter

    # --- KV slots ----------------------------------------------------------------------------------

    def _clear(self) -> None:
        import llama_cpp

        llama_cpp.llama_memory_clear(self._mem, False)  # metadata: stale cells are masked
        for s in self._slots:
            s.tokens, s.key = [], None
        self._keys.clear()

    def reset(self) -> None:
        """Drop every slot's keys/values and every cache key."""
        self._clear()

    def forget(self, keys) -> None:
        """Release the slots of these cache keys (finished rollouts); their tokens stay reusable as a prefix."""
        for k in keys:
            s = self._keys.pop(k, None)
            if s is not None:
                s.key = None

    def _claim(self, row: _Row, busy: set, call_keys: set) -> _Slot | None:
        """The slot for `row`: its key's, else the free slot sharing the longest prefix with its prompt,
        else one taken from a key that this call does not use (least recently used first)."""
        if row.key is not None and row.key in self._keys:
            return self._keys[row.key]
        free = [s for s in self._slots if s.id not in busy and s.key is None]
        if free:
            slot = max(free, key=lambda s: (_lcp(s.tokens, row.prompt), -s.used))
        else:
            taken = [s for s in self._slots if s.id not in busy]
            if not taken:
                return None
            # keys of other calls first; then keys of this call whose row has already finished
            slot = min(taken, key=lambda s: (s.key in call_keys, s.used))
            del self._keys[slot.key]
            slot.key = None
        if row.key is not None:
            slot.key = row.key
            self._keys[row.key] = slot
        return slot

    def _start(self, rows: list[_Row]) -> list[tuple[_Row, list[_Row]]]:
        """Point each new row at its slot's reusable prefix; rows of this wave sharing a long prefix
        get it prefilled once. Returns (source row, rows that get a copy of its stream): the source's
        pending tokens are then its share of the prefix, to be decoded before the copies."""
        import llama_cpp

        for r in rows:
            s = r.slot
            n = min(_lcp(s.tokens, r.prompt), len(r.prompt) - 1)  # at least one token yields the logits
            if n < len(s.tokens):
                swa_gone = self.n_swa and n > 0 and \
                    llama_cpp.llama_memory_seq_pos_min(self._mem, s.id) > max(0, n - self.n_swa)
                if n == 0 or swa_gone or not llama_cpp.llama_memory_seq_rm(self._mem, s.id, n, -1):
                    llama_cpp.llama_memory_seq_rm(self._mem, s.id, -1, -1)
                    n = 0
                s.tokens = s.tokens[:n]
            r.pending = r.prompt[n:]
            r.prefilled = len(r.pending)
        if not self.SHARE_PREFIX or not self.kv_reuse or len(rows) < 2:
            return []
        # clusters of rows whose prompts share >= SHARE_PREFIX tokens: neighbours in sorted order
        order = sorted(rows, key=lambda r: r.prompt)
        groups, cur, common = [], [order[0]], len(order[0].prompt)
        for a, b in zip(order, order[1:]):
            n = _lcp(a.prompt, b.prompt)
            if n >= self.SHARE_PREFIX:
                cur.append(b)
                common = min(common, n, len(b.prompt))
            else:
                groups.append((cur, common))
                cur, common = [b], len(b.prompt)
        groups.append((cur, common))
        sources = []
        for group, common in groups:
            p = min([common] + [len(r.prompt) - 1 for r in group])
            gain = [r for r in group if len(r.slot.tokens) + self.SHARE_PREFIX <= p]
            if len(gain) < 2:
                continue
            src = max(gain, key=lambda r: len(r.slot.tokens))
            src.pending = src.prompt[len(src.slot.tokens):p]
            sources.append((src, [r for r in gain if r is not src]))
        return sources

    def _feed(self, rows: list[_Row], logits: bool) -> dict:
        """Decode one llama_batch: every row's pending tokens, as many as fit; returns, for each row
        whose pending tokens all went in (and `logits`), its index in the batch."""
        import llama_cpp

        b = self._batch
        n, room, at = 0, self.n_batch, {}
        for r in sorted(rows, key=lambda r: len(r.pending)):  # decoding rows (one token) first
            take = r.pending[:room]
            if not take:
                continue
            s = r.slot
            pos0 = len(s.tokens)
            for j, t in enumerate(take):
                b.token[n] = t
                b.pos[n] = pos0 + j
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = s.id
                b.logits[n] = 0
                n += 1
            s.tokens.extend(take)
            r.pending = r.pending[len(take):]
            room -= len(take)
            if logits and not r.pending:
                b.logits[n - 1] = 1
                at[id(r)] = n - 1
            if not room:
                break
        if n == 0:
            return at
        b.n_tokens = n
        rc = llama_cpp.llama_decode(self._ctx.ctx, b)
        if rc != 0:
            raise LocalcharError(f"llama_decode failed ({rc}) on a batch of {n} tokens "
                                 f"({self.slots} slots x {self.n_ctx} tokens)")
        return at

    def _run(self, rows: list[_Row], sampling, call_keys: set) -> None:
        import llama_cpp

        temp = float(sampling.temperature)
        top_p = float(getattr(sampling, "top_p", 1.0)) if temp else 1.0
        penalty = float(getattr(sampling, "repetition_penalty", 1.0))
        C = self.repetition_context
        queue = deque(rows)
        active: list[_Row] = []
        while queue or active:
            started = []
            busy = {r.slot.id for r in active}
            # rows whose key holds a slot first, so that no other row takes it
            queue = deque(sorted(queue, key=lambda r: r.key is None or r.key not in self._keys))
            while queue:
                slot = self._claim(queue[0], busy, call_keys)
                if slot is None:
                    break
                r = queue.popleft()
                r.slot = slot
                busy.add(slot.id)
                started.append(r)
            if started:
                shared = self._start(started)
                while any(src.pending for src, _ in shared):  # shared prefixes, then their copies
                    self._feed([src for src, _ in shared], logits=False)
                for src, targets in shared:
                    for r in targets:  # another stream: llama.cpp copies the whole stream (p0 = p1 = -1)
                        llama_cpp.llama_memory_seq_cp(self._mem, src.slot.id, r.slot.id, -1, -1)
                        r.slot.tokens = list(src.slot.tokens)
                        r.pending = r.prompt[len(r.slot.tokens):]
                        r.prefilled = len(r.pending)
                    src.pending = src.prompt[len(src.slot.tokens):]
                active.extend(started)
            at = self._feed(active, logits=True)
            self._clock += 1
            for r in [r for r in active if id(r) in at]:
                ptr = llama_cpp.llama_get_logits_ith(self._ctx.ctx, at[id(r)])
                logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
                recent = (r.prompt[-C:] + r.out)[-C:] if penalty != 1.0 else None
                if r.guide is not None and (ok := r.guide.allowed()).any():
                    logits = np.where(ok[:self.n_vocab], logits, -np.inf).astype(np.float32)
                t = sample(logits, recent, temp, top_p, penalty, r.rng)
                if r.guide is not None:
                    r.guide.advance(t)
                if llama_cpp.llama_vocab_is_eog(self._vocab, t):
                    r.ended = True
                else:
                    r.out.append(t)
                    r.pending = [t]
                if r.ended or len(r.out) >= r.budget:
                    r.pending = []
                    r.slot.used = self._clock
                    active.remove(r)

    # --- generation --------------------------------------------------------------------------------

    def generate(self, chats: list[list[dict]], sampling, seed: int, prefills: list[str] | None = None,
                 adapters: list | None = None, tools: list | None = None,
                 cache_keys: list | None = None, grammars: list | None = None) -> list[str]:
        """Complete every chat; `adapters` gives each row its adapter (None = base), `cache_keys` (one
        per row, distinct) keep each row's keys/values for the next call with that key, `grammars`
        (one per row, None = free) constrain rows to agent/grammar.py's tool calls."""
        rows_adapter = [str(a) if a else None for a in (adapters or [self.adapter] * len(chats))]
        if cache_keys is not None:
            if len(cache_keys) != len(chats) or len(set(cache_keys)) != len(cache_keys):
                raise LocalcharError("cache_keys: one distinct key per chat")
            if not self.kv_reuse:
                cache_keys = None
        if not self.kv_reuse:
            self._clear()
        prompts = [self.render(c, prefills[i] if prefills else "", tools) for i, c in enumerate(chats)]
        rows = [_Row(i, p, cache_keys[i] if cache_keys else None, derive_seed(seed, i), self._budget(p, sampling))
                for i, p in enumerate(prompts)]
        if grammars and any(grammars):
            from ..agent.grammar import Guide, Vocab

            if getattr(self, "_text_vocab", None) is None:
                import llama_cpp

                stop = {i for i in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, i)}
                anchor = self._model.tokenize(b"a", add_bos=False, special=False)[-1]
                self._text_vocab = Vocab.from_decode(self.detokenize, self.n_vocab, stop, self.n_vocab, anchor)
            for r, g in zip(rows, grammars):
                r.guide = Guide(g, self._text_vocab) if g is not None else None
        call_keys = set(cache_keys or ())
        # one switch per adapter; the one already set goes first, so its slots' keys/values are still there
        for adapter in sorted(dict.fromkeys(rows_adapter), key=lambda a: a != self._active):
            self.use(adapter)
            self._run([r for r, a in zip(rows, rows_adapter) if a == adapter], sampling, call_keys)
        self.last_usage = [(len(r.prompt), len(r.out) + bool(r.ended)) for r in rows]  # end of turn counts, as in MLX
        self.last_prefilled = [r.prefilled for r in rows]
        return [self.detokenize(r.out) for r in rows]

    def _budget(self, prompt: list[int], sampling) -> int:
        room = self.n_ctx - len(prompt)
        if room <= 1:
            raise LocalcharError(f"prompt of {len(prompt)} tokens does not fit the llama.cpp context of "
                                 f"{self.n_ctx} tokens per sequence")
        return min(sampling.max_tokens, room - 1)

    def close(self) -> None:
        import llama_cpp

        if self._batch is not None:
            llama_cpp.llama_set_adapters_lora(self._ctx.ctx, None, 0, None)
            for h in self._loras.values():
                llama_cpp.llama_adapter_lora_free(h)
            self._loras.clear()
            self._batch_owner.close()
            self._batch = None
            self._ctx.close()
            self._model.close()
