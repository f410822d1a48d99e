"""Classifiers (tfidf, embed, tfidf+embed, modernbert on a tiny local config), their pickle-free
storage with hash checks, and the statistics every reported number rests on."""

import json
import subprocess
import sys

import numpy as np
import pytest

from localchar import classify
from localchar.classify.metrics import bootstrap_ci, bootstrap_cis, bootstrap_gap_ci, f1_scores, mean_sem
from localchar.errors import LocalcharError
from localchar.store import read_jsonl

from conftest import ROOT

STYLE = ROOT / "tests" / "data" / "style_texts.jsonl"


def _split(name):
    rows = [r for r in read_jsonl(STYLE) if r["split"] == name]
    return [r["text"] for r in rows], [r["label"] for r in rows]


@pytest.fixture(scope="module")
def style_tfidf():
    return classify.train("tfidf", *_split("train"), seed=0)


def test_default_classifier_recovers_styles_well_above_chance(style_tfidf):
    assert classify.DEFAULT_KIND == "tfidf"
    labels = sorted(set(_split("train")[1]))
    for split, floor in (("test_chat", 0.6), ("test_email", 0.5)):  # chance is 1/11
        texts, truth = _split(split)
        assert f1_scores(truth, style_tfidf.predict(texts), labels)["macro_f1"] > floor, split


