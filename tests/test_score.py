"""Scoring: email bodies and chat answers through a fitted classifier (no engine involved)."""

import json

from localchar import classify
from localchar.config import load_recipe
from localchar.stages import score
from localchar.store import write_jsonl


class Ctx:
    def __init__(self, tmp, recipe):
        self.tmp, self.recipe = tmp, recipe

    def updir(self, stage):
        return self.tmp / stage

    @property
    def out(self):
        return self.tmp / "score"


def test_score_counts_emails_and_base_rows_once_per_persona(tmp_path):
    recipe = load_recipe("tiny-all", ['personas=["sarcasm", "poeticism"]', 'variants=["base", "full"]'])
    words = {"sarcasm": "oh wonderful, truly genius, what a shock", "poeticism": "moonlit river, silver dawn, soft tide"}
    clf = classify.train("tfidf", [w for w in words.values()] * 3, list(words) * 3, 0)
    for d in ("classifier", "chat_eval", "agent", "score"):
        (tmp_path / d).mkdir()
    classify.save(clf, tmp_path / "classifier" / "classifier")
    gens = [{"id": f"full/{p}/eval/x/plain", "variant": "full", "persona": p, "split": "eval", "prompt_id": "x",
             "suffix": None, "response": words[p]} for p in words]
    gens.append({"id": "base/-/eval/x/plain", "variant": "base", "persona": None, "split": "eval", "prompt_id": "x",
                 "suffix": None, "response": "hello there"})
    write_jsonl(tmp_path / "chat_eval" / "generations.jsonl", gens)
    rollouts = [{"id": f"loop/full/{p}/s/0", "scenario": "s", "variant": "full", "persona": p, "rung": "loop",
                 "termination": "end_session", "sent_emails": [{"body": words["poeticism"]}],
                 "outputs": [words["poeticism"]]} for p in words]
    rollouts.append({"id": "loop/base/-/s/0", "scenario": "s", "variant": "base", "persona": None, "rung": "loop",
                     "termination": "max_turns", "sent_emails": [], "outputs": []})
    rollouts += [{"id": f"chat/full/{p}/s/0", "scenario": "s", "variant": "full", "persona": p, "rung": "chat",
                  "termination": "answered", "sent_emails": [], "outputs": [words[p]]} for p in words]
    write_jsonl(tmp_path / "agent" / "rollouts.jsonl", rollouts)
    score.run(Ctx(tmp_path, recipe))
    scores = json.loads((tmp_path / "score" / "scores.json").read_text())
    d = scores["differences"]["full_minus_base"]
    # chat eval (plain, all) and the ladder's "inbox as chat" rung are three different measures
    assert d["chat_all"]["value"] == scores["variants"]["full"]["chat"]["macro_f1"] - scores["variants"]["base"]["chat"]["macro_f1"]
    assert d["chat"] == {"value": None, "ci95": None}  # base wrote nothing on the chat rung here
    s = scores["variants"]
    assert s["full"]["chat"]["macro_f1"] == 1.0
    # both personas' emails read as poetic: poeticism recall 1, sarcasm recall 0
    assert s["full"]["agent"]["n"] == 2 and s["full"]["agent"]["per_persona"]["sarcasm"] == 0.0
    assert abs(s["full"]["agent"]["macro_f1"] - (0 + 2 / 3) / 2) < 1e-9
    assert s["base"]["chat"]["n"] == 2           # one base answer, scored against both labels
    assert s["base"]["chat"]["clusters"] == 1    # ... and resampled as one
    assert s["base"]["agent"]["n"] == 0 and s["base"]["agent"]["macro_f1"] is None   # nothing sent: no score
    assert s["full"]["coverage"]["loop"]["rollouts_sent"] == 2 and s["base"]["coverage"]["loop"]["rollouts_sent"] == 0
    assert s["full"]["ladder"]["chat"]["macro_f1"] == 1.0 and s["full"]["ladder"]["chat"]["n"] == 2
    assert s["full"]["ladder"]["loop"] == s["full"]["agent"]
    assert s["full"]["gap_chat_agent"]["value"] == 1.0 - s["full"]["agent"]["macro_f1"]
    assert s["full"]["chat_length_matched"]["words"] == 6 and s["full"]["chat_length_matched"]["n"] == 2
    assert s["base"]["chat_length_matched"]["words"] == 0
    assert all("mixed_domain" not in v for v in s.values())  # classifier.mixed_share = 0: no such block


