"""ModernBERT fine-tuned for sequence classification, as in the protocol: batch 8 x accumulation 2,
lr 5e-4, cosine with 5% warmup, weight decay 1e-6, clip 1.0, 1 epoch, long context (8192).

The base is `answerdotai/ModernBERT-base` for real runs (downloaded by transformers when online);
tests build a tiny random ModernBERT with a locally trained WordPiece tokenizer
(`build_tiny_modernbert`), so the same code path trains and predicts offline."""

from __future__ import annotations

import math
import random
from pathlib import Path

BASE = "answerdotai/ModernBERT-base"
DEFAULTS = {"batch_size": 8, "grad_accum": 2, "learning_rate": 5e-4, "warmup_ratio": 0.05, "epochs": 1.0,
            "weight_decay": 1e-6, "max_length": 8192}


def _device():
    import torch

    return "mps" if torch.backends.mps.is_available() else "cpu"


class ModernBertClassifier:
    kind = "modernbert"

    def __init__(self, model, tokenizer, labels: list[str], max_length: int):
        self.model, self.tokenizer, self.labels, self.max_length = model, tokenizer, labels, max_length

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], seed: int, base: str = BASE, **opts):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_cosine_schedule_with_warmup

        from ..progress import progress

        o = {**DEFAULTS, **{k: v for k, v in opts.items() if v is not None}}
        torch.manual_seed(seed)
        classes = sorted(set(labels))
        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)})
        device = _device()
        model.to(device).train()
        y = [classes.index(l) for l in labels]
        per_step = o["batch_size"] * o["grad_accum"]
        steps = max(1, math.ceil(o["epochs"] * len(texts) / per_step))
        opt = torch.optim.AdamW(model.parameters(), lr=o["learning_rate"], weight_decay=o["weight_decay"])
        sched = get_cosine_schedule_with_warmup(opt, round(o["warmup_ratio"] * steps), steps)
        rng = random.Random(seed)
        order: list[int] = []
        with progress("modernbert classifier", total=steps) as bar:
            for _ in range(steps):
                opt.zero_grad()
                for _ in range(o["grad_accum"]):
                    if len(order) < o["batch_size"]:
                        perm = list(range(len(texts)))
                        rng.shuffle(perm)
                        order += perm
                    idx, order = order[:o["batch_size"]], order[o["batch_size"]:]
                    enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=o["max_length"],
                              return_tensors="pt").to(device)
                    out = model(**enc, labels=torch.tensor([y[i] for i in idx], device=device))
                    (out.loss / o["grad_accum"]).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                bar.advance(1, loss=float(out.loss.detach()))
        model.eval()
        return cls(model, tok, classes, o["max_length"])

    def predict(self, texts: list[str], batch_size: int = 16) -> list[str]:
        import torch

        out = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(device)
                out += [self.labels[j] for j in self.model(**enc).logits.argmax(-1).tolist()]
        return out

    def save(self, out: Path) -> list[str]:
        d = out / "model"
        self.model.save_pretrained(d, safe_serialization=True)
        self.tokenizer.save_pretrained(d)
        return sorted(str(p.relative_to(out)) for p in d.rglob("*") if p.is_file())

    @classmethod
    def load(cls, d: Path, manifest: dict):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(d / "model")
        model.to(_device()).eval()
        return cls(model, AutoTokenizer.from_pretrained(d / "model"), manifest["labels"],
                   manifest.get("options", {}).get("max_length", DEFAULTS["max_length"]))


def build_tiny_modernbert(out: Path, texts: list[str], seed: int = 0) -> Path:
    """A random 2-layer ModernBERT (hidden 32) and a WordPiece tokenizer trained on `texts`: the
    offline stand-in for ModernBERT-base in tests. Same architecture class and code path."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast

    out = Path(out)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials))
    cls_id, sep_id = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                      special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    cfg = ModernBertConfig(vocab_size=tk.get_vocab_size(), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=512,
                           global_attn_every_n_layers=1, local_attention=64, pad_token_id=tok.pad_token_id,
                           cls_token_id=cls_id, sep_token_id=sep_id, bos_token_id=cls_id, eos_token_id=sep_id)
    torch.manual_seed(seed)
    ModernBertForMaskedLM(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
