"""The llama.cpp path on the tiny model: GGUF export (llama.cpp's own converters), parity with MLX,
persona switching on one loaded base, quantized bases, and the openai engine against a real
llama.cpp server started here."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from localchar.config import Sampling
from localchar.errors import LocalcharError

GREEDY = Sampling(temperature=0.0, max_tokens=32, repetition_penalty=1.0)
CHATS = [[{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "How do I make tea?"}],
         [{"role": "user", "content": "Why is the sky blue today, and will it rain tomorrow?"}],
         [{"role": "user", "content": "Hi."}]]


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "localchar.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _random_adapter(model_dir, path, seed, rank=4, scale=20.0):
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm import load

    from localchar.train.lora import add_lora, save_adapter

    model, _ = load(str(model_dir))
    params = {"rank": rank, "scale": scale, "dropout": 0.0}
    add_lora(model, -1, params, seed=seed)
    mx.random.seed(seed)
    model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.05, model.trainable_parameters()))
    save_adapter(model, path, -1, params)
    return path


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    a = _random_adapter(tiny_model, d / "pirate", 1)
    b = _random_adapter(tiny_model, d / "poet", 2, rank=2)
    out = cli("export", "gguf", "--model", tiny_model, "--adapter", a, "--adapter", b, "--out", d / "out")
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)
    return {"model": tiny_model, "adapters": {"pirate": a, "poet": b}, "files": files}


def test_export_names_its_files_and_keeps_gemma_turn_markers_single_tokens(exported):
    from llama_cpp import Llama

    f = exported["files"]
    assert set(f["loras"]) == {"pirate", "poet"} and f["quant"] == "f16"
    llm = Llama(model_path=f["base"], vocab_only=True, verbose=False)
    assert llm.tokenize(b"<start_of_turn>", add_bos=False, special=True) == [4]
    assert llm.tokenize(b"<end_of_turn>", add_bos=False, special=True) == [5]


def test_mlx_and_llama_cpp_agree_token_for_token_with_the_persona_lora(exported, tmp_path):
    """Greedy tokens identical for 32 tokens on several prompts (f32 GGUF and KV cache: at f16 the
    random tiny model has near-ties that rounding flips); last-token logits within 0.05 at f16."""
    import mlx.core as mx
    from llama_cpp import Llama

    from localchar import gguf
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.backends.mlx import MlxEngine
    from mlx_lm import load

    adapter = exported["adapters"]["pirate"]
    m = MlxEngine(exported["model"])
    base32 = gguf.write_base(exported["model"], tmp_path / "base-f32.gguf", "f32")
    lora32 = gguf.write_lora(adapter, exported["model"], tmp_path / "pirate-f32.gguf", "f32")
    l = LlamaCppEngine(base32, type_k=0, type_v=0)  # GGML_TYPE_F32 KV cache
    for chat in CHATS:
        assert m.render(chat) == l.render(chat)  # the GGUF's template renders what HF's does
    want = m.generate(CHATS, GREEDY, 0, adapters=[adapter] * 3)
    assert want == l.generate(CHATS, GREEDY, 0, adapters=[str(lora32)] * 3)
    assert [u[1] for u in m.last_usage] == [u[1] for u in l.last_usage]
    assert sum(u[1] for u in m.last_usage) >= 60  # the comparison covers real generations

    l_adapter = exported["files"]["loras"]["pirate"]

    model, _ = load(str(exported["model"]), adapter_path=str(adapter))
    llm = Llama(model_path=exported["files"]["base"], lora_path=l_adapter, logits_all=True, verbose=False, n_ctx=256)
    for chat in CHATS:
        ids = m.render(chat)
        ref = np.array(model(mx.array([ids]))[0, -1].astype(mx.float32))
        llm.reset()
        llm.eval(ids)
        assert np.abs(np.array(llm.scores[llm.n_tokens - 1]) - ref).max() < 0.05


def test_persona_switch_on_one_loaded_base_equals_one_engine_per_adapter(exported):
    """One row at a time and no kept keys/values, so that every row is computed the same way in
    both engines: at f16, llama.cpp's matmuls round differently with the batch width (see below)."""
    from localchar.backends.llama_cpp import LlamaCppEngine

    model, ad = exported["model"], exported["adapters"]
    s = Sampling(temperature=0.8, max_tokens=16, repetition_penalty=1.1)
    kw = {"slots": 1, "kv_reuse": False}
    mixed = LlamaCppEngine(model, **kw)  # a model directory: base and LoRAs converted on first use (cached)
    rows = [ad["pirate"], ad["poet"], None, ad["pirate"]]
    chats = [CHATS[0], CHATS[1], CHATS[2], CHATS[1]]
    got = mixed.generate(chats, s, 7, adapters=rows)
    assert got == mixed.generate(chats, s, 7, adapters=rows)  # seeded: reproducible
    for i, a in enumerate(rows):
        alone = LlamaCppEngine(model, adapter=a, **kw)
        # per-row seeds depend on the row's place in the call, so compare through a call of the same shape
        want = alone.generate(chats, s, 7)[i]
        assert got[i] == want, (i, a)