def test_bootstrap_keeps_a_prompts_answers_and_a_base_texts_labels_together(tmp_path):
    """chat pools each prompt's plain and suffixed answers; when the suffixed ones repeat the plain
    answer word for word, the pooled set holds no more information than the plain one, and its
    clustered CI must be the plain CI, not a narrower one. Base texts scored against every label
    resample as one cluster per text."""
    from localchar.classify.metrics import bootstrap_cis

    recipe = load_recipe("tiny-all", ['personas=["sarcasm", "poeticism", "humor"]', 'variants=["base", "full"]',
                                      "score.bootstrap=400"])
    styles = {"sarcasm": "oh wonderful truly genius what a shock", "poeticism": "moonlit river silver dawn soft tide",
              "humor": "a pun walks into a bar and orders a joke"}
    clf = classify.train("tfidf", list(styles.values()) * 3, list(styles) * 3, 0)
    for d in ("classifier", "chat_eval", "agent", "score"):
        (tmp_path / d).mkdir()
    classify.save(clf, tmp_path / "classifier" / "classifier")
    personas = list(styles)
    gens = []
    for suffix in (None, "v0", "v1"):
        for i in range(24):
            p = personas[i % 3]
            # a third of the answers come out in another persona's style: an imperfect score with a real CI
            text = styles[personas[(i + 1) % 3]] if i % 4 == 0 else styles[p]
            gens.append({"id": f"full/{p}/eval/q{i}/{suffix or 'plain'}", "variant": "full", "persona": p,
                         "split": "eval", "prompt_id": f"q{i}", "suffix": suffix, "response": f"{text} {i}"})
        gens += [{"id": f"base/-/eval/q{i}/{suffix or 'plain'}", "variant": "base", "persona": None, "split": "eval",
                  "prompt_id": f"q{i}", "suffix": suffix, "response": styles[personas[i % 3]]} for i in range(5)]
    write_jsonl(tmp_path / "chat_eval" / "generations.jsonl", gens)
    write_jsonl(tmp_path / "agent" / "rollouts.jsonl", [])
    score.run(Ctx(tmp_path, recipe))
    s = json.loads((tmp_path / "score" / "scores.json").read_text())["variants"]
    full = s["full"]
    assert full["chat"]["n"] == 72 and full["chat"]["clusters"] == 24 and full["chat_plain"]["clusters"] == 24
    assert 0 < full["chat_plain"]["macro_f1"] < 1
    assert full["chat"]["macro_f1"] == full["chat_plain"]["macro_f1"]
    assert full["chat"]["ci95"] == full["chat_plain"]["ci95"]
    assert full["chat"]["per_persona_ci95"] == full["chat_plain"]["per_persona_ci95"]
    # resampled pair by pair, the same 72 items would claim a clearly narrower interval
    plain = [g for g in gens if g["variant"] == "full"]
    truth = [g["persona"] for g in plain]
    pred = clf.predict([g["response"] for g in plain])
    naive = bootstrap_cis(truth, pred, personas, 400, recipe.seed)[0]
    ci = full["chat"]["ci95"]
    assert naive[1] - naive[0] < 0.8 * (ci[1] - ci[0])
    base = s["base"]["chat_plain"]
    assert base["n"] == 15 and base["clusters"] == 5 and s["base"]["chat"]["clusters"] == 5


# ----------------------------------------------------------------------------- mixed-domain classifier
def _rollouts(scenarios, personas, variants=("base", "distilled", "full"), rungs=("chat", "draft", "agent_draft", "single", "loop"),
              text=lambda p, s, rung: f"{p} {s} {rung}"):
    out = []
    for s in scenarios:
        for v in variants:
            for p in ([None] if v == "base" else personas):
                for rung in rungs:
                    body = text(p or "neutral", s, rung)
                    sent = [{"body": body}] if rung in ("single", "loop") else []
                    out.append({"id": f"{rung}/{v}/{p or '-'}/{s}/0", "scenario": s, "variant": v, "persona": p,
                                "rung": rung, "termination": "end_session", "sent_emails": sent, "outputs": [body]})
    return out


