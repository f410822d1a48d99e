import subprocess
import sys

from localchar import __version__


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "localchar.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_version_and_help():
    assert cli("--version").stdout.strip().endswith(__version__)
    for cmd in (["--help"], ["recipe", "--help"], ["personas", "--help"], ["models", "build-tiny", "--help"],
                ["generate", "--help"], ["export", "gguf", "--help"], ["doctor", "--help"], ["agent", "run", "--help"], ["agent", "parse", "--help"]):
        out = cli(*cmd)
        assert out.returncode == 0 and "Usage" in out.stdout


def test_personas_list_and_show():
    out = cli("personas")
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) >= 11 and "Flourishing" in out.stdout
    out = cli("personas", "poeticism")
    assert out.returncode == 0 and " 1. " in out.stdout


def test_recipe_list():
    out = cli("recipe", "--list")
    assert out.returncode == 0 and "tiny-all" in out.stdout and "gemma-all" in out.stdout


def test_bad_input_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nmodel = "tiny"\nbogus = 1\n')
    out = cli("recipe", str(bad), "--dry-run")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and str(bad) in out.stderr and "bogus" in out.stderr
    persona = tmp_path / "p.toml"
    persona.write_text('name = "p"\n[[traits]]\ntext = "I x."\nprompts = []\n')
    out = cli("personas", str(persona))
    assert out.returncode == 2 and "'display'" in out.stderr and "Traceback" not in out.stderr
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": \n')
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'extends = "tiny-all"\nname = "r"\n[data]\ntrain_prompts = "{prompts}"\n')
    out = cli("recipe", str(recipe), "--dry-run")
    assert out.returncode == 2 and "prompts.jsonl:2" in out.stderr and "Traceback" not in out.stderr


def test_build_tiny_and_generate(tmp_path):
    out = cli("models", "build-tiny", str(tmp_path / "m"), "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m" / "tokenizer.model").exists() and (tmp_path / "m" / "config.json").exists()
    a = cli("generate", "--model", str(tmp_path / "m"), "--prompt", "hello", "--max-tokens", "8", "--seed", "3")
    b = cli("generate", "--model", str(tmp_path / "m"), "--prompt", "hello", "--max-tokens", "8", "--seed", "3")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and "<start_of_turn>" not in a.stdout


def test_doctor():
    out = cli("doctor")
    assert out.returncode == 0 and "engine mlx: works" in out.stdout


def test_agent_commands(tiny_model, tmp_path):
    import json

    from localchar.paths import DATA

    out = cli("agent", "scenarios")
    assert out.returncode == 0 and len(out.stdout.splitlines()) >= 30
    f = tmp_path / "out.txt"
    f.write_text('ok <tool_call>{"name": "read_email", "arguments": {"email_id": "e1"}}</tool_call>')
    out = cli("agent", "parse", str(f))
    assert out.returncode == 0 and json.loads(out.stdout) == {"name": "read_email", "arguments": {"email_id": "e1"},
                                                              "form": "tagged"}
    f.write_text("<tool_call>{broken</tool_call>")
    out = cli("agent", "parse", str(f), "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["errors"]
    out = cli("agent", "run", "--model", str(tiny_model), "--scenarios", str(DATA / "scenarios-mini"),
              "--scenario", "mini_recipe_01", "--max-turns", "2", "--max-tokens", "8", "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["scenario"] == "mini_recipe_01" and row["rung"] == "loop" and row["termination"]
    out = cli("agent", "run", "--model", str(tiny_model), "--scenario", "no_such_one")
    assert out.returncode == 2 and "no such scenario" in out.stderr and "Traceback" not in out.stderr


def test_help_works_beside_a_folder_named_localchar(tmp_path):
    """After `git clone ... localchar` the clone sits in the working directory as ./localchar; the
    command (which re-executes itself with OpenBLAS preloaded) must still import the installed package."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "localchar").mkdir()
    exe = shutil.which("localchar", path=str(Path(sys.executable).parent))
    out = subprocess.run([exe, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Usage:" in out.stdout, out.stderr[-1500:]