def test_numpy_sampler_follows_mlx_lm_rules():
    """Top-p keeps the tokens whose higher-ranked mass is below top_p (on the untempered
    distribution), the draw is categorical at the temperature, greedy is argmax after the
    repetition penalty (positive logits divided, negative multiplied)."""
    from localchar.backends.llama_cpp import sample

    x = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=np.float32)
    g = np.random.default_rng(0)
    draws = np.bincount([sample(x, None, 0.8, 0.8, 1.0, g) for _ in range(20000)], minlength=6) / 20000
    p = np.exp(x) / np.exp(x).sum()  # [0.54, 0.2, 0.12, 0.07, ...]: the nucleus for 0.8 is the top three
    q = np.exp(x[:3] / 0.8) / np.exp(x[:3] / 0.8).sum()
    assert p[:2].sum() < 0.8 < p[:3].sum()
    assert np.abs(draws[:3] - q).max() < 0.015 and draws[3:].sum() == 0
    assert sample(x, [0], 0.0, 1.0, 1.5, g) == 0 and sample(x, [0, 0], 0.0, 1.0, 2.5, g) == 1  # 2/2.5 < 1
    assert sample(np.array([-1.0, -1.2], dtype=np.float32), [0], 0.0, 1.0, 1.5, g) == 1  # -1.5 < -1.2


@pytest.fixture(scope="module")
def q8(exported):
    """A q8_0 base: on it llama.cpp's CPU kernels give a row the same numbers whatever else is in its
    batch (activations are quantized row by row); f16/f32 matmuls pick kernels by batch width and
    round differently, so there rows agree only up to float rounding, as in the MLX engine."""
    from localchar import gguf

    return str(gguf.base_gguf(exported["model"], "q8_0"))


def test_batched_greedy_equals_one_row_at_a_time(q8):
    from localchar.backends.llama_cpp import LlamaCppEngine

    chats = CHATS + [[{"role": "user", "content": "Tell me about the sea, the wind and the " + "long " * 200 + "road."}]]
    batched = LlamaCppEngine(q8, slots=4, n_batch=128)  # the long prompt is prefilled over several batches
    got = batched.generate(chats, GREEDY, 0)
    alone = LlamaCppEngine(q8, slots=1, kv_reuse=False)
    assert got == [alone.generate([c], GREEDY, 0)[0] for c in chats]
    assert sum(u[1] for u in batched.last_usage) >= 60
    # more rows than slots: later rows take the slots of rows that finished
    narrow = LlamaCppEngine(q8, slots=2)
    assert narrow.generate(chats, GREEDY, 0) == got


def test_a_sampled_row_does_not_depend_on_its_batch_companions(q8):
    from localchar.backends.llama_cpp import LlamaCppEngine

    s = Sampling(temperature=0.9, top_p=0.95, max_tokens=24, repetition_penalty=1.1)
    e = LlamaCppEngine(q8, slots=4)
    a = e.generate([CHATS[0], CHATS[1], CHATS[2]], s, 3)
    b = e.generate([CHATS[0], CHATS[2], [{"role": "user", "content": "Something else entirely."}]], s, 3)
    c = LlamaCppEngine(q8, slots=1, kv_reuse=False).generate([CHATS[0]], s, 3)
    assert a[0] == b[0] == c[0]  # same seed, same row index: same text, whatever shares the batch
    assert a == e.generate([CHATS[0], CHATS[1], CHATS[2]], s, 3)  # reproducible, keys/values kept or not


@pytest.fixture(scope="module")
def f32(exported):
    from localchar import gguf

    return str(gguf.base_gguf(exported["model"], "f32"))


F32 = {"type_k": 0, "type_v": 0}  # with an f32 cache: the configuration that reproduces MLX


@pytest.fixture
def trace(monkeypatch):
    """take() -> each row's logits, step by step, over the calls since the last take()."""
    from localchar.backends import llama_cpp as engine

    rows, seen, sample = [], {}, engine.sample

    class Row(engine._Row):
        def __init__(self, *a):
            super().__init__(*a)
            rows.append(self)

    def spy(logits, recent, temperature, top_p, penalty, rng):
        seen.setdefault(id(rng), []).append(np.array(logits))
        return sample(logits, recent, temperature, top_p, penalty, rng)

    monkeypatch.setattr(engine, "_Row", Row)
    monkeypatch.setattr(engine, "sample", spy)

    def take():
        out = [np.stack(seen[id(r.rng)]) for r in rows]
        rows.clear(), seen.clear()
        return out
    return take


