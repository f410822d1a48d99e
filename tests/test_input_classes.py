"""Classes of bad input, beyond tests/test_bad_input.py: undecodable bytes, a directory or a device
where a file belongs, wrong types inside JSONL rows and scenario tables, adapter and model configs
of the wrong type or size, values out of range, names and manifests that point outside their
directory, and inputs without end. Every case must exit 2 with one line on stderr that names the
file or option, show no traceback, stay within a time and memory bound, and leave a finished run
directory (and everything else under the test's folder) byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localchar.paths import DATA, RECIPES

TINY = (RECIPES / "tiny-all.toml").read_text()
PERSONA = (Path(__file__).resolve().parent.parent / "localchar/personas/constitutions/poeticism.toml").read_text()
SCENARIO = (DATA / "scenarios-mini" / sorted(os.listdir(DATA / "scenarios-mini"))[0]).read_text()
LATIN1 = "caf\u00e9 au lait".encode("latin-1")   # 0xe9: not UTF-8
TIME_BOUND_S = 120          # a hang, not a benchmark: these machines are slow and shared
RSS_BOUND_MB = 3000         # imports (mlx, torch) take ~0.5-1 GB; an unbounded read would take more


# ----------------------------------------------------------------------------- building blocks
def write(d: Path, name: str, data: str | bytes) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
    return p


def recipe(d: Path, *lines: str, **data: str) -> Path:
    """The tiny-all recipe as a file named "bad" (its run dir is d/runs/bad), the shipped data by
    absolute path, with `lines` added at the top and `data` paths replaced."""
    text = TINY.replace('name = "tiny-all"', 'name = "bad"')
    paths = {"train_prompts": DATA / "prompts/train.jsonl", "eval_prompts": DATA / "prompts/eval.jsonl",
             "suffixes": DATA / "suffixes.toml", "corpus": DATA / "corpus", "scenarios": DATA / "scenarios-mini"}
    paths.update(data)
    text = text.replace('scenarios = "data/scenarios-mini"', "".join(f'{k} = "{v}"\n' for k, v in paths.items()))
    head, rest = text.split("\n[", 1)
    return write(d, "r.toml", head + "\n" + "\n".join(lines) + "\n\n[" + rest)


def run_recipe(d: Path, *extra) -> list:
    return ["recipe", recipe(d), "--runs-dir", d / "runs", *extra]


def override(*sets: str):
    return lambda d: run_recipe(d, *[a for s in sets for a in ("-s", s)])


def with_data(**files):
    """A recipe whose data.<key> is a file written by files[key](d)."""
    return lambda d: ["recipe", recipe(d, **{k: f(d) for k, f in files.items()}), "--runs-dir", d / "runs"]


def rows(*objs) -> callable:
    return lambda d: write(d, "rows.jsonl", "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))


def link(d: Path, name: str, target: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(target)
    return p


def fifo(d: Path, name: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(p)
    return p


def scenario(d: Path, old: str, new: str) -> list:
    assert old in SCENARIO, old
    return ["agent", "scenarios", "--dir", write(d, "s/a.toml", SCENARIO.replace(old, new, 1)).parent]


def persona_run(d: Path, text: str | bytes) -> list:
    p = write(d, "p.toml", text)
    return ["recipe", recipe(d, f'personas = ["{p}"]'), "--runs-dir", d / "runs"]


def model_copy(d: Path, tiny: Path, **config) -> Path:
    import shutil

    m = d / "m"
    shutil.copytree(tiny, m)
    cfg = json.loads((m / "config.json").read_text())
    cfg.update(config)
    (m / "config.json").write_text(json.dumps(cfg))
    return m


def generate(model, *extra) -> list:
    return ["generate", "--model", model, "--prompt", "hi", "--max-tokens", "2", *extra]


def adapter(d: Path, config) -> Path:
    a = d / "ad"
    write(a, "adapter_config.json", config if isinstance(config, (str, bytes)) else json.dumps(config))
    write(a, "adapters.safetensors", b"")
    return a


GOOD_ADAPTER = {"fine_tune_type": "lora", "num_layers": -1, "lora_parameters": {"rank": 2, "scale": 1.0, "dropout": 0.0}}


def classifier(d: Path, files=None, extra=None) -> Path:
    """A real tfidf classifier trained on two labels; `files` replaces its manifest's file map and
    `extra(dir)` adds a file to its directory."""
    from localchar import classify as C

    c = d / "clf"
    clf = C.train("tfidf", ["a cat sat", "the cat", "a dog ran", "the dog"], ["a", "a", "b", "b"], 0)
    C.save(clf, c)
    if extra:
        extra(c)
    if files is not None:
        m = json.loads((c / "classifier.json").read_text())
        m["files"] = files
        (c / "classifier.json").write_text(json.dumps(m))
    return c


def sha(p: str) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the cases
# name -> (make(d, tiny) -> argv, text the one line must contain)
T = lambda f: (lambda d, tiny: f(d))  # noqa: E731  cases that need no model
CASES = {
    # undecodable bytes
    "latin-1 recipe": (T(lambda d: ["recipe", write(d, "x.toml", b'name = "' + LATIN1 + b'"\n'), "--dry-run"]),
                       "not UTF-8 text (byte offset 11"),
    "latin-1 constitution": (T(lambda d: ["personas", write(d, "p.toml", b"# " + LATIN1 + b"\n")]), "p.toml: not UTF-8"),
    "latin-1 constitution in a recipe": (T(lambda d: persona_run(d, b"# " + LATIN1 + b"\n")), "p.toml: not UTF-8"),
    "latin-1 train prompts": (T(with_data(train_prompts=lambda d: write(d, "t.jsonl", b'{"id": "a", "prompt": "' + LATIN1 + b'"}\n'))),
                              "t.jsonl:1: not UTF-8"),
    "latin-1 on line 2": (T(with_data(eval_prompts=lambda d: write(d, "e.jsonl", b'{"id": "a", "prompt": "x"}\n{"id": "' + LATIN1 + b'"}\n'))),
                          "e.jsonl:2: not UTF-8 text (byte offset 38: 0xe9)"),
    "latin-1 suffixes": (T(with_data(suffixes=lambda d: write(d, "s.toml", b"# " + LATIN1))), "s.toml: not UTF-8"),
    "latin-1 scenario": (T(lambda d: ["agent", "scenarios", "--dir", write(d, "s/a.toml", b"id = '" + LATIN1 + b"'").parent]),
                         "a.toml: not UTF-8"),
    "latin-1 corpus": (T(lambda d: ["recipe", recipe(d, corpus=write(d, "c/sarcasm.jsonl", LATIN1).parent), "--runs-dir", d / "runs"]),
                       "sarcasm.jsonl:1: not UTF-8"),
    "latin-1 classifier data": (T(lambda d: ["classify", "train", "--data", write(d, "c.jsonl", LATIN1), "--out", d / "o"]),
                                "c.jsonl:1: not UTF-8"),
    "latin-1 model config": (T(lambda d: generate(write(d, "m/config.json", b'{"a": "' + LATIN1 + b'"}').parent)),
                             "config.json: not UTF-8"),
    "latin-1 classifier manifest": (T(lambda d: ["classify", "eval", "--model", write(d, "k/classifier.json", LATIN1).parent,
                                                 "--data", DATA / "prompts/core.jsonl"]), "classifier.json: not UTF-8"),
    "latin-1 adapter config": (lambda d, tiny: generate(tiny, "--adapter", adapter(d, LATIN1)), "adapter_config.json: not UTF-8"),
    # a directory, device or FIFO where a regular file belongs (or a file where a directory does)
    "recipe is a directory": (T(lambda d: ["recipe", (d / "x.toml").mkdir() or d / "x.toml", "--dry-run"]), "is a directory"),
    "persona is a directory": (T(lambda d: ["personas", (d / "p.toml").mkdir() or d / "p.toml"]), "is a directory"),
    "train prompts is a directory": (T(with_data(train_prompts=lambda d: (d / "t").mkdir() or d / "t")), "t: is a directory"),
    "suffixes is a directory": (T(with_data(suffixes=lambda d: (d / "s").mkdir() or d / "s")), "s: is a directory"),
    "scenario dir is a file": (T(lambda d: ["agent", "scenarios", "--dir", write(d, "f", "x")]), "is a file, expected a directory"),
    "adapter is a file": (lambda d, tiny: generate(tiny, "--adapter", write(d, "a.safetensors", "x")), "is a file, expected a directory"),
    "model is a file": (T(lambda d: generate(write(d, "model.bin", "x"))), "is a file, expected a directory"),
    "parse a directory": (T(lambda d: ["agent", "parse", d]), "is a directory. (see `localchar agent parse --help`)"),
    "classifier data is a directory": (T(lambda d: ["classify", "train", "--data", d, "--out", d / "o"]), "is a directory"),
    "/dev/zero as prompts": (T(with_data(train_prompts=lambda d: "/dev/zero")), "not a regular file"),
    "FIFO as prompts": (T(with_data(eval_prompts=lambda d: fifo(d, "e.jsonl"))), "not a regular file"),
    "/dev/zero behind a recipe link": (T(lambda d: ["recipe", link(d, "z.toml", "/dev/zero"), "--dry-run"]), "not a regular file"),
    "/dev/zero behind a scenario link": (T(lambda d: ["agent", "scenarios", "--dir", link(d, "s/a.toml", "/dev/zero").parent]),
                                         "not a regular file"),
    "/dev/zero as classifier data": (T(lambda d: ["classify", "predict", "--model", classifier(d), "--data", "/dev/zero"]),
                                     "not a regular file"),
    # wrong types inside JSONL rows
    "prompt id a list": (T(with_data(train_prompts=rows({"id": [1], "prompt": "x"}))), "field 'id': expected a string or an integer, got a list"),
    "prompt id true": (T(with_data(train_prompts=rows({"id": True, "prompt": "x"}))), "field 'id'"),
    "prompt text a number": (T(with_data(train_prompts=rows({"id": "a", "prompt": 5}))), "field 'prompt': expected a string, got an integer"),
    "prompt null": (T(with_data(eval_prompts=rows({"id": "a", "prompt": None}))), "field 'prompt': expected a string, got null"),
    "row is a list": (T(with_data(train_prompts=rows([1, 2]))), "rows.jsonl:1: expected an object (a table), got a list"),
    "NaN in a row": (T(with_data(train_prompts=rows('{"id": NaN, "prompt": "x"}'))), "rows.jsonl:1: malformed JSON"),
    "5000-digit id": (T(with_data(train_prompts=rows('{"id": ' + "9" * 5000 + ', "prompt": "x"}'))), "rows.jsonl:1: malformed JSON"),
    "deeply nested row": (T(with_data(train_prompts=rows("[" * 100000 + "]" * 100000))), "rows.jsonl:1:"),
    "classifier label a list": (T(lambda d: ["classify", "train", "--data", rows({"text": "x", "label": ["a"]})(d), "--out", d / "o"]),
                                "field 'label': expected a string, got a list"),
    "classifier text a number": (T(lambda d: ["classify", "train", "--data", rows({"text": 5, "label": "a"})(d), "--out", d / "o"]),
                                 "field 'text'"),
    "classifier split a number": (T(lambda d: ["classify", "train", "--data", rows({"text": "x", "label": "a", "split": 1})(d),
                                               "--out", d / "o"]), "field 'split'"),
    "corpus response a number": (T(lambda d: ["recipe", recipe(d, corpus=write(d, "c/sarcasm.jsonl", '{"id": "a", "response": 5}\n').parent),
                                              "--runs-dir", d / "runs"]), "field 'response'"),
    # scenario tables of the wrong shape
    "from is a list": (T(lambda d: scenario(d, 'from = "', 'from = ["x"]\nold_from = "')), "field 'from': expected a string, got a list"),
    "contact without address": (T(lambda d: scenario(d, "\naddress = ", "\naddr = ")), "contacts[0]: missing field 'address'"),
    "contacts a string": (T(lambda d: ["agent", "scenarios", "--dir", write(d, "s/a.toml", 'contacts = "everyone"\n' + SCENARIO.replace(
        "[[contacts]]", "[[old_contacts]]")).parent]),
                          "field 'contacts': expected a list"),
    "needs_reply a string": (T(lambda d: scenario(d, "needs_reply = true", 'needs_reply = "yes"')), "field 'needs_reply': expected true/false"),
    "clock not a date": (T(lambda d: scenario(d, 'clock_start = "', 'clock_start = "soon"\nold_clock = "')), "clock_start: 'soon' is not an ISO"),
    "email timestamp not a date": (T(lambda d: scenario(d, 'timestamp = "', 'timestamp = "yesterday"\nold_ts = "')), "timestamp: 'yesterday'"),
    "email a string": (T(lambda d: ["agent", "scenarios", "--dir", write(d, "s/a.toml", SCENARIO.split("[[emails]]")[0].split("[[contacts]]")[0]
                                                                       + 'contacts = [{name = "a", address = "a@x"}]\nemails = ["hello"]\n').parent]),
                       "emails[0]: expected an object (a table), got a string"),
    # adapter and model configs
    "adapter scale a word": (lambda d, tiny: generate(tiny, "--adapter", adapter(d, {**GOOD_ADAPTER, "lora_parameters": {"rank": 2, "scale": "twenty"}})),
                             "lora_parameters.scale: expected a number, got 'twenty'"),
    "adapter rank 0": (lambda d, tiny: generate(tiny, "--adapter", adapter(d, {**GOOD_ADAPTER, "lora_parameters": {"rank": 0, "scale": 1.0}})),
                       "lora_parameters.rank"),
    "adapter num_layers a string": (lambda d, tiny: generate(tiny, "--adapter", adapter(d, {**GOOD_ADAPTER, "num_layers": "all"})),
                                    "num_layers: expected an integer, got 'all'"),
    "adapter config a list": (lambda d, tiny: generate(tiny, "--adapter", adapter(d, "[]")), "no 'lora_parameters' table"),
    "adapter weights 0 bytes": (lambda d, tiny: generate(tiny, "--adapter", adapter(d, GOOD_ADAPTER)), "adapters.safetensors: not a safetensors file"),
    "hidden_size a word": (lambda d, tiny: generate(model_copy(d, tiny, hidden_size="big")), "hidden_size: expected a positive integer"),
    "vocab_size 10**12": (lambda d, tiny: generate(model_copy(d, tiny, vocab_size=10**12)), "vocab_size = 1000000000000 is larger than any tensor"),
    "100000 layers": (lambda d, tiny: generate(model_copy(d, tiny, num_hidden_layers=100000)), "num_hidden_layers = 100000, but the weights hold 6"),
    "negative heads": (lambda d, tiny: generate(model_copy(d, tiny, num_attention_heads=-2)), "num_attention_heads: expected a positive integer"),
    "model_type a list": (lambda d, tiny: generate(model_copy(d, tiny, model_type=["gemma3_text"])), "model_type: expected a string"),
    "model_type a path": (lambda d, tiny: generate(model_copy(d, tiny, model_type="../../os")), "unsupported architecture"),
    "model weights 0 bytes": (lambda d, tiny: generate(model_copy(d, tiny)), "model.safetensors: not a safetensors file"),
    "model weights truncated": (lambda d, tiny: generate(model_copy(d, tiny)), "model.safetensors: truncated"),
    "config.json with 5000-digit number": (T(lambda d: generate(write(d, "m/config.json", '{"model_type": "gemma3_text", "hidden_size": ' + "9" * 5000 + "}").parent)),
                                           "config.json: invalid JSON"),
    # nonsense values, held to the schema's rules
    "negative iters": (T(override("dpo.iters=-5")), "dpo.iters: must be in [0, 16777216], got -5"),
    "sampling batch 0": (T(override("student.sampling.batch_size=0")), "student.sampling.batch_size: must be in [1, 4096]"),
    "max_tokens 10**12": (T(override("chat_eval.sampling.max_tokens=1000000000000")), "chat_eval.sampling.max_tokens"),
    "max_tokens over the context": (T(override("agent.sampling.max_tokens=5000")), "more than model tiny reads (context = 4096)"),
    "NaN learning rate": (T(override("dpo.learning_rate=nan")), "dpo.learning_rate: must be a finite number"),
    "infinite learning rate": (T(override("sft.learning_rate=inf")), "sft.learning_rate: must be a finite number"),
    "zero learning rate": (T(override("dpo.learning_rate=0.0")), "dpo.learning_rate: must be in (0, 10]"),
    "NaN temperature": (T(override("teacher.sampling.temperature=nan")), "teacher.sampling.temperature: must be a finite number"),
    "negative temperature": (T(override("agent.sampling.temperature=-1.0")), "agent.sampling.temperature: must be in [0, 100]"),
    "top_p 2": (T(override("agent.sampling.top_p=2.0")), "agent.sampling.top_p: must be in (0, 1]"),
    "negative seed": (T(override("seed=-1")), "seed: must be in [0,"),
    "negative prompt limit": (T(override("data.max_train_prompts=-5")), "data.max_train_prompts: must be in [0,"),
    "no personas": (T(override("personas=[]")), "personas: must list at least one"),
    "no variants": (T(override("variants=[]")), "variants: must list at least one"),
    "lora num_layers 0": (T(override("dpo.lora.num_layers=0", "sft.lora.num_layers=0")), "num_layers: must be in [1, 1024] (or -1: every block)"),
    "dropout 1.5": (T(override("dpo.lora.dropout=1.5")), "dpo.lora.dropout: must be in [0, 1)"),
    "bootstrap -1": (T(override("score.bootstrap=-1")), "score.bootstrap"),
    "max_turns 0": (T(override("agent.max_turns=0")), "agent.max_turns"),
    "cli temperature nan": (lambda d, tiny: generate(tiny, "--temperature", "nan"), "--temperature: must be a finite number"),
    "cli top-p 2": (lambda d, tiny: generate(tiny, "--top-p", "2"), "--top-p: must be in (0, 1]"),
    "cli max-tokens 0": (lambda d, tiny: generate(tiny, "--max-tokens", "0"), "--max-tokens: must be in [1,"),
    "cli seed -3": (lambda d, tiny: generate(tiny, "--seed", "-3"), "--seed: must be in [0,"),
    "cli max-turns 0": (lambda d, tiny: ["agent", "run", "--model", tiny, "--max-turns", "0"], "--max-turns: must be in [1, 1000]"),
    "cli option of the wrong type": (T(lambda d: ["generate", "--model", d, "--prompt", "x", "--max-tokens", "many"]),
                                     "'--max-tokens': 'many' is not a valid integer"),
    "labels the classifier does not know": (T(lambda d: ["classify", "eval", "--model", classifier(d), "--data",
                                                         rows({"text": "a cat", "label": "zebra"})(d)]),
                                            "label 'zebra' is not one the classifier knows"),
    # names and manifests that point outside
    "run name ../x": (T(override("name=../x")), "name: '../x' must be a plain name"),
    "run name /": (T(override("name=/")), "name: '/' must be a plain name"),
    "run name a/b": (T(override("name=a/b")), "must be a plain name"),
    "run name ..": (T(override("name=..")), "must be a plain name"),
    "manifest names ../../etc/passwd": (T(lambda d: ["classify", "eval", "--model", classifier(d, {"../../etc/passwd": sha("/etc/passwd")}),
                                                     "--data", rows({"text": "a", "label": "a"})(d)]), "is outside the classifier directory"),
    "manifest names an absolute path": (T(lambda d: ["classify", "predict", "--model", classifier(d, {"/etc/passwd": sha("/etc/passwd")}),
                                                     "--data", rows({"text": "a"})(d)]), "is outside the classifier directory"),
    "manifest file links outside": (T(lambda d: ["classify", "predict", "--model",
                                                 classifier(d, {"x": sha("/etc/passwd")}, extra=lambda c: link(c, "x", "/etc/passwd")),
                                                 "--data", rows({"text": "a"})(d)]), "is outside the classifier directory"),
    "manifest names a FIFO": (T(lambda d: ["classify", "predict", "--model", classifier(d, {"f": "0" * 64}, extra=lambda c: fifo(c, "f")),
                                           "--data", rows({"text": "a"})(d)]), "not a regular file"),
    "manifest files not a map": (T(lambda d: ["classify", "predict", "--model", classifier(d, ["tfidf.json"]),
                                              "--data", rows({"text": "a"})(d)]), "files: expected an object"),
}


def truncate_weights(d: Path, case: str) -> None:
    w = d / "m" / "model.safetensors"
    if case == "model weights 0 bytes":
        w.write_bytes(b"")
    elif case == "model weights truncated":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def tree_hash(d: Path) -> dict:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_symlink() or not p.exists():
            out[str(p)] = "link"
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p)] = "dir"
        else:
            out[str(p)] = "special"
    return out


def finished_run(d: Path) -> None:
    """A finished-looking run directory for the recipe "bad": a failed invocation must not touch it."""
    r = d / "runs" / "bad"
    write(r, "recipe.resolved.toml", "# resolved from somewhere\nname = \"bad\"\n")
    write(r, "results/results.json", json.dumps({"recipe": "bad"}))
    write(r, "stages/model/all-0123456789ab/stage.json", json.dumps({"status": "done"}))


def run_measured(argv, cwd: Path) -> tuple[int, str, float]:
    """Exit code, stderr and the peak RSS (MB) of exactly this child (os.wait4's rusage)."""
    import tempfile

    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen([sys.executable, "-m", "localchar.cli", *map(str, argv)], stdout=subprocess.DEVNULL,
                                stderr=errf, cwd=cwd)
        deadline = time.monotonic() + TIME_BOUND_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                pytest.fail(f"{argv}: still running after {TIME_BOUND_S} s (unbounded work)")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        return proc.returncode, errf.read().decode("utf-8", "replace"), usage.ru_maxrss / 1024


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_class(case, tmp_path, tiny_model):
    make, expected = CASES[case]
    d = tmp_path / "w"
    d.mkdir()
    argv = make(d, tiny_model)
    truncate_weights(d, case)
    finished_run(d)
    before = tree_hash(d)
    code, err, rss = run_measured(argv, cwd=d)
    err = err.strip()
    assert code == 2, (case, code, err[-1500:])
    assert "Traceback" not in err and err.count("\n") == 0, (case, err[-1500:])
    assert err.startswith("error: ") and expected in err, (case, err)
    assert rss < RSS_BOUND_MB, (case, f"{rss:.0f} MB")
    assert tree_hash(d) == before, (case, "the invocation changed files under the test folder")
    assert not (tmp_path / "x").exists() and not (d / "x").exists()


def test_there_are_enough_cases():
    assert len(CASES) >= 60


def test_a_bug_says_so_and_exits_1(tmp_path):
    """An exception that is not about the user's input is shown with its traceback and a line that
    says it is a bug (here: a scenario directory the process may not list is no input error we model;
    simulated by making the CLI's own module raise)."""
    code = ("import sys; import localchar.cli as c\n"
            "def boom(*a, **k): raise RuntimeError('internal')\n"
            "c.agent_scenarios.callback = boom\n"
            "sys.argv = ['localchar', 'agent', 'scenarios']\n"
            "c.main()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "LOCALCHAR_NO_OPENBLAS": "1"})
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "RuntimeError: internal" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: this is a bug in localchar")
