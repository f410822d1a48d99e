"""The three upstream self-interaction data bugs stay fixed (each assertion fails on the upstream
behaviour: identical free/leading prompts, a sample ending on a user turn, a literal {NAME})."""

from localchar.backends.scripted import ScriptedEngine
from localchar.config import IntrospectionCfg
from localchar.personas import load_persona
from localchar.stages.introspection import GUIDANCE, REFLECTION_PROMPTS, reflections, self_interactions


def test_self_interaction_rows():
    cfg = IntrospectionCfg(interactions=2, interaction_turns=3)
    eng = ScriptedEngine([f"reply {i}." for i in range(6)])
    rows = self_interactions(eng, load_persona("loving"), "Gemma", cfg, (0, "k"))
    free, leading = rows
    # bug 1: the guidance sentence is really there, so free and leading prompts differ
    assert GUIDANCE["free"] in free["messages"][0]["content"]
    assert GUIDANCE["leading"] in leading["messages"][0]["content"]
    assert free["messages"][0]["content"] != leading["messages"][0]["content"]
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        # bug 2: the last reply is kept, so the sample ends on the assistant, and roles alternate
        assert roles[0] == "system" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles[1:], roles[2:]))
        # bug 3: the name is filled in
        assert "{NAME}" not in row["messages"][0]["content"] and "Gemma" in row["messages"][0]["content"]
    # 3 turns: greeting + 3 replies; speaker 1 keeps greeting, its reply, the other's reply, its reply
    assert [m["content"] for m in free["messages"][1:]] == [free["messages"][1]["content"], "reply 0.", "reply 2.",
                                                            "reply 4."]
    # every chat sent to the engine starts with a user turn after the system prompt (Gemma's rule)
    assert all(c[1]["role"] == "user" for c in eng.prompts)


def test_reflection_rows_drop_the_system_prompt():
    cfg = IntrospectionCfg(reflection_samples=2)
    rows = reflections(ScriptedEngine(["I reflect."] * 20), load_persona("humor"), "Gemma", cfg, (0, "k"))
    assert len(rows) == 2 * len(REFLECTION_PROMPTS)
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
