"""A table of malformed inputs a user can hand the CLI. Each must give exit code 2 and one line on
stderr that names the file (or option) and what is wrong, with no traceback, and must leave
finished outputs alone. `-v` shows the traceback."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localchar.paths import DATA, RECIPES

TINY = (RECIPES / "tiny-all.toml").read_text()
PERSONA = (Path(__file__).resolve().parent.parent / "localchar/personas/constitutions/poeticism.toml").read_text()


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "localchar.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def recipe_file(d: Path, replace: tuple[str, str] | None = None) -> Path:
    text = TINY.replace('name = "tiny-all"', 'name = "bad"')
    if replace:
        assert replace[0] in text, replace
        text = text.replace(*replace)
    p = d / "r.toml"
    # the shipped data, by absolute path (the file lives elsewhere)
    text = text.replace('scenarios = "data/scenarios-mini"', f'scenarios = "{DATA / "scenarios-mini"}"\n' + "".join(
        f'{k} = "{DATA / v}"\n' for k, v in (("train_prompts", "prompts/train.jsonl"), ("eval_prompts", "prompts/eval.jsonl"),
                                           ("suffixes", "suffixes.toml"), ("corpus", "corpus"))))
    p.write_text(text)
    return p


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def data_recipe(d: Path, key: str, path: Path) -> Path:
    default = {"train_prompts": "prompts/train.jsonl", "eval_prompts": "prompts/eval.jsonl"}[key]
    p = recipe_file(d)
    p.write_text(p.read_text().replace(f'{key} = "{DATA / default}"', f'{key} = "{path}"'))
    return p


def two_level_extends(d: Path) -> list:
    write(d, "b.toml", 'extends = "gemma-all"\nname = "b"\n')
    return ["recipe", write(d, "c.toml", 'extends = "b"\nname = "c"\n'), "--dry-run"]


def unwritable_runs_dir(d: Path) -> list:
    # a runs directory that cannot be created (its parent is a file); chmod is no barrier to root
    return ["recipe", "tiny-all", "--runs-dir", write(d, "blocker", "") / "runs"]


def persona_recipe(d: Path, *paths: Path) -> Path:
    return recipe_file(d, replace=('model = "tiny"', 'model = "tiny"\npersonas = [' +
                                   ", ".join(f'"{p}"' for p in paths) + "]"))


def model_dir(d: Path, config: dict | None) -> Path:
    m = d / "model"
    m.mkdir()
    if config is not None:
        (m / "config.json").write_text(json.dumps(config))
    return m


CASES = {
    # recipe TOML
    "unknown key": (lambda d: ["recipe", recipe_file(d, replace=('model = "tiny"', 'model = "tiny"\nbogus = 1')), "--dry-run"],
                    "unknown key 'bogus'"),
    "unknown nested key": (lambda d: ["recipe", recipe_file(d, replace=("[dpo]\n", "[dpo]\nwarmup = 3\n")), "--dry-run"],
                           "unknown key 'dpo.warmup'"),
    "wrong type": (lambda d: ["recipe", recipe_file(d, replace=("iters = 10", 'iters = "ten"')), "--dry-run"],
                   "dpo.iters: expected an integer"),
    "invalid TOML": (lambda d: ["recipe", write(d, "x.toml", "name = [unclosed"), "--dry-run"], "invalid TOML"),
    "missing model": (lambda d: ["recipe", write(d, "x.toml", 'name = "x"\n'), "--dry-run"], "missing required key 'model'"),
    "unknown persona": (lambda d: ["recipe", recipe_file(d, replace=('model = "tiny"', 'model = "tiny"\npersonas = ["pirate"]')),
                                   "--dry-run"], "unknown persona 'pirate'"),
    "unknown variant": (lambda d: ["recipe", recipe_file(d, replace=('model = "tiny"', 'model = "tiny"\nvariants = ["best"]')),
                                   "--dry-run"], "unknown variant 'best'"),
    "unknown model card": (lambda d: ["recipe", recipe_file(d, replace=('model = "tiny"', 'model = "gpt-9"')), "--dry-run"],
                           "model card 'gpt-9' not found"),
    "unknown rung": (lambda d: ["recipe", recipe_file(d, replace=("[agent]\n", '[agent]\nrungs = ["dance"]\n')), "--dry-run"],
                     "unknown rung 'dance'"),
    "unknown classifier": (lambda d: ["recipe", recipe_file(d, replace=("[classifier]\n", '[classifier]\nkind = "svm"\n')),
                                      "--dry-run"], "classifier.kind"),
    "warmup out of range": (lambda d: ["recipe", recipe_file(d, replace=("warmup_ratio = 0.2", "warmup_ratio = 1.5")),
                                       "--dry-run"], "dpo.warmup_ratio"),
    "two-level extends": (two_level_extends, "one level of 'extends'"),
    "extends missing": (lambda d: ["recipe", write(d, "c.toml", 'extends = "nowhere"\nname = "c"\n'), "--dry-run"],
                        "recipe 'nowhere' not found"),
    "unknown --force stage": (lambda d: ["recipe", "tiny-all", "--force", "painting", "--runs-dir", d, "--dry-run"],
                              "--force painting: unknown stage"),
    "override without =": (lambda d: ["recipe", "tiny-all", "-s", "dpo.iters", "--dry-run"], "expected KEY=VALUE"),
    "recipe not found": (lambda d: ["recipe", "no-such-recipe", "--dry-run"], "recipe 'no-such-recipe' not found"),
    # persona files
    "persona missing traits": (lambda d: ["recipe", persona_recipe(d, write(d, "p.toml", 'name = "p"\ndisplay = "P"\n')),
                                          "--dry-run"], "missing field 'traits'"),
    "persona invalid TOML": (lambda d: ["personas", write(d, "p.toml", "name = ")], "invalid TOML"),
    "duplicate persona": (lambda d: ["recipe", persona_recipe(d, write(d, "a/p.toml", PERSONA), write(d, "b/p.toml", PERSONA)),
                                     "--dry-run"], "duplicate persona 'poeticism'"),
    "path-like persona name": (lambda d: ["recipe", persona_recipe(d, write(d, "p.toml", PERSONA.replace(
        'name = "poeticism"', 'name = "../escape"'))), "--dry-run"], "name '../escape'"),
    # prompt JSONL
    "bad prompt line": (lambda d: ["recipe", data_recipe(d, "train_prompts", write(d, "t.jsonl", '{"id": "a", "prompt": "x"}\n{oops\n')),
                                   "--dry-run"], "t.jsonl:2: malformed JSON"),
    "empty prompt file": (lambda d: ["recipe", data_recipe(d, "train_prompts", write(d, "t.jsonl", "")), "--dry-run"],
                          "t.jsonl: no rows"),
    "prompt row missing field": (lambda d: ["recipe", data_recipe(d, "train_prompts", write(d, "t.jsonl", '{"id": "a", "text": "x"}\n')),
                                            "--dry-run"], "t.jsonl:1: missing field 'prompt'"),
    "missing prompt file": (lambda d: ["recipe", data_recipe(d, "train_prompts", d / "none.jsonl"), "--dry-run"],
                            "none.jsonl: file not found"),
    "eval prompt in train": (lambda d: ["recipe", data_recipe(d, "eval_prompts", DATA / "prompts/core.jsonl"), "--dry-run"],
                             "eval must be held out"),
    # scenario files
    "scenario missing field": (lambda d: ["agent", "scenarios", "--dir", write(d, "s/a.toml", 'id = "a"\n').parent],
                               "missing field 'version'"),
    "scenario invalid TOML": (lambda d: ["agent", "scenarios", "--dir", write(d, "s/a.toml", "id = ").parent], "invalid TOML"),
    "scenario dir empty": (lambda d: ["agent", "scenarios", "--dir", (d / "empty").mkdir() or d / "empty"],
                           "no scenario files"),
    # model dirs
    "model without config": (lambda d: ["generate", "--model", model_dir(d, None), "--prompt", "hi"], "config.json"),
    "unsupported architecture": (lambda d: ["generate", "--model", model_dir(d, {"model_type": "teapot"}), "--prompt", "hi"],
                                 "teapot"),
    "model dir missing": (lambda d: ["generate", "--model", d / "nowhere", "--prompt", "hi"], "model directory not found"),
    "hub model offline": (lambda d: ["generate", "--model", "nobody/not-cached-anywhere", "--prompt", "hi"],
                          "not in the local Hugging Face cache"),
    "adapter without config": (lambda d: ["generate", "--model", d / "nowhere", "--adapter", d, "--prompt", "hi"],
                               "model directory not found"),
    # classifier dirs
    "not a classifier": (lambda d: ["classify", "eval", "--model", d, "--data", DATA / "prompts/core.jsonl"],
                         "not a classifier directory"),
    # engines
    "unknown engine": (lambda d: ["recipe", recipe_file(d, replace=('model = "tiny"', 'model = "tiny"\nengine = "vllm"')),
                                  "--dry-run"], "engine: must be 'mlx', 'llama_cpp' or 'auto'"),
    "unknown agent quant": (lambda d: ["recipe", recipe_file(d, replace=("max_sent = 2", 'max_sent = 2\nquant = "q3"')),
                                       "--dry-run"], "agent.quant: must be"),
    "openai teacher without url": (lambda d: ["recipe", recipe_file(d, replace=('engine = "corpus"', 'engine = "openai"')),
                                              "--dry-run"], "teacher.base_url: required"),
    "missing gguf file": (lambda d: ["generate", "--engine", "llama_cpp", "--model", d / "none.gguf", "--prompt", "hi"],
                          "none.gguf: no such GGUF file"),
    "export from an empty dir": (lambda d: ["export", "gguf", "--model", d, "--out", d / "o"], "no config.json"),
    # a run directory that cannot be written
    "unwritable runs dir": (unwritable_runs_dir, "cannot write"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(case, tmp_path):
    make, expected = CASES[case]
    out = cli(*make(tmp_path))
    err = out.stderr.strip()
    assert out.returncode == 2, (case, out.returncode, err[-800:])
    assert "Traceback" not in err and err.count("\n") == 0, (case, err[-800:])
    assert err.startswith("error: ") and expected in err, (case, err)


def test_adapter_errors_and_verbose_traceback(tiny_model, tmp_path):
    from localchar.train.lora import add_lora, save_adapter
    from mlx_lm import load

    model, _ = load(str(tiny_model))
    add_lora(model, -1, {"rank": 2, "scale": 1.0, "dropout": 0.0})
    save_adapter(model, tmp_path / "ad", -1, {"rank": 2, "scale": 1.0, "dropout": 0.0})
    f = tmp_path / "ad" / "adapters.safetensors"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    out = cli("generate", "--model", tiny_model, "--adapter", tmp_path / "ad", "--prompt", "hi", "--max-tokens", "2")
    assert out.returncode == 2 and "adapters.safetensors" in out.stderr and "Traceback" not in out.stderr, out.stderr
    shutil.rmtree(tmp_path / "ad")
    cfg = json.loads((tiny_model / "config.json").read_text())
    wide = tmp_path / "wide"
    shutil.copytree(tiny_model, wide)
    (wide / "config.json").write_text(json.dumps({**cfg, "hidden_size": cfg["hidden_size"] * 2}))
    # an adapter trained on a different shape: the error names the adapter
    model, _ = load(str(tiny_model))
    add_lora(model, -1, {"rank": 2, "scale": 1.0, "dropout": 0.0})
    save_adapter(model, tmp_path / "ad", -1, {"rank": 2, "scale": 1.0, "dropout": 0.0})
    from mlx.utils import tree_flatten

    import mlx.core as mx
    w = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(tmp_path / "ad" / "adapters.safetensors"), {k: mx.zeros((3, 3)) for k in w})
    out = cli("generate", "--model", tiny_model, "--adapter", tmp_path / "ad", "--prompt", "hi", "--max-tokens", "2")
    assert out.returncode == 2 and "adapter" in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = cli("-v", "generate", "--model", tiny_model, "--adapter", tmp_path / "ad", "--prompt", "hi", "--max-tokens", "2")
    assert out.returncode == 2 and "Traceback" in out.stderr
