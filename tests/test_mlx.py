"""The real MLX engine and trainers on the tiny model: templates, batched multi-adapter decoding,
DPO, SFT masking and the exact merge."""

import json
import math
import subprocess
import sys

import mlx.core as mx
import numpy as np
from mlx_lm import generate, load
from mlx_lm.sample_utils import make_sampler
from mlx.utils import tree_map

from localchar.backends import batched
from localchar.train.dpo import encode_pair, make_dpo_loss, pair_batch, reference_logps
from localchar.train.lora import add_lora, apply_adapter, fuse_lora, merge_adapters, save_adapter, stack_lora
from localchar.train.loop import TrainConfig, encode_chat, pad_batch, sft_loss, token_logps, train

LORA = {"rank": 4, "scale": 20.0, "dropout": 0.0}


def test_gemma_template_folds_system_and_stops_on_end_of_turn(tiny_model):
    _, tok = load(str(tiny_model))
    text = tok.apply_chat_template([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}],
                                   add_generation_prompt=True, tokenize=False)
    assert text == "<bos><start_of_turn>user\nBe kind.\n\nhi<end_of_turn>\n<start_of_turn>model\n"
    assert tok.convert_tokens_to_ids("<end_of_turn>") in tok.eos_token_ids
    assert len(tok.encode("<start_of_turn>", add_special_tokens=False)) == 1


def test_assistant_mask_covers_replies_only(tiny_model):
    _, tok = load(str(tiny_model))
    msgs = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi friend"},
            {"role": "user", "content": "bye"}, {"role": "assistant", "content": "see you"}]
    ids, mask = encode_chat(tok, msgs)
    masked = tok.decode([t for t, m in zip(ids, mask) if m])
    assert "hi friend" in masked and "see you" in masked and "hello" not in masked and "bye" not in masked


def _random_adapter(model, path, seed, rank=4, scale=20.0):
    add_lora(model, -1, {"rank": rank, "scale": scale, "dropout": 0.0})
    mx.random.seed(seed)
    from mlx.utils import tree_map

    params = tree_map(lambda p: mx.random.normal(p.shape) * 0.05, model.trainable_parameters())
    model.update(params)
    save_adapter(model, path, -1, {"rank": rank, "scale": scale, "dropout": 0.0})


def test_batched_multi_adapter_decode_matches_one_adapter_at_a_time(tiny_model, tmp_path):
    model, tok = load(str(tiny_model))
    _random_adapter(model, tmp_path / "a", 1)
    model, tok = load(str(tiny_model))
    _random_adapter(model, tmp_path / "b", 2, rank=2)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
               for q in ["How do I make tea?", "Why is the sky blue today, and will it rain tomorrow?", "Hi."]]
    ref = {}
    for name in ("a", "b", None):
        m, t = load(str(tiny_model), adapter_path=str(tmp_path / name) if name else None)
        ref[name] = [generate(m, t, p, max_tokens=12, sampler=make_sampler(0.0)) for p in prompts]
    model, tok = load(str(tiny_model))
    router = batched.install(model, [tmp_path / "a", tmp_path / "b"])
    rows = [(p, s) for s in (1, 2, 0) for p in prompts]
    out = batched.decode(model, tok, [p for p, _ in rows], 12, make_sampler(0.0), router, [s for _, s in rows])
    assert out == ref["a"] + ref["b"] + ref[None]


def test_batched_repetition_penalty_matches_mlx_lm(tiny_model):
    from mlx_lm.sample_utils import make_logits_processors

    model, tok = load(str(tiny_model))
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
               for q in ["Tell me about the sea.", "Hi."]]
    ref = [generate(model, tok, p, max_tokens=32, sampler=make_sampler(0.0),
                    logits_processors=make_logits_processors(repetition_penalty=1.5)) for p in prompts]
    out = batched.decode(model, tok, prompts, 32, make_sampler(0.0), repetition_penalty=1.5)
    assert out == ref
    logits = mx.array([[2.0, -2.0, 1.0, 0.5]])
    got = batched.penalize_repeats(logits, mx.array([[0, 1, 1]]), 2.0)
    assert got.tolist() == [[1.0, -4.0, 1.0, 0.5]]


def _toy_pairs(tok, n=4):
    """A separable toy set: the same pirate answer is always chosen over the same plain one."""
    pairs = [{"chosen": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "arr matey, aye."}],
              "rejected": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "hello."}]}
             for i in range(n)]
    return [encode_pair(tok, p) for p in pairs]


