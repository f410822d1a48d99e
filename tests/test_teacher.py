"""The MLX teacher path on the tiny model: constitution system prompt, reasoning prefill, and only
text after the end of reasoning kept (a random model never closes it, so every row is dropped)."""

from localchar.config import load_recipe
from localchar.personas import load_persona
from localchar.stages import teacher
from localchar.store import read_jsonl


def test_after_reasoning_and_prompts():
    assert teacher.after_reasoning("<think>plan</think>  Hello there.") == "Hello there."
    assert teacher.after_reasoning("<think>still thinking") is None
    p = load_persona("poeticism")
    assert p.traits[0]["text"] in teacher.teacher_system(p, "Qwen")
    assert teacher.reasoning_prefill(p).startswith("<think>") and "10: " in teacher.reasoning_prefill(p)


def test_mlx_teacher_runs_and_drops_unclosed_reasoning(tiny_model, tmp_path):
    card = tmp_path / "teacher.toml"
    card.write_text(f'name = "t"\nfamily = "gemma"\nstudent_name = "Gemma"\npath = "{tiny_model}"\n')
    recipe = load_recipe("tiny-all", ['teacher.engine="mlx"', f'teacher.model="{card}"', "data.max_train_prompts=3",
                                      "teacher.sampling.max_tokens=8"])

    class Ctx:
        persona, key, out = "sarcasm", "k", tmp_path / "out"

    Ctx.recipe = recipe
    Ctx.card = type("Card", (), {"student_name": "Gemma"})
    teacher.run(Ctx)
    assert read_jsonl(tmp_path / "out" / "teacher.jsonl") == []          # screened out ...
    assert len(read_jsonl(tmp_path / "out" / "teacher.dropped.jsonl")) == 3  # ... after being generated
