"""What results/ says about the run behind its numbers: provenance, what it replaced, the adapter
index (`localchar runs ls`), CI rounding, and one section list for report.md and report.html.

Run directories here are made of stage instances whose outputs are written by hand (scores from the
real score stage on synthetic texts); nothing generates, so no engine is involved."""

import hashlib
import html
import json
import re
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from localchar import classify
from localchar import config as C
from localchar import results as R
from localchar import runner
from localchar.report import fmt_ci, markdown, html_page, write_report
from localchar.stages import score
from localchar.store import write_json, write_jsonl

PERSONAS = C.ALL_PERSONAS  # 11: the published references show
CI = re.compile(r"([+-]?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]")


# ----------------------------------------------------------------------------- rounding
def test_fmt_ci_examples():
    # the old report printed this one as "0.015 [0.02, 0.02]"
    assert fmt_ci(0.0152, [0.015, 0.0155]) == "0.015 [0.015, 0.016]"
    assert fmt_ci(0.7, [0.7, 0.7]) == "0.700 [0.700, 0.700]"        # exact values stay put
    assert fmt_ci(0.25, [0.1234, 0.9876], decimals=2) == "0.25 [0.12, 0.99]"
    assert fmt_ci(-0.0004, [-0.0031, 0.0002], sign=True) == "+0.000 [-0.004, 0.001]"
    assert fmt_ci(0.5, None) == "0.500 n/a" and fmt_ci(None, [0, 1]) == "–"


def _decimals(s: str) -> int:
    return len(s.split(".")[1])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.floats(-2, 2, allow_nan=False), min_size=3, max_size=3), st.integers(0, 5), st.booleans())
def test_printed_interval_contains_printed_point(xs, decimals, sign):
    lo, point, hi = sorted(xs)
    text = fmt_ci(point, [lo, hi], decimals=decimals, sign=sign)
    if decimals == 0:
        m = re.fullmatch(r"([+-]?\d+) \[(-?\d+), (-?\d+)\]", text)
    else:
        m = re.fullmatch(r"([+-]?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]", text)
    assert m, text
    p, a, b = m.groups()
    if decimals:
        assert _decimals(p) == _decimals(a) == _decimals(b) == decimals, text
    assert Decimal(a) <= Decimal(p) <= Decimal(b), text
    # and the rounding is not looser than one step at that precision
    step = Decimal(1).scaleb(-decimals)
    assert Decimal(a) <= Decimal(repr(lo)) < Decimal(a) + step
    assert Decimal(b) - step < Decimal(repr(hi)) <= Decimal(b)


# ----------------------------------------------------------------------------- synthetic scores
def _recipe(*extra):
    return C.load_recipe("tiny-all", ['variants=["base", "full"]', "score.bootstrap=60", *extra])


class _ScoreCtx:
    def __init__(self, tmp, recipe):
        self.tmp, self.recipe, self.out = tmp, recipe, tmp / "score"

    def updir(self, stage):
        return self.tmp / stage


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """scores.json of the real score stage: 11 personas, each with its own words; a quarter of the
    chat answers and of the emails come out in the next persona's words (imperfect, with real CIs)."""
    tmp = tmp_path_factory.mktemp("score")
    recipe = _recipe()
    words = {p: f"{p} " + " ".join(f"{p[:4]}{i}" for i in range(6)) for p in PERSONAS}
    clf = classify.train("tfidf", list(words.values()) * 3, list(words) * 3, 0)
    for d in ("classifier", "chat_eval", "agent", "score"):
        (tmp / d).mkdir()
    classify.save(clf, tmp / "classifier" / "classifier")
    other = lambda i, p: PERSONAS[(PERSONAS.index(p) + 1) % len(PERSONAS)] if i % 4 == 0 else p  # noqa: E731
    gens = [{"id": f"full/{p}/eval/q{i}/{x or 'plain'}", "variant": "full", "persona": p, "split": "eval",
             "prompt_id": f"q{i}", "suffix": x, "response": words[other(i + j, p)]}
            for j, p in enumerate(PERSONAS) for i in range(6) for x in (None, "v0")]
    gens += [{"id": f"base/-/eval/q{i}/plain", "variant": "base", "persona": None, "split": "eval",
              "prompt_id": f"q{i}", "suffix": None, "response": "hello there"} for i in range(6)]
    write_jsonl(tmp / "chat_eval" / "generations.jsonl", gens)
    rollouts = [{"id": f"loop/full/{p}/s{k}/0", "scenario": f"s{k}", "variant": "full", "persona": p, "rung": "loop",
                 "termination": "end_session", "outputs": [words[other(k + j + 1, p)]]}
                for j, p in enumerate(PERSONAS) for k in range(5)]
    rollouts += [{"id": f"loop/base/-/s{k}/0", "scenario": f"s{k}", "variant": "base", "persona": None, "rung": "loop",
                  "termination": "max_turns", "outputs": ["hello there"]} for k in range(5)]
    write_jsonl(tmp / "agent" / "rollouts.jsonl", rollouts)
    score.run(_ScoreCtx(tmp, recipe))
    clf_summary = {"kind": "tfidf", "train_rows": 33, "train_variants": ["full"], "train_prompt_ids": ["t1"]}
    return json.loads((tmp / "score" / "scores.json").read_text()), clf_summary