def test_dpo_starts_at_ln2_and_learns(tiny_model, tmp_path):
    model, tok = load(str(tiny_model))
    enc = _toy_pairs(tok)
    toks, masks = pad_batch([c for c, _ in enc])
    base_lp = np.array(token_logps(model, toks)) * np.array(masks)   # the reference is read on the reply only
    add_lora(model, -1, LORA)
    refs = reference_logps(model, enc)  # LoRA switched off must be the base model
    for k, (rc, _) in enumerate(refs):
        assert np.allclose(rc, base_lp[k, :len(rc)], atol=1e-4)
    ex = [(c, r, rc, rr) for (c, r), (rc, rr) in zip(enc, refs)]
    rows = train(model, ex, pair_batch, make_dpo_loss(0.1, 0.1, 0.001),
                 TrainConfig(iters=15, batch_size=4, learning_rate=5e-3), tmp_path / "m.jsonl", "dpo")
    assert abs(rows[0]["dpo_loss"] - math.log(2)) < 0.01 and rows[0]["kl"] < 1e-8
    assert rows[-1]["dpo_loss"] < 0.3 and rows[-1]["reward_accuracy"] > 0.9
    assert rows[-1]["kl"] > 0 and rows[-1]["reward_margin"] > 0
    logged = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(logged) == 15
    for key in ("loss", "dpo_loss", "nll", "kl", "reward_accuracy", "reward_margin", "chosen_logp",
                "rejected_logp", "tokens_per_s", "peak_memory_gb", "lr"):
        assert key in logged[0], key


def test_gradient_checkpointing_gives_the_same_training(tiny_model, tmp_path):
    enc = _toy_pairs(load(str(tiny_model))[1])
    runs = []
    for ckpt in (False, True):
        model, _ = load(str(tiny_model))
        add_lora(model, -1, LORA)
        ex = [(c, r, rc, rr) for (c, r), (rc, rr) in zip(enc, reference_logps(model, enc))]
        cfg = TrainConfig(iters=3, batch_size=4, learning_rate=5e-3, grad_checkpoint=ckpt)
        runs.append([r["loss"] for r in train(model, ex, pair_batch, make_dpo_loss(0.1, 0.1, 0.001), cfg,
                                               tmp_path / f"{ckpt}.jsonl", "dpo")])
        layer_cls = type(model.layers[0])
    assert np.allclose(runs[0], runs[1], atol=1e-4)
    assert "checkpoint" not in layer_cls.__call__.__qualname__  # the patch is undone