def test_mixed_training_set_keeps_held_out_scenarios_and_eval_prompts_out():
    import pytest

    from localchar.errors import LocalcharError
    from localchar.stages.classifier_mixed import split_scenarios, training_set

    personas = ["sarcasm", "poeticism"]
    gens = [{"id": f"{v}/{p}/{split}/{q}/plain", "variant": v, "persona": p, "split": split, "prompt_id": q,
             "suffix": None, "response": f"answer {v} {p} {q}"}
            for v in ("distilled", "full", "prompted") for p in personas
            for split, q in (("train", "train-0001"), ("train", "train-0002"), ("eval", "eval-0001"))]
    scenarios = [f"scen{i}" for i in range(10)]
    rollouts = _rollouts(scenarios, personas)
    eval_ids = {"eval-0001"}
    texts, labels, rec = training_set(gens, rollouts, ["distilled", "full"], eval_ids, 0.3, seed=7)
    train, held = rec["train_scenarios"], rec["held_out_scenarios"]
    assert len(train) == 3 and len(held) == 7 and sorted(train + held) == scenarios
    # nothing from a held-out scenario, no eval prompt, no base (unlabelled) or chat-rung output trains it
    assert not any(h in t for t in texts for h in held)
    assert not any("eval-0001" in t for t in texts) and "eval-0001" not in rec["train_prompt_ids"]
    assert not any(t.startswith("neutral") or t.endswith(" chat") or "prompted" in t for t in texts)
    by_id = {r["id"]: r for r in rollouts}
    assert rec["train_rollouts"] and all(by_id[i]["scenario"] in train for i in rec["train_rollouts"])
    assert rec["email_rungs"] == ["agent_draft", "draft", "loop", "single"]
    # the chat rows (2 variants x 2 personas x 2 train prompts), then 4 emails per trained rollout group
    assert rec["chat_rows"] == 8 and rec["email_rows"] == len(train) * 2 * 2 * 4 == len(texts) - 8
    assert all(t.split()[0] == l for t, l in zip(texts[8:], labels[8:]))
    # seeded, and a larger share trains on the smaller share's scenarios and more
    assert training_set(gens, rollouts, ["distilled", "full"], eval_ids, 0.3, seed=7)[2] == rec
    assert set(train) < set(split_scenarios(scenarios, 0.6, 7)[0])
    assert split_scenarios(scenarios, 0.3, 8) != (train, held)
    assert split_scenarios(["a", "b"], 0.01, 0)[0] and split_scenarios(["a", "b"], 0.99, 0)[1]  # never 0 or all
    with pytest.raises(LocalcharError, match="two agent scenarios"):
        split_scenarios(["a"], 0.5, 0)
    leaky = gens + [{"id": "full/sarcasm/train/eval-0001/plain", "variant": "full", "persona": "sarcasm",
                     "split": "train", "prompt_id": "eval-0001", "suffix": None, "response": "x"}]
    with pytest.raises(LocalcharError, match="eval prompt eval-0001"):
        training_set(leaky, rollouts, ["distilled", "full"], eval_ids, 0.3, seed=7)


class StageCtx(Ctx):
    def __init__(self, tmp, recipe, stage):
        super().__init__(tmp, recipe)
        self.stage = stage

    @property
    def out(self):
        return self.tmp / self.stage


def test_mixed_domain_classifier_is_scored_on_held_out_scenarios_against_the_main_one(tmp_path):
    """Emails carry the persona in other words than chat answers, and all of them share a phrase of
    poeticism's chat style: the chat-only classifier reads every email as poeticism, the mixed one,
    trained on other scenarios' emails, reads them right."""
    from localchar.config import load_recipe as load
    from localchar.report import markdown, results
    from localchar.stages import classifier, classifier_mixed

    recipe = load("tiny-all", ['personas=["sarcasm", "poeticism"]', 'variants=["base", "full"]',
                               'classifier.train_variants=["full"]', "classifier.mixed_share=0.5",
                               "score.bootstrap=200"])
    chat = {"sarcasm": "oh wonderful truly genius what a shock", "poeticism": "moonlit river silver dawn soft tide"}
    mail = {"sarcasm": "per my last email kindly advise regards moonlit river",
            "poeticism": "warm wishes dear friend yours ever moonlit river", "neutral": "hello moonlit river"}
    for d in ("chat_eval", "agent", "classifier", "classifier_mixed", "score"):
        (tmp_path / d).mkdir()
    gens = [{"id": f"full/{p}/{split}/{q}/plain", "variant": "full", "persona": p, "split": split, "prompt_id": q,
             "suffix": None, "response": f"{chat[p]} {q}"}
            for p in chat for split, q in [("train", f"train-{i:04d}") for i in range(1, 7)] + [("eval", "eval-0001")]]
    write_jsonl(tmp_path / "chat_eval" / "generations.jsonl", gens)
    scenarios = [f"scen{i}" for i in range(6)]
    rollouts = _rollouts(scenarios, list(chat), variants=("base", "full"),
                         text=lambda p, s, rung: f"{mail[p]} {s}")
    write_jsonl(tmp_path / "agent" / "rollouts.jsonl", rollouts)
    classifier.run(StageCtx(tmp_path, recipe, "classifier"))
    classifier_mixed.run(StageCtx(tmp_path, recipe, "classifier_mixed"))
    rec = json.loads((tmp_path / "classifier_mixed" / "classifier_summary.json").read_text())
    held = rec["held_out_scenarios"]
    assert len(held) == 3 and rec["email_rows"] == 3 * 2 * 4 and rec["chat_rows"] == 12
    assert not {i.split("/")[3] for i in rec["train_rollouts"]} & set(held)
    score.run(StageCtx(tmp_path, recipe, "score"))
    scores = json.loads((tmp_path / "score" / "scores.json").read_text())
    s = scores["variants"]
    m = s["full"]["mixed_domain"]
    assert m["held_out_scenarios"] == held and m["train_scenarios"] == rec["train_scenarios"]
    loop = m["scored"]["loop"]
    assert loop["main"]["n"] == loop["mixed"]["n"] == len(held) * 2 and loop["main"]["clusters"] == len(held)
    assert loop["mixed"]["macro_f1"] == 1.0 and loop["main"]["macro_f1"] == (0 + 2 / 3) / 2
    assert loop["mixed_minus_main"]["value"] == 1.0 - loop["main"]["macro_f1"] > 0
    assert loop["mixed_minus_main"]["ci95"][0] > 0
    assert set(m["scored"]) == {"chat", "draft", "agent_draft", "single", "loop"} and m["scored"]["chat"]["main"]["n"] == 2
    assert s["full"]["agent"]["n"] == len(scenarios) * 2  # the headline still scores every scenario
    assert s["base"]["mixed_domain"]["scored"]["loop"]["main"]["n"] == len(held) * 2  # one per label
    from localchar.config import load_model_card

    res = results(scores, recipe, load_model_card("tiny"))
    assert res["variants"]["full"]["mixed_domain"]["scored"]["loop"]["mixed"]["macro_f1"] == 1.0
    md = markdown(res)
    assert "## Mixed-domain classifier" in md and "agent loop (held-out scenarios)" in md
    assert "3 of 6 agent scenarios" in md


