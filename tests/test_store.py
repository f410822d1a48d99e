import pytest

from localchar.errors import LocalcharError
from localchar.store import JsonlAppender, derive_seed, read_jsonl


def test_appender_resumes_and_drops_torn_line(tmp_path):
    p = tmp_path / "rows.jsonl"
    with JsonlAppender(p) as a:
        a.write([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    p.write_text(p.read_text() + '{"id": "c", "v"')  # a crash mid-write
    with JsonlAppender(p) as a:
        assert a.done == {"a", "b"}
        a.write([{"id": "b", "v": 99}, {"id": "c", "v": 3}])  # b is not written twice
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b", "c"]
    assert read_jsonl(p)[1]["v"] == 2


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": 1}\n{oops\n')
    with pytest.raises(LocalcharError, match=r"x\.jsonl:2: malformed JSON"):
        read_jsonl(p)
    p.write_text('{"id": 1}\n')
    with pytest.raises(LocalcharError, match=r"x\.jsonl:1: missing field 'prompt'"):
        read_jsonl(p, required=("id", "prompt"))


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, "k", "row") == derive_seed(1, "k", "row")
    assert derive_seed(1, "k", "row") != derive_seed(1, "k", "row2")
