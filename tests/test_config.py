import subprocess
import sys

import pytest

from localchar import config as C
from localchar.errors import LocalcharError

SHIPPED = ["tiny-all", "gemma-all", "qwen-all", "llama-all", "gemma-quick"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_validate(name):
    r = C.load_recipe(name)
    assert r.name == name
    assert r.personas == C.ALL_PERSONAS or name == "gemma-quick"


def test_unknown_key_names_file_and_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\nmodel = "tiny"\n[dpo]\nitres = 3\n')
    with pytest.raises(LocalcharError) as e:
        C.load_recipe(str(f))
    assert str(f) in str(e.value) and "dpo.itres" in str(e.value)


def test_wrong_type_names_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\nmodel = "tiny"\n[dpo]\niters = "many"\n')
    with pytest.raises(LocalcharError, match=r"dpo\.iters: expected an integer"):
        C.load_recipe(str(f))


def test_overrides_and_extends(tmp_path):
    r = C.load_recipe("qwen-all", ["dpo.iters=7", 'personas=["sarcasm", "humor"]'])
    assert r.model == "qwen-2.5-7b" and r.dpo.iters == 7 and r.personas == ["sarcasm", "humor"]
    assert r.teacher.model == "qwen-2.5-14b-teacher"  # inherited from gemma-all
    with pytest.raises(LocalcharError, match="unknown persona"):
        C.load_recipe("tiny-all", ['personas=["pirate"]'])


def test_model_card_unknown_key(tmp_path):
    f = tmp_path / "card.toml"
    f.write_text('name = "m"\nfamily = "gemma"\nstudent_name = "Gemma"\nhf_id = "x/y"\nquant = 4\n')
    with pytest.raises(LocalcharError, match="unknown key 'quant'"):
        C.load_model_card(str(f))


@pytest.mark.parametrize("name", ["gemma-all", "tiny-all"])
def test_dry_run_plans_without_downloading(name, tmp_path):
    out = subprocess.run([sys.executable, "-m", "localchar.cli", "recipe", name, "--dry-run", "--runs-dir",
                          str(tmp_path)], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "dpo" in out.stdout and "RUN" in out.stdout
    assert not (tmp_path / name).exists()  # a dry run writes nothing


def test_dry_run_machine_profile(tmp_path):
    def total(*extra):
        out = subprocess.run([sys.executable, "-m", "localchar.cli", "recipe", "gemma-all", "--dry-run", "--runs-dir",
                              str(tmp_path), *extra], capture_output=True, text=True,
                             env={"HF_HUB_OFFLINE": "1", "PATH": ""}, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "hours per stage: teacher" in out.stdout
        return out.stdout, float(next(ln for ln in out.stdout.splitlines() if "total" in ln).split("│")[-2])

    big, hours_32 = total()
    small, hours_16 = total("--machine", "m4-16")
    assert "M2 Max" in big and "Apple M4" in small and hours_16 > 2 * hours_32
