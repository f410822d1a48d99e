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


def test_mixed_share_is_validated_and_plans_its_stage_only_when_on(tmp_path):
    from localchar.runner import plan

    f = tmp_path / "mixed.toml"
    for bad in ("1.0", "-0.1", "2"):
        f.write_text(f'extends = "tiny-all"\nname = "mixed"\n[classifier]\nmixed_share = {bad}\n')
        with pytest.raises(LocalcharError, match=r"classifier\.mixed_share: must be in \[0, 1\)") as e:
            C.load_recipe(str(f))
        assert str(f) in str(e.value)
    with pytest.raises(LocalcharError, match=r"classifier\.mixed_share: expected a number"):
        C.load_recipe("tiny-all", ['classifier.mixed_share="some"'])
    with pytest.raises(LocalcharError, match="needs an email rung"):
        C.load_recipe("tiny-all", ["classifier.mixed_share=0.3", 'agent.rungs=["chat"]'])
    off = {(i.stage, i.persona): i for i in plan(C.load_recipe("tiny-all"), tmp_path)}
    on = {(i.stage, i.persona): i for i in plan(C.load_recipe("tiny-all", ["classifier.mixed_share=0.3"]), tmp_path)}
    assert ("classifier_mixed", None) not in off and set(off[("score", None)].upstream) == {"classifier", "chat_eval",
                                                                                          "agent"}
    assert set(on) - set(off) == {("classifier_mixed", None)}
    assert on[("score", None)].upstream["classifier_mixed"] is on[("classifier_mixed", None)]
    # the option touches nothing but its own stage and what reads it
    assert {s for s, p in off if off[(s, p)].key != on[(s, p)].key} == {"score", "report"}


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


def test_train_seeds_rerun_training_and_what_follows_and_share_the_rest(tmp_path):
    import dataclasses

    load_recipe = C.load_recipe
    from localchar.report import seed_spread
    from localchar.runner import plan

    recipe = load_recipe("tiny-all", ['personas=["sarcasm"]', "score.train_seeds=3"])
    main = {(i.stage, i.persona): i.key for i in plan(recipe, tmp_path)}
    rep = {(i.stage, i.persona): i.key for i in plan(dataclasses.replace(recipe, train_seed=1), tmp_path)}
    same = {s for (s, _), k in main.items() if rep[(s, _)] == k}
    assert same == {"model", "teacher", "student", "dpo_data"}
    assert recipe.training_seed() == recipe.seed != dataclasses.replace(recipe, train_seed=1).training_seed()
    # asking for replicates changes none of the main run's keys
    assert main == {(i.stage, i.persona): i.key for i in plan(load_recipe("tiny-all", ['personas=["sarcasm"]']),
                                                              tmp_path)}
    runs = [{"train_seed": k, "variants": {"full": {"chat_plain": {"macro_f1": c}, "ladder": {"loop": {"macro_f1": a}}}}}
            for k, (c, a) in enumerate([(0.8, 0.2), (0.6, None), (0.7, 0.4)])]
    s = seed_spread(runs)
    assert s["seeds"] == [0, 1, 2] and abs(s["variants"]["full"]["chat_plain"]["mean"] - 0.7) < 1e-12
    assert abs(s["variants"]["full"]["chat_plain"]["sd"] - 0.1) < 1e-12
    assert s["variants"]["full"]["loop"]["values"] == [0.2, None, 0.4] and abs(s["variants"]["full"]["loop"]["mean"] - 0.3) < 1e-12