@pytest.mark.parametrize("kind", ["tfidf", "tfidf+embed"])
def test_saved_classifier_reloads_identically_and_checks_hashes(kind, tmp_path):
    texts, labels = _split("train")
    clf = classify.train(kind, texts, labels, seed=0)
    classify.save(clf, tmp_path / "c")
    assert not list((tmp_path / "c").rglob("*.pkl")) and not list((tmp_path / "c").rglob("*.pickle"))
    probe = _split("test_email")[0]
    assert classify.load(tmp_path / "c").predict(probe) == clf.predict(probe)
    target = tmp_path / "c" / "head.safetensors"
    target.write_bytes(target.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(LocalcharError, match="hash mismatch"):
        classify.load(tmp_path / "c")


def test_modernbert_trains_and_predicts_on_a_tiny_local_config(tmp_path):
    from localchar.classify.modernbert import build_tiny_modernbert

    texts, labels = _split("train")
    base = build_tiny_modernbert(tmp_path / "base", texts)
    clf = classify.train("modernbert", texts, labels, seed=0, base=str(base), epochs=4, batch_size=8, grad_accum=1,
                         max_length=128)
    probe = _split("test_chat")[0][:8]
    pred = clf.predict(probe)
    assert len(pred) == 8 and set(pred) <= set(labels)
    classify.save(clf, tmp_path / "m")
    assert classify.load(tmp_path / "m").predict(probe) == pred


def test_bootstrap_intervals():
    labels = ["a", "b", "c"]
    truth = ["a", "b", "c"] * 20
    assert bootstrap_ci(truth, truth, labels, 200, 0) == (1.0, 1.0)
    const = ["a"] * len(truth)
    score = f1_scores(truth, const, labels)["macro_f1"]
    lo, hi = bootstrap_ci(truth, const, labels, 300, 0)
    assert lo <= score <= hi
    assert bootstrap_ci(truth, const, labels, 300, 7) == bootstrap_ci(truth, const, labels, 300, 7)
    gap = bootstrap_gap_ci((truth, truth), (truth, const), labels, 300, 0)
    assert gap[0] > 0 and gap[0] <= 1 - score <= gap[1]
    assert bootstrap_cis(truth, truth, labels, 50, 0) == ((1.0, 1.0), {l: (1.0, 1.0) for l in labels})
    assert bootstrap_cis(truth, const, labels, 300, 7)[0] == bootstrap_ci(truth, const, labels, 300, 7)
    m, sem = mean_sem([0.5, 0.7, 0.6])
    assert abs(m - 0.6) < 1e-9 and abs(sem - np.std([0.5, 0.7, 0.6], ddof=1) / np.sqrt(3)) < 1e-9


def _item_bootstrap(truth, pred, labels, n, seed):
    """The plain item bootstrap written out directly: the reference the ungrouped path must equal."""
    rng = np.random.default_rng(seed)
    yt, yp = np.array(truth), np.array(pred)
    macro = []
    for _ in range(n):
        idx = rng.integers(0, len(yt), len(yt))
        a, b = yt[idx], yp[idx]
        f = [2 * np.sum((a == l) & (b == l)) / max(1, np.sum(a == l) + np.sum(b == l)) for l in labels]
        macro.append(np.mean(f))
    lo, hi = np.quantile(macro, [0.025, 0.975])
    return float(lo), float(hi)


def test_cluster_bootstrap():
    labels = ["a", "b", "c"]
    rng = np.random.default_rng(3)
    truth = list(rng.choice(labels, 60))
    pred = [t if rng.random() < 0.6 else str(rng.choice(labels)) for t in truth]
    # no groups: the plain item bootstrap, unchanged for the same seed
    ref = _item_bootstrap(truth, pred, labels, 300, 5)
    assert np.allclose(bootstrap_ci(truth, pred, labels, 300, 5), ref, rtol=0, atol=1e-12)
    # one cluster per item is the item bootstrap, for every entry point
    single = [f"item{i}" for i in range(len(truth))]
    assert bootstrap_ci(truth, pred, labels, 300, 5, groups=single) == bootstrap_ci(truth, pred, labels, 300, 5)
    assert bootstrap_cis(truth, pred, labels, 300, 5, groups=single) == bootstrap_cis(truth, pred, labels, 300, 5)
    assert (bootstrap_gap_ci((truth, pred), (pred, truth), labels, 300, 5, groups=(single, None))
            == bootstrap_gap_ci((truth, pred), (pred, truth), labels, 300, 5))
    # a perfect classifier stays [1, 1] under clustering
    assert bootstrap_ci(truth, truth, labels, 200, 0, groups=[i // 4 for i in range(60)]) == (1.0, 1.0)
    # every item scored k times (e.g. one text against k labels' worth of rows): the ungrouped CI of the
    # copies is too narrow, the CI with the copies clustered is exactly the original's
    k = 4
    dup_t, dup_p, dup_g = truth * k, pred * k, list(range(len(truth))) * k
    orig = bootstrap_ci(truth, pred, labels, 500, 11)
    naive = bootstrap_ci(dup_t, dup_p, labels, 500, 11)
    grouped = bootstrap_ci(dup_t, dup_p, labels, 500, 11, groups=dup_g)
    assert grouped == orig
    assert naive[1] - naive[0] < 0.7 * (orig[1] - orig[0])
    assert (bootstrap_gap_ci((dup_t, dup_p), (truth, pred), labels, 300, 2, groups=(dup_g, None))
            == bootstrap_gap_ci((truth, pred), (truth, pred), labels, 300, 2))
    # seeded: same seed, same interval; another seed, another draw
    g = [i // 3 for i in range(60)]
    assert bootstrap_cis(truth, pred, labels, 300, 9, groups=g) == bootstrap_cis(truth, pred, labels, 300, 9, groups=g)
    assert bootstrap_ci(truth, pred, labels, 300, 9, groups=g) != bootstrap_ci(truth, pred, labels, 300, 10, groups=g)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci(truth, pred, labels, 10, 0, groups=g[:-1])


def test_classify_cli(tmp_path):
    def cli(*a):
        return subprocess.run([sys.executable, "-m", "localchar.cli", "classify", *a], capture_output=True, text=True,
                              timeout=300)

    out = cli("train", "--data", str(STYLE), "--split", "train", "--out", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    out = cli("eval", "--model", str(tmp_path / "c"), "--data", str(STYLE), "--split", "test_chat", "--bootstrap", "100")
    res = json.loads(out.stdout)
    assert res["n"] == 44 and res["macro_f1"] > 0.6 and set(res) >= {"macro_f1", "accuracy", "per_label", "n"}
    out = cli("predict", "--model", str(tmp_path / "c"), "--data", str(STYLE))
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 176 and all("predicted" in r for r in rows)
    (tmp_path / "bad.jsonl").write_text('{"text": "no label"}\n')
    out = cli("train", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "label" in out.stderr and "Traceback" not in out.stderr


def test_scenario_cluster_bootstrap_covers_a_planted_per_scenario_effect():
    """Each scenario makes every persona's emails easier or harder to classify at once (accuracy
    q ~ Beta(2, 2) per scenario). Over 200 seeded datasets of 30 scenarios x 6 personas, the CI that
    resamples scenario ids covers the population macro-F1 at least 90% of the time; resampling
    single rollouts misses the shared effect and covers far less often."""
    from localchar.classify.metrics import Resampler

    labels = [f"p{i}" for i in range(6)]

    def dataset(rng, scenarios, emails=2):
        truth, pred, scen, roll = [], [], [], []
        for k in range(scenarios):
            q = rng.beta(2, 2)
            for p in range(len(labels)):
                for _ in range(emails):
                    hit = rng.random() < q
                    truth.append(labels[p])
                    pred.append(labels[p if hit else (p + 1 + rng.integers(len(labels) - 1)) % len(labels)])
                    scen.append(k)
                    roll.append((k, p))
        return truth, pred, scen, roll

    t, p, s, _ = dataset(np.random.default_rng(0), 20000)
    true = Resampler(s, 0, 0).score(t, p, s, labels).macro
    hits = {"scenario": 0, "rollout": 0}
    for i in range(200):
        t, p, s, r = dataset(np.random.default_rng(1000 + i), 30)
        for name, groups in (("scenario", s), ("rollout", r)):
            lo, hi = np.quantile(Resampler(groups, 400, i).score(t, p, groups, labels).boot_macro(), [0.025, 0.975])
            hits[name] += lo <= true <= hi
    assert hits["scenario"] >= 180, hits
    assert hits["rollout"] < 170, hits


def test_resampler_scores_are_paired_and_keep_labels_with_support():
    from localchar.classify.metrics import Resampler, percentile_ci

    labels = ["a", "b", "c"]
    truth = ["a", "b", "c"] * 10
    groups = [i // 3 for i in range(30)]
    rs = Resampler(groups, 300, 1)
    same = rs.score(truth, truth, groups, labels)
    assert same.macro == 1.0 and percentile_ci(same.boot_macro()) == (1.0, 1.0)
    # a label with no items is not in the macro, and the strict figure counts it as 0
    two = rs.score(truth[:20], truth[:20], groups[:20], labels + ["d"])
    assert two.macro == 1.0 and two.strict == 0.75 and list(two.scored) == [True, True, True, False]
    # two scores on one resampler: the difference of identical predictions is exactly 0 on every resample
    noisy = ["a" if i % 4 == 0 else t for i, t in enumerate(truth)]
    x, y = rs.score(truth, noisy, groups, labels), rs.score(truth, noisy, groups, labels)
    assert np.array_equal(x.boot_macro(), y.boot_macro()) and 0 < x.macro < 1
    assert Resampler([], 10, 0).score([], [], [], labels).macro is None
