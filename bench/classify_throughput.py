"""Classifier scoring throughput (texts/s): batched vs one text at a time, for the `embed` encoder
(the shipped MiniLM) and for `modernbert` (a random tiny config and, unless --quick, a random
ModernBERT-base-shaped model: 22 layers, hidden 768). Runs alternate (A, B, A, B, ...) and the
ratio of medians is printed; texts/s appear only as context.

    PYTHONPATH=. python bench/classify_throughput.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STYLE = ROOT / "tests" / "data" / "style_texts.jsonl"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(name: str, texts: list[str], batched, single, repeats: int) -> None:
    batched()  # warm up both (model load, kernels)
    single()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(batched))
        b.append(timed(single))
    ta, tb = statistics.median(a), statistics.median(b)
    print(f"{name:48s} batched {len(texts) / ta:8.1f} texts/s   one at a time {len(texts) / tb:8.1f} texts/s"
          f"   ratio {tb / ta:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the ModernBERT-base-shaped model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=64, help="texts scored per run")
    args = ap.parse_args()

    rows = [json.loads(line) for line in STYLE.read_text().splitlines() if line.strip()]
    texts = [r["text"] for r in rows][: args.n]
    labels = [r["label"] for r in rows][: args.n]

    from localchar.classify.embed import embed

    compare("embed (MiniLM-L6), batch 64 vs 1", texts, lambda: embed(texts, batch_size=64),
            lambda: embed(texts, batch_size=1), args.repeats)

    import torch

    from localchar import classify
    from localchar.classify.modernbert import build_tiny_modernbert

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_modernbert(Path(tmp) / "tiny", texts)
        clf = classify.train("modernbert", texts, labels, seed=0, base=str(base), epochs=1, batch_size=8,
                             grad_accum=1)
        compare("modernbert tiny (2 layers, hidden 32), batch 16 vs 1", texts,
                lambda: clf.predict(texts, batch_size=16), lambda: clf.predict(texts, batch_size=1), args.repeats)
        if not args.quick:
            from transformers import ModernBertConfig, ModernBertForSequenceClassification

            cfg = ModernBertConfig(vocab_size=clf.tokenizer.vocab_size, num_labels=len(clf.labels),
                                   pad_token_id=clf.tokenizer.pad_token_id)  # the base model's shape
            clf.model = ModernBertForSequenceClassification(cfg).eval()
            n = sum(p.numel() for p in clf.model.parameters()) / 1e6
            compare(f"modernbert base-shaped ({n:.0f}M, random), batch 16 vs 1", texts,
                    lambda: clf.predict(texts, batch_size=16), lambda: clf.predict(texts, batch_size=1),
                    args.repeats)


if __name__ == "__main__":
    main()