def test_one_section_list_renders_both_pages(scores, tmp_path):
    sc, clf = scores
    recipe = _recipe()
    res = write_report(sc, recipe, C.load_model_card(recipe.model), tmp_path, clf)
    assert res["inference"]["engine"] == "mlx" and res["published"]["chat_macro_f1_full_models"] == [0.86, 0.95]
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    heads = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert "Published reference (11 personas)" in heads and "Controls" in heads and "Coverage: what each agent " \
        "number stands on" in heads and len(heads) >= 9
    for h in heads:
        assert f"<h2>{html.escape(h)}</h2>" in page, h
    assert "0.86–0.95" in md and "0.86–0.95" in page and "0.29–0.55" in page   # the reference values, both pages
    assert "Classifier: <code>tfidf</code>" in page and "Classifier: `tfidf`" in md
    # every table cell of the Markdown is in the HTML too
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            for cell in line.strip("| ").split(" | "):
                assert f"<td>{html.escape(cell)}</td>" in page or f"<th>{html.escape(cell)}</th>" in page, cell
    # every value with its CI prints at one precision, the point inside the printed interval
    cis = CI.findall(md)
    assert len(cis) >= 12
    for p, a, b in cis:
        assert _decimals(p) == _decimals(a) == _decimals(b) == 3
    full = res["variants"]["full"]["chat_plain"]
    assert full["ci95"][0] <= full["macro_f1"] <= full["ci95"][1] and full["ci95"][0] < full["ci95"][1]
    assert fmt_ci(full["macro_f1"], full["ci95"]) in md
    # without the 11 personas the reference section says why it is not shown, on both pages
    res6 = {**res, "personas": PERSONAS[:6], "chance_macro_f1": 1 / 6}
    res6.pop("published")
    assert "## Published reference" in markdown(res6) and "<h2>Published reference</h2>" in html_page(res6, tmp_path)
    assert "so they are not shown" in html_page(res6, tmp_path)


# ----------------------------------------------------------------------------- run directories
WEIGHTS = {"config.json": b'{"model_type": "gemma3_text"}', "tokenizer.model": b"spm" * 50,
           "tokenizer_config.json": b"{}", "model.safetensors": bytes(range(256)) * 40}


def make_run(runs, recipe, scores, engine, skip_adapters=()):
    """Every stage instance of `recipe` finished (stage.json as the runner writes it), with the
    outputs the published results read: model.json and its files, engine.json of the generation
    stages, scores, the classifier summary, the report; adapter dirs except `skip_adapters`
    ((stage, persona): left unfinished)."""
    sc, clf = scores
    run_dir = runs / recipe.name
    card = C.load_model_card(recipe.model)
    instances = runner.plan(recipe, run_dir)
    for inst in instances:
        if inst.done:
            continue
        inst.dir.mkdir(parents=True, exist_ok=True)
        if (inst.stage, inst.persona) in skip_adapters:
            continue  # started, not finished
        if inst.stage == "model":
            (inst.dir / "model").mkdir()
            for name, data in WEIGHTS.items():
                (inst.dir / "model" / name).write_bytes(data)
            write_json(inst.dir / "model.json", {"path": "model", "card": C.to_dict(card)})
        if inst.stage in ("chat_eval", "agent"):
            write_json(inst.dir / "engine.json", {"engine": engine, "model": "model-dir", "quant": None})
        if inst.stage in ("dpo", "sft", "merge"):
            (inst.dir / "adapter").mkdir()
            (inst.dir / "adapter" / "adapter_config.json").write_text('{"fine_tune_type": "lora"}')
            (inst.dir / "adapter" / "adapters.safetensors").write_bytes(b"lora")
        if inst.stage == "classifier":
            write_json(inst.dir / "classifier_summary.json", clf)
        if inst.stage == "score":
            write_json(inst.dir / "scores.json", sc)
        if inst.stage == "report":
            write_report(sc, recipe, card, inst.dir, clf)
        write_json(inst.dir / "stage.json", {
            "stage": inst.stage, "persona": inst.persona, "key": inst.key, "status": "done",
            "version": inst.module.VERSION, "params": inst.params,
            "upstream": {d: ({p: i.key for p, i in u.items()} if isinstance(u, dict) else u.key)
                         for d, u in inst.upstream.items()},
            "seconds": 1.5, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "tokens": None})
    return run_dir, instances