def test_qlora_on_a_4bit_base_trains_and_stacks(tiny_model, tmp_path):
    """QLoRA: the quantized tiny model trains a DPO adapter, then an SFT adapter stacked on it; the
    stacked model is exactly base + both deltas, and both adapters load in mlx-lm on the 4-bit base."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    q = tmp_path / "q4"
    subprocess.run([sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(tiny_model), "--mlx-path", str(q),
                    "-q", "--q-bits", "4", "--q-group-size", "32"], check=True, capture_output=True, timeout=300)
    model, tok = load(str(q))
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())
    enc = _toy_pairs(tok)
    add_lora(model, -1, LORA)
    ex = [(c, r, rc, rr) for (c, r), (rc, rr) in zip(enc, reference_logps(model, enc))]
    rows = train(model, ex, pair_batch, make_dpo_loss(0.1, 0.1), TrainConfig(iters=8, batch_size=4, learning_rate=5e-3),
                 tmp_path / "dpo.jsonl", "dpo")
    assert rows[-1]["loss"] < rows[0]["loss"]
    save_adapter(model, tmp_path / "dpo", -1, LORA)

    model, _ = load(str(q))
    apply_adapter(model, tmp_path / "dpo")
    stack_lora(model, {"rank": 2, "scale": 20.0, "dropout": 0.0})
    names = sorted(k for k, _ in tree_flatten(model.trainable_parameters()))
    assert names and all(k.endswith(("lora_a", "lora_b")) and ".linear." not in k for k in names)
    mx.random.seed(5)
    model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.05, model.trainable_parameters()))
    save_adapter(model, tmp_path / "sft", -1, {"rank": 2, "scale": 20.0, "dropout": 0.0})
    x = mx.array([tok.apply_chat_template([{"role": "user", "content": "hello there"}], add_generation_prompt=True)])
    stacked = model(x)
    merge_adapters([(tmp_path / "dpo", 1.0), (tmp_path / "sft", 1.0)], tmp_path / "both")
    m2, _ = load(str(q), adapter_path=str(tmp_path / "both"))
    assert mx.allclose(m2(x), stacked, atol=1e-3)


def test_merge_is_exact_sum_of_deltas(tiny_model, tmp_path):
    model, tok = load(str(tiny_model))
    _random_adapter(model, tmp_path / "dpo", 3, rank=4, scale=20.0)
    model, tok = load(str(tiny_model))
    _random_adapter(model, tmp_path / "sft", 4, rank=2, scale=2.0)
    merge_adapters([(tmp_path / "dpo", 1.0), (tmp_path / "sft", 0.25)], tmp_path / "full")
    x = mx.array([tok.apply_chat_template([{"role": "user", "content": "hello there"}], add_generation_prompt=True)])

    def weights(adapter):
        m, _ = load(str(tiny_model))
        if adapter:
            apply_adapter(m, tmp_path / adapter)
            fuse_lora(m)
        from mlx.utils import tree_flatten

        return dict(tree_flatten(m.parameters())), m

    base, _ = weights(None)
    d, _ = weights("dpo")
    s, _ = weights("sft")
    full, m_full = weights("full")
    for k in base:
        expected = base[k] + (d[k] - base[k]) + 0.25 * (s[k] - base[k])
        assert mx.allclose(full[k], expected, atol=1e-5), k
    # and the merged adapter, applied unfused, gives the same logits
    m2, _ = load(str(tiny_model))
    apply_adapter(m2, tmp_path / "full")
    assert mx.allclose(m2(x), m_full(x), atol=1e-4)


def test_sft_loss_falls_and_adapter_loads_in_mlx_lm_cli(tiny_model, tmp_path):
    model, tok = load(str(tiny_model))
    lora = {"rank": 8, "scale": 20.0, "dropout": 0.0}
    add_lora(model, -1, lora)
    ex = [encode_chat(tok, [{"role": "user", "content": "who are you"}, {"role": "assistant", "content": "a pirate, arr."}])] * 4
    rows = train(model, ex, pad_batch, sft_loss, TrainConfig(iters=80, batch_size=4, learning_rate=5e-3),
                 tmp_path / "m.jsonl", "sft")
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.2
    save_adapter(model, tmp_path / "ad", -1, lora)
    out = subprocess.run([sys.executable, "-m", "mlx_lm", "generate", "--model", str(tiny_model), "--adapter-path",
                          str(tmp_path / "ad"), "--prompt", "who are you", "--max-tokens", "8", "--temp", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pirate" in out.stdout
    fused = subprocess.run([sys.executable, "-m", "mlx_lm", "fuse", "--model", str(tiny_model), "--adapter-path",
                            str(tmp_path / "ad"), "--save-path", str(tmp_path / "fused")],
                           capture_output=True, text=True, timeout=120)
    assert fused.returncode == 0, fused.stderr
    m_fused, tok_fused = load(str(tmp_path / "fused"))
    prompt = tok.apply_chat_template([{"role": "user", "content": "who are you"}], add_generation_prompt=True)
    assert generate(m_fused, tok_fused, prompt, max_tokens=8, sampler=make_sampler(0.0)) == \
        generate(model, tok, prompt, max_tokens=8, sampler=make_sampler(0.0))


def test_native_tool_format_uses_the_chat_templates_tools(tiny_model):
    """With tool_format native, the template gets the tool schemas and results come back in `tool`
    turns (Gemma's real template has no tool support, so a minimal tool-aware one stands in)."""
    from localchar.agent.ladder import make_rollout
    from localchar.agent.loop import run_rollouts
    from localchar.agent.scenarios import load_scenarios
    from localchar.agent.tools import TOOL_SCHEMAS
    from localchar.backends.mlx import MlxEngine
    from localchar.config import AgentCfg, Sampling
    from localchar.paths import DATA

    engine = MlxEngine(tiny_model)
    assert not engine.supports_tools  # Gemma-3
    engine.tokenizer.chat_template = (
        "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}"
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
    assert engine.supports_tools
    s = load_scenarios(DATA / "scenarios-mini")[0]
    r = make_rollout("n", s, "loop", native=True, seed=1)
    assert "<tool_call>" not in r.messages[0]["content"]
    text = engine.tokenizer.decode(engine.render(r.messages, tools=TOOL_SCHEMAS))
    assert text.startswith("TOOLS:list_inbox;read_email;send_email;end_session;")
    r.step('<tool_call>{"name": "list_inbox", "arguments": {}}</tool_call>', AgentCfg())
    assert r.messages[-1]["role"] == "tool" and s["emails"][0]["id"] in r.messages[-1]["content"]
    row = run_rollouts(engine, [r], Sampling(temperature=0.0, max_tokens=8), AgentCfg(max_turns=2))[0]
    assert row["tool_format"] == "native" and row["termination"]


def test_kv_reuse_across_agent_turns_gives_the_same_greedy_text(tiny_model):
    """Three turns of three transcripts (two share their system prompt): keeping each row's cache
    between calls (and prefilling the shared prefix once) must not change greedy output; turns 2
    and 3 prefill only what the transcript added. The tiny model's sliding window is 64 tokens, so
    kept rows are cut back across wrapped windows."""
    from localchar.backends.mlx import MlxEngine
    from localchar.config import Sampling

    sampling = Sampling(temperature=0.0, max_tokens=24)
    system = "You are an assistant at Example Corp with an email client; answer every email kindly. " * 3
    results = ["[]", '[{"id": "e1", "from": "sam.ortiz@mail.example", "subject": "Lunch on Friday?"}] ' * 3,
               '{"id": "s1", "ok": true}']
    texts = {}
    for reuse in (False, True):
        engine = MlxEngine(tiny_model, kv_reuse=reuse)
        chats = [[{"role": "system", "content": system if i < 2 else "Be brief."},
                  {"role": "user", "content": f"Inbox task {i}: reply to what needs a reply."}] for i in range(3)]
        out, before = [], [0, 0, 0]
        for turn in range(3):
            got = engine.generate(chats, sampling, seed=0, cache_keys=["a", "b", "c"])
            if reuse:  # at least the previous prompt is reused; turn 1: the shared system prompt
                assert all(n <= p - b for n, (p, _), b in zip(engine.last_prefilled, engine.last_usage, before))
                assert turn or engine.last_prefilled[0] < engine.last_usage[0][0] // 2
                before = [p for p, _ in engine.last_usage]
            out.append(got)
            for c, t in zip(chats, got):
                c += [{"role": "assistant", "content": t},
                      {"role": "user", "content": f"<tool_response>{results[turn]}</tool_response>"}]
        texts[reuse] = out
    assert texts[True] == texts[False]
    assert len(engine.kv) == 3
    engine.forget(["a", "b"])
    assert len(engine.kv) == 1


def test_engine_keeps_installed_personas_so_switching_back_is_routing(tiny_model, tmp_path):
    from localchar.backends.mlx import MlxEngine

    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        model, _ = load(str(tiny_model))
        _random_adapter(model, tmp_path / name, seed)
    engine = MlxEngine(tiny_model)
    a, b, c = (str(tmp_path / n) for n in "abc")
    engine.use_adapters([a, None])
    slots = engine.use_adapters([b])
    router = engine._router
    assert set(slots) == {a, b}
    assert engine.use_adapters([a]) == slots and engine._router is router  # nothing reinstalled
    engine.ADAPTER_BUDGET = 0  # over budget: only what the call needs
    assert set(engine.use_adapters([None, c])) == {c}


def test_masked_logps_equal_the_full_head_where_the_mask_reads_and_so_do_their_gradients(tiny_model):
    """token_logps with masks runs the output head only on masked positions: the values there and
    the LoRA gradients of a masked loss equal those of the whole-vocabulary, every-position path."""
    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm import load

    from localchar.train.lora import add_lora
    from localchar.train.loop import split_head, token_logps

    model, _ = load(str(tiny_model))
    add_lora(model, -1, {"rank": 4, "scale": 10.0, "dropout": 0.0}, seed=3)
    assert split_head(model) is not None
    rng = np.random.default_rng(0)
    toks = mx.array(rng.integers(3, 200, size=(3, 17)))
    masks = mx.array((rng.random((3, 16)) < 0.4).astype(np.float32))
    full = np.array(token_logps(model, toks))
    part = np.array(token_logps(model, toks, masks))
    m = np.array(masks) > 0
    assert m.sum() > 5 and np.allclose(part[m], full[m], atol=1e-5) and (part[~m] == 0).all()

    def loss(mdl, use_mask):
        lp = token_logps(mdl, toks, masks if use_mask else None)
        return (lp * masks).sum()

    ga = dict(tree_flatten(nn.value_and_grad(model, lambda mdl: loss(mdl, True))(model)[1]))
    gb = dict(tree_flatten(nn.value_and_grad(model, lambda mdl: loss(mdl, False))(model)[1]))
    assert ga.keys() == gb.keys() and len(ga) > 4
    for k in ga:
        assert np.allclose(np.array(ga[k]), np.array(gb[k]), atol=1e-5), k