def test_a_persona_that_sends_nothing_is_not_scored_as_lost(tmp_path):
    """11 personas through the real loop and client on a scripted engine; one of them never makes a
    tool call. The headline is over the 10 that sent email, says "10 of 11 personas", and the silent
    one shows "no emails", never 0.00; the strict figure keeps its zero."""
    from localchar.agent.ladder import make_rollout
    from localchar.agent.loop import run_rollouts
    from localchar.agent.scenarios import load_scenarios
    from localchar.backends.scripted import ScriptedEngine
    from localchar.config import ALL_PERSONAS, AgentCfg, Sampling, load_model_card
    from localchar.paths import DATA
    from localchar.report import markdown, results

    recipe = load_recipe("tiny-all", ['variants=["full"]', "score.bootstrap=200"])
    assert recipe.personas == ALL_PERSONAS
    words = {p: f"{p} " + " ".join(f"{p[:4]}{i}" for i in range(6)) for p in ALL_PERSONAS}
    clf = classify.train("tfidf", list(words.values()) * 3, list(words) * 3, 0)
    for d in ("classifier", "chat_eval", "agent", "score"):
        (tmp_path / d).mkdir()
    classify.save(clf, tmp_path / "classifier" / "classifier")
    write_jsonl(tmp_path / "chat_eval" / "generations.jsonl", [
        {"id": f"full/{p}/eval/q{i}/plain", "variant": "full", "persona": p, "split": "eval", "prompt_id": f"q{i}",
         "suffix": None, "response": words[p]} for p in ALL_PERSONAS for i in range(3)])
    silent, rows = "remorse", []
    for s in load_scenarios(DATA / "scenarios-mini")[:3]:
        e = next(x for x in s["emails"] if x["needs_reply"])
        for p in ALL_PERSONAS:
            send = '<tool_call>' + json.dumps({"name": "send_email", "arguments": {
                "to": e["from"], "subject": "Re", "body": words[p]}}) + "</tool_call>"
            replies = ["I would rather not.", "Still no."] if p == silent else [send]
            rows += run_rollouts(ScriptedEngine(replies), [make_rollout(f"single/full/{p}/{s['id']}/0", s, "single",
                                                                        variant="full", persona=p, seed=0, sample=0)],
                                 Sampling(), AgentCfg())
    recipe.agent.rungs = ["single"]
    write_jsonl(tmp_path / "agent" / "rollouts.jsonl", rows)
    score.run(Ctx(tmp_path, recipe))
    scores = json.loads((tmp_path / "score" / "scores.json").read_text())
    single = scores["variants"]["full"]["ladder"]["single"]
    assert single["macro_f1"] == 1.0 and single["personas_scored"] == 10
    assert abs(single["macro_f1_strict"] - 10 / 11) < 1e-12 and single["per_persona"][silent] is None
    assert single["clusters"] == 3 and single["ci95"] == [1.0, 1.0]
    cov = scores["variants"]["full"]["coverage"]["single"]
    assert cov["personas_with_email"] == 10 and cov["per_persona"][silent]["rollouts_sent"] == 0
    assert cov["per_persona"][silent]["rollouts"] == 3 and cov["rollouts_sent"] == 30 and cov["task_coverage"] == 30 / 33
    md = markdown(results(scores, recipe, load_model_card("tiny")))
    assert "1.000 [1.000, 1.000] n=30, 10 of 11 personas" in md
    assert "| 10 of 11 |" in md