def test_results_say_which_run_they_hold_and_what_they_replaced(scores, tmp_path):
    runs = tmp_path / "runs"
    mlx = _recipe()
    run_dir, inst = make_run(runs, mlx, scores, "mlx")
    runner.run(mlx, runs)
    res_dir = run_dir / "results"
    res = json.loads((res_dir / "results.json").read_text())
    p = res["provenance"]
    key = {i.stage: i.key for i in inst if i.persona is None}
    assert p["engine"] == "mlx" and p["quant"] == {"chat_eval": "none", "agent": "none"} and p["bootstrap"] == 60
    assert p["stages"]["score"]["key"] == key["score"] and p["stages"]["classifier"]["key"] == key["classifier"]
    assert p["stages"]["score"]["dir"] == f"stages/score/all-{key['score'][:12]}"
    assert set(p["stages"]) == {"report", "score", "classifier", "chat_eval", "agent", "model"}
    assert p["recipe"] == {"name": "tiny-all", "source": mlx.source, "sha256": R.recipe_sha256(mlx),
                           "file": "recipe.resolved.toml"}
    files = {f["name"]: f for f in p["model"]["files"]}
    assert set(files) == set(WEIGHTS) and p["model"]["card"] == "tiny"
    for name, data in WEIGHTS.items():
        assert files[name] == {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    import importlib.metadata as md

    assert set(p["packages"]) == set(R.PACKAGES) and p["packages"]["scikit-learn"] == md.version("scikit-learn")
    assert res["replaced"] is None
    assert (res_dir / "recipe.resolved.toml").read_text() == runner.resolved_text(mlx)
    assert (res_dir / "recipe.resolved.toml").read_text().startswith(f"# resolved from {mlx.source}\n")
    assert R.recipe_sha256(R.load_run_recipe(run_dir)) == p["recipe"]["sha256"]  # round trip
    idx = json.loads((res_dir / "adapters.json").read_text())
    assert idx["counts"] == {"done": 11, "partial": 0, "missing": 0}
    md_text, page = (res_dir / "report.md").read_text(), (res_dir / "report.html").read_text()
    sha = files["model.safetensors"]["sha256"]
    for text in (md_text, page):
        assert "Provenance" in text and sha in text and key["score"] in text and "replaced no other run" in text

    # the same run again: replaced in place, nothing archived
    runner.run(mlx, runs)
    assert not (run_dir / "results-previous").exists()

    # another engine: the mlx results move aside, and the new ones say so
    llama = _recipe("engine=llama_cpp")
    make_run(runs, llama, scores, "llama_cpp")
    runner.run(llama, runs)
    res2 = json.loads((res_dir / "results.json").read_text())
    assert res2["provenance"]["engine"] == "llama_cpp" and res2["provenance"]["stages"]["score"]["key"] != key["score"]
    r = res2["replaced"]
    assert r["engine"] == "mlx" and r["chat_eval_quant"] == "none" and r["score_key"] == key["score"]
    assert r["finished"] == p["finished"] and set(r["differs"]) == {"engine", "recipe_sha256", "score_key"}
    old = run_dir / r["moved_to"]
    assert old.parent == run_dir / "results-previous" and old.name.endswith("-mlx-none")
    assert json.loads((old / "results.json").read_text())["provenance"] == p
    assert "moved to `results-previous/" in (res_dir / "report.md").read_text()
    assert "moved to <code>results-previous/" in (res_dir / "report.html").read_text()

    # a rebuilt report (localchar report RUN_DIR) of the same run stays in place and keeps the record
    from localchar.cli import _rebuild_report

    _rebuild_report(run_dir)
    res3 = json.loads((res_dir / "results.json").read_text())
    assert res3["replaced"] == r and res3["provenance"]["stages"]["score"] == res2["provenance"]["stages"]["score"]
    assert len(list((run_dir / "results-previous").iterdir())) == 1

    # results from before provenance existed are archived too, never silently deleted
    (res_dir / "results.json").write_text(json.dumps({"recipe": "tiny-all", "inference": {
        "engine": "auto", "chat_eval_quant": "q8_0", "agent_quant": "q8_0"}}))
    runner.run(llama, runs)
    r4 = json.loads((res_dir / "results.json").read_text())["replaced"]
    assert r4["engine"] == "auto" and r4["chat_eval_quant"] == "q8_0" and r4["moved_to"].endswith("-auto-q8_0")
    assert len(list((run_dir / "results-previous").iterdir())) == 2


def test_model_hashes_are_taken_once(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x" * 1000)
    cache = tmp_path / "model_files.json"
    first = R.hash_files([f], cache)
    assert first == [{"name": f.name, "bytes": 1000, "sha256": hashlib.sha256(b"x" * 1000).hexdigest()}]
    known = json.loads(cache.read_text())
    known[str(f.resolve())]["sha256"] = "cached"
    cache.write_text(json.dumps(known))
    assert R.hash_files([f], cache)[0]["sha256"] == "cached"      # same size and mtime: not read again
    f.write_bytes(b"y" * 1001)
    assert R.hash_files([f], cache)[0]["sha256"] == hashlib.sha256(b"y" * 1001).hexdigest()


def test_runs_ls_maps_variants_and_personas_to_adapter_dirs(scores, tmp_path):
    from localchar.cli import cli

    recipe = _recipe()
    run_dir = tmp_path / "runs" / recipe.name
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.resolved.toml").write_text(runner.resolved_text(recipe))
    make_run(tmp_path / "runs", recipe, scores, "mlx", skip_adapters={("merge", "sarcasm"), ("sft", "sarcasm")})
    inst = {(i.stage, i.persona): i for i in runner.plan(recipe, run_dir)}
    import shutil

    shutil.rmtree(inst[("dpo", "humor")].dir)
    shutil.rmtree(inst[("sft", "humor")].dir)
    shutil.rmtree(inst[("merge", "humor")].dir)
    out = CliRunner().invoke(cli, ["runs", "ls", str(run_dir), "--json"])
    assert out.exit_code == 0, out.output
    m = json.loads(out.output)
    rows = {(r["variant"], r["persona"]): r for r in m["adapters"]}
    assert len(rows) == 1 + 11 and m["exact"] is True
    assert rows[("base", None)]["status"] == "no adapter" and rows[("base", None)]["adapter"] is None
    sar = rows[("full", "sarcasm")]
    assert sar["status"] == "partial" and sar["stages"]["dpo"]["status"] == "done"
    assert sar["stages"]["sft"]["status"] == sar["stages"]["merge"]["status"] == "partial"
    assert sar["adapter"] == f"stages/merge/sarcasm-{inst[('merge', 'sarcasm')].key[:12]}/adapter"
    assert sar["stages"]["dpo"]["key"] == inst[("dpo", "sarcasm")].key
    assert rows[("full", "humor")]["status"] == "missing"
    ok = rows[("full", "poeticism")]
    merged = inst[("merge", "poeticism")]
    assert ok["status"] == "done" and ok["adapter"] == f"stages/merge/poeticism-{merged.key[:12]}/adapter"
    assert (run_dir / ok["stages"]["sft"]["dir"] / "adapters.safetensors").exists()
    assert m["counts"] == {"done": 9, "partial": 1, "missing": 1}
    text = CliRunner().invoke(cli, ["runs", "ls", str(run_dir)]).output
    line = next(x for x in text.splitlines() if x.startswith("full") and " sarcasm " in x)
    assert "partial" in line and f"sarcasm-{inst[('dpo', 'sarcasm')].key[:12]}" in line and "(partial)" in line
    assert "9 done, 1 partial, 1 missing" in text
    # not a run directory: one line, exit 2
    for bad in (tmp_path, tmp_path / "nope"):
        p = subprocess.run([sys.executable, "-m", "localchar.cli", "runs", "ls", str(bad)], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0, p.stderr
        assert str(bad) in p.stderr
