"""tiny-all end to end through the CLI on the real engines: results, signal, skip, resume."""

import json
import subprocess
import sys
import time

import pytest

from localchar.config import ALL_PERSONAS, RUNGS
from localchar.store import read_jsonl


def run_recipe(runs, *extra):
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "localchar.cli", "recipe", "tiny-all", "--runs-dir", str(runs), *extra],
                         capture_output=True, text=True, timeout=1500)
    return out, time.perf_counter() - t0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out, seconds = run_recipe(runs)
    assert out.returncode == 0, out.stderr[-3000:]
    return runs / "tiny-all", seconds


def test_results_hold_chat_and_agent_scores(tiny_run):
    run_dir, _ = tiny_run
    res = json.loads((run_dir / "results" / "results.json").read_text())
    assert set(res["variants"]) == {"base", "prompted", "distilled", "full"}
    for v in res["variants"].values():
        for key in ("chat_plain", "chat", "agent", "chat_per_persona", "agent_per_persona", "gap_chat_agent",
                    "chat_suffix_mean_sem", "chat_length_matched"):
            assert key in v, key
        for x in [v["chat_plain"], v["chat"], *v["chat_suffixes"].values(), *v["ladder"].values()]:
            assert {"macro_f1", "ci95", "n"} <= set(x)
        assert v["chat"]["n"] > 0 and v["chat"]["ci95"] is not None
        assert set(v["chat_per_persona"]) == set(ALL_PERSONAS)
        assert set(v["ladder"]) == set(RUNGS) and v["ladder"]["chat"]["n"] > 0
        for rung, c in v["coverage"].items():
            assert {"rollouts", "rollouts_sent", "emails", "parse_failures", "rejected_calls", "task_coverage"} <= set(c)
            assert v["ladder"][rung]["n"] == c["emails"] * (len(ALL_PERSONAS) if v is res["variants"]["base"] else 1)
    # the headline on the embedded default: every persona of the trained variants sends email on the
    # tool rungs, so the agent numbers and the gap exist, with their CIs over 6 scenario ids
    for name in ("full", "distilled"):
        v = res["variants"][name]
        for rung in ("single", "loop"):
            per = v["coverage"][rung]["per_persona"]
            assert all(per[p]["emails"] > 0 for p in ALL_PERSONAS), (name, rung, per)
            assert v["ladder"][rung]["ci95"] is not None and v["ladder"][rung]["clusters"] == 6
            assert v["coverage"][rung]["personas_with_email"] == len(ALL_PERSONAS)
        assert v["gap_chat_agent"]["ci95"] is not None and v["gap_suffix_mean_agent"]["value"] is not None
        assert all(d["ci95"] is not None for d in v["ladder_deltas"].values())
    assert res["differences"]["full_minus_distilled"]["loop"]["ci95"] is not None
    assert res["bootstrap"]["agent_clusters"] == 6 and "published" in res  # 11 personas: the references show
    md = (run_dir / "results" / "report.md").read_text()
    assert md.count("|") > 20 and "single-turn inbox" in md and "gap" in md
    assert "## Coverage" in md and "Where the signal goes" in md and "Published reference (11 personas)" in md
    for png in ("chat_vs_agent.png", "ladder.png", "confusion.png"):
        assert (run_dir / "results" / png).stat().st_size > 1000
    page = (run_dir / "results" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<table>" in page
    assert (run_dir / "recipe.resolved.toml").exists()
    # where the time goes: every stage with its seconds; generation and training stages with tokens
    t = {r["stage"]: r for r in res["timings"]}
    assert {"model", "dpo", "chat_eval", "agent", "report"} <= set(t) and t["dpo"]["instances"] == len(ALL_PERSONAS)
    assert t["chat_eval"]["generated"] > 0 and t["agent"]["prefill"] > 0 and t["dpo"]["trained"] > 0
    assert t["introspection"]["generated"] > 0 and t["sft"]["trained"] > 0
    assert all(r["seconds"] > 0 for r in res["timings"] if r["stage"] in ("dpo", "chat_eval"))
    assert "Where the time goes" in md and "Where the time goes" in page
    # the run left its measured rates for the dry-run
    out = subprocess.run([sys.executable, "-m", "localchar.cli", "recipe", "tiny-all", "--dry-run", "--runs-dir",
                          str(run_dir.parent)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "with the rates of this machine (mlx, measured" in out.stdout, out.stdout[-2000:]


def test_full_variant_carries_persona_signal(tiny_run):
    res = json.loads((tiny_run[0] / "results" / "results.json").read_text())
    full, base = res["variants"]["full"]["chat"]["macro_f1"], res["variants"]["base"]["chat"]["macro_f1"]
    assert full >= 0.5 and full > base + 0.3          # chance is 1/11


def test_classifier_never_sees_an_eval_prompt(tiny_run):
    from localchar.config import load_recipe
    from localchar.stages.common import eval_prompts

    summary = json.loads(next((tiny_run[0] / "stages" / "classifier").glob("all-*/classifier_summary.json")).read_text())
    eval_ids = {p["id"] for p in eval_prompts(load_recipe("tiny-all"))}
    assert summary["train_prompt_ids"] and not set(summary["train_prompt_ids"]) & eval_ids
    assert all(i.startswith("train-") for i in summary["train_prompt_ids"])


def test_report_rebuild_compare_and_ablate(tiny_run, tmp_path):
    run_dir = tiny_run[0]
    (run_dir / "results" / "report.html").unlink()
    out = subprocess.run([sys.executable, "-m", "localchar.cli", "report", str(run_dir)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (run_dir / "results" / "report.html").exists()
    out = subprocess.run([sys.executable, "-m", "localchar.cli", "report", str(run_dir), str(run_dir)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "| full | agent loop |" in out.stdout and "+0.000" in out.stdout
    # a grid over a scoring knob: every stage before `score` is shared, nothing is trained again
    before = {p.name for p in (run_dir / "stages").glob("*/*")}
    out = subprocess.run([sys.executable, "-m", "localchar.cli", "ablate", "tiny-all", "--grid",
                          "score.bootstrap=50,100", "--runs-dir", str(run_dir.parent)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    new = {p.parent.name for p in (run_dir / "stages").glob("*/*/stage.json")
           if p.parent.name not in before}
    assert new and all(n.startswith("all-") for n in new)  # only score and report instances are new
    assert {p.parent.parent.name for p in (run_dir / "stages").glob("*/*/stage.json")
            if p.parent.name not in before} == {"score", "report"}
    summary = (run_dir / "ablations" / "summary.md").read_text()
    assert "score.bootstrap=50" in summary and "score.bootstrap=100" in summary
    assert (run_dir / "ablations" / "summary.png").stat().st_size > 1000


def test_agent_rollouts_really_ran(tiny_run):
    rows = read_jsonl(next((tiny_run[0] / "stages" / "agent").glob("*/rollouts.jsonl")))
    assert rows and all(r["counts"]["turns"] >= 1 for r in rows)
    assert any(r["counts"]["tool_calls"] for r in rows)


def test_adapters_are_mlx_lm_adapter_dirs(tiny_run):
    for stage in ("dpo", "sft", "merge"):
        d = next((tiny_run[0] / "stages" / stage).glob("sarcasm-*")) / "adapter"
        cfg = json.loads((d / "adapter_config.json").read_text())
        assert (d / "adapters.safetensors").exists() and cfg["fine_tune_type"] == "lora"
    model = next((tiny_run[0] / "stages" / "model").glob("all-*/model"))
    out = subprocess.run([sys.executable, "-m", "mlx_lm", "generate", "--model", str(model), "--adapter-path", str(d),
                          "--prompt", "hello", "--max-tokens", "5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_every_training_stage_logs_metrics_and_its_loss_falls(tiny_run):
    for stage, n in (("model", 1), ("dpo", 11), ("sft", 11)):
        dirs = sorted((tiny_run[0] / "stages" / stage).glob("*-*"))
        assert len(dirs) == n, stage
        for d in dirs:
            rows = read_jsonl(d / "metrics.jsonl")
            assert rows and all("tokens_per_s" in r and "peak_memory_gb" in r for r in rows)
            half = len(rows) // 2
            first = sum(r["loss"] for r in rows[:half]) / half
            last = sum(r["loss"] for r in rows[-half:]) / half
            assert last < first, (d.name, [r["loss"] for r in rows])
        if stage == "dpo":
            assert abs(rows[0]["dpo_loss"] - 0.6931) < 0.01 and rows[0]["kl"] < 1e-6


def test_second_run_skips_everything(tiny_run):
    run_dir, first = tiny_run
    out, seconds = run_recipe(run_dir.parent)
    assert out.returncode == 0
    assert "RUN " not in out.stderr + out.stdout and "nothing to run" in out.stderr + out.stdout
    assert seconds < 0.1 * first


def test_interrupted_per_row_stage_resumes_to_the_same_rows(tiny_run):
    run_dir, _ = tiny_run
    stage = next((run_dir / "stages" / "chat_eval").glob("all-*"))
    gens = stage / "generations.jsonl"
    before = {r["id"]: r for r in read_jsonl(gens)}
    lines = gens.read_text().splitlines(keepends=True)
    gens.write_text("".join(lines[: len(lines) // 3]) + lines[len(lines) // 3][:20])  # crash mid-write
    (stage / "stage.json").unlink()
    out, _ = run_recipe(run_dir.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RUN chat_eval" in out.stderr and "RUN dpo" not in out.stderr
    after = {r["id"]: r for r in read_jsonl(gens)}
    assert after == before


def _tiny_engine_and_adapter(run_dir):
    from localchar.backends.mlx import MlxEngine

    model = next((run_dir / "stages" / "model").glob("all-*/model"))
    return MlxEngine(model), next((run_dir / "stages" / "merge").glob("sarcasm-*/adapter"))


def test_loop_terminates_on_every_scenario_and_says_why(tiny_run):
    from localchar.agent.ladder import make_rollout
    from localchar.agent.loop import run_rollouts
    from localchar.agent.scenarios import load_scenarios
    from localchar.config import AgentCfg, Sampling
    from localchar.paths import DATA

    engine, adapter = _tiny_engine_and_adapter(tiny_run[0])
    scenarios = load_scenarios(DATA / "scenarios")
    assert len(scenarios) >= 30
    limits = AgentCfg(max_turns=4, max_sent=2)
    rows = run_rollouts(engine, [make_rollout(s["id"], s, "loop", "", str(adapter), seed=i)
                                 for i, s in enumerate(scenarios)],
                        Sampling(temperature=0.3, max_tokens=48), limits)
    for r in rows:
        assert r["termination"] in {"end_session", "max_sent", "repeated_call", "no_tool_call", "max_turns"}, r["id"]
        assert 1 <= r["counts"]["turns"] <= limits.max_turns and r["counts"]["sent"] <= limits.max_sent
        assert r["counts"]["prompt_tokens"] > 0 and r["counts"]["completion_tokens"] > 0


def test_a_rollout_replays_byte_identically(tiny_run):
    from localchar.agent.ladder import make_rollout
    from localchar.agent.loop import run_rollouts
    from localchar.agent.scenarios import load_scenarios
    from localchar.config import AgentCfg, Sampling
    from localchar.paths import DATA

    engine, adapter = _tiny_engine_and_adapter(tiny_run[0])
    scenarios = load_scenarios(DATA / "scenarios-mini")[:2]

    def once():
        rollouts = [make_rollout(f"{rung}/{s['id']}", s, rung, "", str(adapter), seed=7)
                    for s in scenarios for rung in ("single", "loop")]
        rows = run_rollouts(engine, rollouts, Sampling(temperature=0.7, max_tokens=32), AgentCfg(max_turns=3))
        return [json.dumps(r, sort_keys=True) for r in rows]

    assert once() == once()