def same_greedy(got, want, tol=0.02) -> bool:
    """Reused keys/values are summed in another order than a full prefill's, so the logits agree up to
    float rounding: step by step within `tol`, the same greedy token, unless the reference's top two
    are a rounding-level tie (then the texts part ways, legitimately). True if no step parted."""
    for k in range(min(len(got), len(want))):
        assert np.abs(got[k] - want[k]).max() < tol, k
        if got[k].argmax() != want[k].argmax():
            top = np.sort(want[k])[-2:]
            assert top[1] - top[0] < 2 * tol, k
            return False
    return True


def test_cache_keys_keep_a_rollout_transcript_and_prefill_only_the_new_turn(f32, trace):
    """Three turns of two transcripts in one batch: kept slots compute what prefilling everything
    computes, and prefill only what each turn adds (a reply re-rendered from its text can tokenize
    differently: the slot is rolled back to the prefix they share)."""
    from localchar.backends.llama_cpp import LlamaCppEngine

    kept, fresh = LlamaCppEngine(f32, slots=4, **F32), LlamaCppEngine(f32, slots=4, kv_reuse=False, **F32)
    assert kept.kv_reuse and not fresh.kv_reuse
    tool = '<tool_response>{"id": "e%d", "from": "sam@mail.example", "body": "%s"}</tool_response>'
    chats = [[CHATS[0][0], {"role": "user", "content": "Read my inbox."}],
             [{"role": "user", "content": "Read my inbox, then answer Sam."}]]
    agreed = 0
    for turn in range(3):
        want = fresh.generate(chats, GREEDY, turn, cache_keys=["a", "b"])
        w = trace()
        got = kept.generate(chats, GREEDY, turn, cache_keys=["a", "b"])
        for i, (g, x) in enumerate(zip(trace(), w)):
            if same_greedy(g, x):
                assert got[i] == want[i]
                agreed += 1
        prompts = [u[0] for u in kept.last_usage]
        if turn:
            assert all(0 < p < n - 10 for p, n in zip(kept.last_prefilled, prompts)), (kept.last_prefilled, prompts)
        assert fresh.last_prefilled == prompts
        for k, (c, t) in enumerate(zip(chats, want)):  # both go on with the reference's transcript
            c += [{"role": "assistant", "content": t},
                  {"role": "user", "content": tool % (turn, "The meeting moved to Friday at ten. " * (k + 2))}]
    assert agreed >= 4
    kept.forget(["a", "b"])
    assert not kept._keys
    with pytest.raises(LocalcharError, match="distinct"):
        kept.generate(chats, GREEDY, 0, cache_keys=["a", "a"])


def test_a_kept_slot_past_the_sliding_window_computes_what_a_full_prefill_does(f32, trace):
    """The tiny model's window is 64 tokens; with n_batch 16 its window layers cache 256 tokens per
    slot, so later turns extend (and roll back) a slot whose oldest window keys are gone."""
    import llama_cpp

    from localchar.backends.llama_cpp import LlamaCppEngine

    kw = {"slots": 2, "n_batch": 16, **F32}
    kept, fresh = LlamaCppEngine(f32, **kw), LlamaCppEngine(f32, kv_reuse=False, **kw)
    chat = [{"role": "user", "content": "Read my inbox, then answer Sam."}]
    for turn in range(4):
        want = fresh.generate([chat], GREEDY, turn)
        w = trace()
        got = kept.generate([chat], GREEDY, turn, cache_keys=["r"])
        if same_greedy(trace()[0], w[0]):
            assert got == want
        chat += [{"role": "assistant", "content": want[0]},
                 {"role": "user", "content": '<tool_response>{"body": "%s"}</tool_response>' % ("Friday at ten. " * 20)}]
    assert llama_cpp.llama_memory_seq_pos_min(kept._mem, kept._keys["r"].id) > 0  # the window dropped keys
    assert 0 < kept.last_prefilled[0] < kept.last_usage[0][0] - 100


