"""The committed inputs: personas, prompts, suffixes, corpus, scenarios."""


import pytest

from localchar.agent.scenarios import load_scenarios
from localchar.config import ALL_PERSONAS
from localchar.data import load_prompts, load_suffixes
from localchar.errors import LocalcharError
from localchar.paths import DATA
from localchar.personas import load_persona, persona_names
from localchar.store import read_jsonl


def test_the_eleven_personas_in_label_order():
    assert persona_names()[:11] == ALL_PERSONAS
    for name in ALL_PERSONAS:
        p = load_persona(name)
        assert len(p.traits) == (15 if name == "goodness" else 10)
        assert all(len(t["prompts"]) == 5 for t in p.traits)
        assert all(t["text"].startswith(("I ", "My ")) for t in p.traits)


def test_persona_missing_field_is_named(tmp_path):
    f = tmp_path / "pirate.toml"
    f.write_text('name = "pirate"\ndisplay = "Pirate"\n[[traits]]\ntext = "I say arr."\n')
    with pytest.raises(LocalcharError, match=r"pirate\.toml: traits\[0\] is missing field 'prompts'"):
        load_persona(str(f))
    f.write_text('name = "pirate"\ndisplay = "Pirate"\n[[traits]]\ntext = "I say arr."\nprompts = ["hi"]\n')
    assert load_persona(str(f)).traits[0]["prompts"] == ["hi"]


def test_prompt_sets_are_large_and_disjoint():
    train, ev = load_prompts(DATA / "prompts" / "train.jsonl"), load_prompts(DATA / "prompts" / "eval.jsonl")
    assert len(train) + len(ev) >= 300
    assert not {p["prompt"].lower() for p in train} & {p["prompt"].lower() for p in ev}
    assert not {p["id"] for p in train} & {p["id"] for p in ev}


def test_eight_suffixes():
    assert [s["id"] for s in load_suffixes(DATA / "suffixes.toml")] == [f"v{i}" for i in range(8)]


def test_corpus_answers_train_prompts_for_every_persona():
    train = {p["id"] for p in load_prompts(DATA / "prompts" / "train.jsonl")}
    for name in ALL_PERSONAS + ["neutral"]:
        rows = read_jsonl(DATA / "corpus" / f"{name}.jsonl", required=("id", "response"))
        assert len(rows) >= 20
        assert {r["id"] for r in rows} <= train


def test_scenarios_load_and_each_needs_a_reply():
    assert len(load_scenarios(DATA / "scenarios")) >= 30
    assert len(load_scenarios(DATA / "scenarios-mini")) >= 4
