"""Keys and values kept between generation calls, so that a prompt which extends an earlier one is
not prefilled again.

An agent turn re-renders the whole transcript: the previous prompt, the model's reply and the tool
results. Its token ids begin with the ids the model has already seen (prompt + generated tokens), so
the keys/values of that common prefix are still exact and only the rest needs a forward pass. The
match is on token ids, never on text: where re-tokenising the reply differs from the sampled ids,
or the template trims whitespace, the common prefix is simply shorter, and with nothing in common
the row is prefilled in full. A row's values also depend on the adapter it was computed with, so a
kept row carries its adapter's identity and is ignored under any other.

A rotating (sliding-window) layer cannot be cut back to an earlier position once it has dropped
the positions that position needs, so while rows are kept their sliding layers hold the window plus
the call's max_tokens (the attention mask still applies the window): the reply can always be cut
off again. Full-attention layers hold everything, as they do anyway. A kept row costs what its
cache costs during the call (Gemma-3-4B in bf16: 20 kB per token for its 5 global layers plus
~180 MB for 29 sliding layers of 1024 + 512 positions); `PromptCache` drops the least recently used
rows past its byte budget.
"""

from __future__ import annotations

from collections import OrderedDict


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n and a[:n] == b[:n]:  # the usual case (a transcript extending its last call): one C-level compare
        return n
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class RowKV:
    """One row's keys/values (a batch-1 mlx-lm KVCache per layer) and the token ids they hold."""

    def __init__(self, tokens: list[int], layers: list, adapter: str | None = None):
        self.tokens, self.layers, self.adapter = list(tokens), layers, adapter

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.layers)

    def view(self, n: int, windows: list[int | None], margin: int) -> list | None:
        """Single-row caches holding the first n positions, over the same arrays where possible, in
        the types a batch with this `margin` uses (batched.batch_caches); None if a sliding-window
        layer no longer holds the window that position n needs."""
        import mlx.core as mx
        from mlx_lm.models.cache import KVCache, RotatingKVCache

        out = []
        for c, w in zip(self.layers, windows):
            if w is None:
                v = KVCache()
                v.keys, v.values, v.offset = c.keys, c.values, n
            else:
                first = c.offset - c.keys.shape[2]  # position of the oldest entry held
                if first > max(0, n - w):
                    return None
                size = min(n, w + margin)  # what the batch merge expects a cache of this size to hold
                lo, hi = max(first, n - size) - first, n - first
                k, val = c.keys[..., lo:hi, :], c.values[..., lo:hi, :]
                if k.shape[2] < size:  # older than the window: zeros, which the window mask hides
                    pad = [(0, 0), (0, 0), (size - k.shape[2], 0), (0, 0)]
                    k, val = mx.pad(k, pad), mx.pad(val, pad)
                v = RotatingKVCache(w + margin)
                v.keys, v.values, v.offset, v._idx = k, val, n, size
            out.append(v)
        return out


class PromptCache:
    """Kept rows by key (e.g. one agent rollout), least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int = 2 << 30):
        self.max_bytes = max_bytes
        self._rows: OrderedDict[str, RowKV] = OrderedDict()

    def get(self, key: str, adapter: str | None) -> RowKV | None:
        row = self._rows.get(key)
        if row is None or row.adapter != adapter:
            return None
        self._rows.move_to_end(key)
        return row

    def put(self, key: str, row: RowKV) -> None:
        self._rows[key] = row
        self._rows.move_to_end(key)
        total = sum(r.nbytes for r in self._rows.values())
        while total > self.max_bytes and self._rows:
            _, old = self._rows.popitem(last=False)
            total -= old.nbytes

    def drop(self, keys) -> None:
        for k in keys:
            self._rows.pop(k, None)

    def __len__(self) -> int:
        return len(self._rows)