def test_rows_sharing_a_prompt_prefix_prefill_it_once(f32, trace):
    from localchar.backends.llama_cpp import LlamaCppEngine

    system = {"role": "system", "content": "You are a helpful assistant at a small firm. " * 8}
    chats = [[system, {"role": "user", "content": q}] for q in ("Hi.", "How are you today?", "What is tea?")]
    want = LlamaCppEngine(f32, slots=4, kv_reuse=False, **F32).generate(chats, GREEDY, 0)
    w = trace()
    e = LlamaCppEngine(f32, slots=4, **F32)
    got = e.generate(chats, GREEDY, 0)
    for i, (g, x) in enumerate(zip(trace(), w)):
        if same_greedy(g, x):
            assert got[i] == want[i]
    n = [u[0] for u in e.last_usage]
    shared = len(os.path.commonprefix([e.render(c) for c in chats]))
    assert shared > e.SHARE_PREFIX
    assert sum(e.last_prefilled) == sum(n) - 2 * shared  # the shared prefix went through the model once


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_quantized_base_with_f16_lora_generates(exported, quant, tmp_path):
    """Quantized GGUFs run (a -march=native build crashes here on them: setup builds with GGML_NATIVE=OFF)."""
    from localchar.backends.llama_cpp import LlamaCppEngine

    out = cli("export", "gguf", "--model", exported["model"], "--out", tmp_path, "--quant", quant)
    assert out.returncode == 0, out.stderr
    e = LlamaCppEngine(json.loads(out.stdout)["base"], adapter=exported["files"]["loras"]["pirate"])
    assert all(isinstance(t, str) for t in e.generate(CHATS, GREEDY, 0))
    assert sum(u[1] for u in e.last_usage) > 0


def test_export_refuses_an_mlx_quantized_model(tmp_path, tiny_model):
    q = tmp_path / "q4"
    subprocess.run([sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(tiny_model), "--mlx-path", str(q),
                    "-q", "--q-group-size", "32"], check=True, capture_output=True)
    out = cli("export", "gguf", "--model", q, "--out", tmp_path / "o")
    assert out.returncode == 2 and "quantization" in out.stderr and "Traceback" not in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(exported):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", exported["files"]["base"],
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--model_alias", "tiny"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/models", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(30)


def test_openai_engine_runs_the_agent_loop_against_a_local_server(server, exported):
    out = cli("agent", "run", "--engine", "openai", "--base-url", server, "--max-turns", "2", "--max-tokens", "24",
              "--temperature", "0.7", "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["termination"] and row["counts"]["turns"] >= 1 and row["counts"]["completion_tokens"] > 0


def test_openai_completions_api_equals_llama_cpp_engine_greedy(server, exported):
    """api=completions renders the prompt with the model's template here; greedy output then equals
    our llama_cpp engine on the same GGUF."""
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.backends.openai import OpenAIEngine

    o = OpenAIEngine(exported["model"], base_url=server, api="completions", concurrency=2)
    assert o.model == "tiny"
    # one sequence and no flash attention, as the server computes (at f16, other kernels round differently)
    l = LlamaCppEngine(exported["files"]["base"], slots=1, flash_attn=False)
    # the server drops an incomplete UTF-8 byte sequence where we write U+FFFD, as HF tokenizers do
    assert o.generate(CHATS, GREEDY, 0) == [t.replace("\ufffd", "") for t in l.generate(CHATS, GREEDY, 0)]


def test_openai_engine_errors_are_clear():
    from localchar.backends.openai import OpenAIEngine

    with pytest.raises(LocalcharError, match="no answer after 2 tries"):
        OpenAIEngine(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="x", retries=1, backoff=0.01,
                     timeout=2).generate(CHATS[:1], GREEDY, 0)
    with pytest.raises(LocalcharError, match="adapter"):
        OpenAIEngine(base_url="http://127.0.0.1:1/v1", model="x").generate(CHATS[:1], GREEDY, 0, adapters=["a"])


def test_llama_cpp_engine_holds_a_random_model_to_the_tool_grammar(q8):
    from localchar.agent.grammar import grammar_for
    from localchar.agent.ladder import rung_messages
    from localchar.agent.scenarios import load_scenarios
    from localchar.backends.llama_cpp import LlamaCppEngine
    from localchar.config import Sampling
    from localchar.paths import DATA

    scen = load_scenarios(DATA / "scenarios-mini")[0]
    g = grammar_for(scen)
    eng = LlamaCppEngine(q8, slots=4)
    chats = [rung_messages(scen, "single")] * 3 + [CHATS[2]]
    out = eng.generate(chats, Sampling(temperature=1.0, max_tokens=60), 0, grammars=[g, g, g, None])
    for text in out[:3]:
        state = g.start
        for ch in text:  # every constrained reply is a prefix of the protocol
            state = g.step(state, ch)
            assert state is not None, text
            state = state[0]
        assert text.startswith("<tool_call>")
    assert not out[3].startswith("<tool_call>")
