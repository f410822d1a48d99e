"""Build the tiny Gemma-3-shaped test model: random weights, a SentencePiece tokenizer trained on
the project's own committed text, Gemma special-token ids and the Gemma chat template.

6 layers with sliding-window pattern 6 (llama.cpp assumes Gemma 3's pattern 6; mlx-lm indexes
cache[pattern - 1]). Builds in about a second, no download.

`shape="67m"` builds a larger model of the same family for benchmarks (see SHAPES), with the same
tokenizer and files: loadable by mlx-lm and by transformers, convertible to GGUF.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from .paths import CONSTITUTIONS, DATA

GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# Kept whole so that the tool protocol costs few tokens; they stay ordinary (non-special) text.
PROTOCOL_PIECES = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
# Repeated in the tokenizer corpus so BPE learns the JSON of the tool protocol as few pieces (long
# contexts are what a CPU cannot afford).
PROTOCOL_LINES = [
    '<tool_call>{"name": "send_email", "arguments": {"to": "sam.ortiz@mail.example", "subject": "Re: x", "body": "Hi"}}</tool_call>',
    '<tool_call>{"name": "list_inbox", "arguments": {}}</tool_call>',
    '<tool_call>{"name": "read_email", "arguments": {"email_id": "e1"}}</tool_call>',
    '<tool_call>{"name": "end_session", "arguments": {}}</tool_call>',
    '<tool_response>[{"from": "noreply@calendar.example", "id": "e3", "read": false, "subject": "Reminder", "timestamp": "2025-03-01T07:00:00"}]</tool_response>',
    '<tool_response>{"id": "s1", "ok": true}</tool_response>', '<tool_response>{"error": "unknown"}</tool_response>',
]
SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

# Named sizes on top of the tiny model card's defaults (config.TinyBuild). "67m" is Gemma-3-270M's
# block (hidden 640, 4 query heads, 1 KV head, head_dim 256, MLP 2048, sliding window 512) with 12
# of its 18 layers and our 4k-piece vocabulary instead of its 262k one: 66.9M parameters in the
# blocks, 69.5M with the tied embedding (no lm_head, as in Gemma 3). Big enough that matmuls, not
# Python, cost the time.
SHAPES = {
    "tiny": {},
    "67m": {"hidden_size": 640, "num_hidden_layers": 12, "intermediate_size": 2048, "num_attention_heads": 4,
            "num_key_value_heads": 1, "head_dim": 256, "sliding_window": 512, "tie_embeddings": True},
}


def corpus_files() -> list[Path]:
    """The committed text the tiny tokenizer is trained on (its hash goes into run keys)."""
    files = sorted(DATA.rglob("*.jsonl")) + sorted(DATA.rglob("*.toml")) + sorted(CONSTITUTIONS.glob("*.toml"))
    return [f for f in files if f.is_file()]


def _sentences() -> list[str]:
    out = []
    for f in corpus_files():
        for line in f.read_text(encoding="utf-8").splitlines():
            # strip JSON/TOML syntax but keep the words and the punctuation people write
            text = re.sub(r'^\s*[\w.]+\s*=\s*', "", line)
            text = re.sub(r'"(id|prompt|response|text)":\s*', "", text)
            if text.strip():
                out.append(text.strip())
    return out + PROTOCOL_LINES * 200


def build_tokenizer(out: Path, vocab_pieces: int = 2048, seed: int = 0):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sentences()), model_writer=buf, vocab_size=vocab_pieces,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, split_digits=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"] + PROTOCOL_PIECES,
        num_threads=1, minloglevel=2, hard_vocab_limit=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (out / stale).unlink(missing_ok=True)  # from_pretrained would read an old tokenizer.json
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}))
    tok = AutoTokenizer.from_pretrained(str(out))
    tok.chat_template = GEMMA_TEMPLATE
    tok.save_pretrained(str(out))
    # transformers 5 drops added_tokens_decoder; llama.cpp's converter needs it to keep the turn
    # markers as single CONTROL tokens.
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {
        str(tok.convert_tokens_to_ids(t)): {"content": t, "special": True, "lstrip": False,
                                             "rstrip": False, "normalized": False, "single_word": False}
        for t in SPECIAL}
    cfg.pop("vocab_file", None)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    # the HF vocabulary must number pieces as tokenizer.model does (llama.cpp reads the latter)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = tok.get_vocab()
    bad = [i for i in range(sp.get_piece_size()) if vocab.get(sp.id_to_piece(i)) != i]
    if bad:
        raise RuntimeError(f"tiny tokenizer: HF and SentencePiece ids differ at {bad[:5]}")
    return tok


def build_tiny(out: Path, seed: int = 0, shape: str = "tiny", **overrides) -> Path:
    """Random weights + tokenizer; sizes default to the tiny model card's schema (config.TinyBuild),
    then the named `shape` (SHAPES), then `overrides`. Sliding-window pattern stays 6."""
    import dataclasses

    import mlx.core as mx
    from mlx_lm.utils import _get_classes, save_config, save_model

    from .config import TinyBuild

    if shape not in SHAPES:
        raise ValueError(f"unknown model shape {shape!r} (shapes: {', '.join(SHAPES)})")
    c = {**dataclasses.asdict(TinyBuild()), "num_key_value_heads": 1, "sliding_window": 64,
         **SHAPES[shape], **overrides}
    out = Path(out)
    tok = build_tokenizer(out, c["vocab_pieces"], seed)
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    config = {
        "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
        "hidden_size": c["hidden_size"], "num_hidden_layers": c["num_hidden_layers"],
        "intermediate_size": c["intermediate_size"], "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"], "head_dim": c["head_dim"],
        "query_pre_attn_scalar": c["head_dim"], "rms_norm_eps": 1e-6, "vocab_size": len(tok),
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
        "sliding_window": c["sliding_window"], "sliding_window_pattern": 6,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "max_position_embeddings": 4096,
        "bos_token_id": 2, "eos_token_id": [1, eot], "pad_token_id": 0,
        "hidden_activation": "gelu_pytorch_tanh", "torch_dtype": "float32",
    }
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, eot]}))
    mx.random.seed(seed)
    Model, ModelArgs = _get_classes(config)
    model = Model(ModelArgs.from_dict(config))
    if c.get("tie_embeddings"):  # as Gemma 3 does: no lm_head in the files, both loaders tie
        model.sanitize({})
    mx.eval(model.parameters())
    save_model(out, model)
    save_config(dict(config), out / "config.json")
    return out


def count_params(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(model.parameters()))
