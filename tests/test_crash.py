"""Crash safety through the CLI on a two-persona tiny-all: SIGKILL inside DPO training, chat
evaluation and the agent stage, then rerun; the final numbers equal an uninterrupted run's, no
killed stage is marked done, finished rows are kept, training resumes from its checkpoint. Also:
a second run on a busy run directory is refused, and Ctrl-C exits 130 with a line on how to resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# small batches, so that the per-row stages flush several times and a kill lands between flushes
OVERRIDES = ["-s", 'personas=["sarcasm", "poeticism"]', "-s", "chat_eval.sampling.batch_size=32",
             "-s", "agent.sampling.batch_size=8"]


def start(runs: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "localchar.cli", "recipe", "tiny-all", "--runs-dir", str(runs),
                             *OVERRIDES], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(runs: Path) -> None:
    p = start(runs)
    _, err = p.communicate(timeout=1200)
    assert p.returncode == 0, err[-3000:]


def wait_for(p: subprocess.Popen, condition, timeout=900) -> None:
    t0 = time.time()
    while not condition():
        assert p.poll() is None, "the run ended before the kill point: " + p.stderr.read()[-2000:]
        assert time.time() - t0 < timeout, "kill point never reached"
        time.sleep(0.2)


def kill(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    os.killpg(p.pid, sig)
    p.wait(timeout=60)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = tmp_path_factory.mktemp("ref")
    finish(runs)
    return runs / "tiny-all"


def test_killed_runs_resume_to_the_same_numbers(reference, tmp_path):
    runs = tmp_path / "runs"
    (runs / "tiny-all" / "stages").mkdir(parents=True)
    # the tiny model itself is shared (same key): the kills below hit the stages after it
    shutil.copytree(reference / "stages" / "model", runs / "tiny-all" / "stages" / "model")
    stages = runs / "tiny-all" / "stages"

    # 1. inside DPO, after its first training checkpoint
    p = start(runs)
    wait_for(p, lambda: any(stages.glob("dpo/*/checkpoint/state.json")))
    busy = subprocess.run([sys.executable, "-m", "localchar.cli", "recipe", "tiny-all", "--runs-dir", str(runs),
                           *OVERRIDES], capture_output=True, text=True, timeout=300)
    assert busy.returncode == 2 and "is in use by another localchar run" in busy.stderr
    kill(p)
    killed = next(d for d in stages.glob("dpo/*") if (d / "checkpoint" / "state.json").exists())
    assert not (killed / "stage.json").exists()
    step = json.loads((killed / "checkpoint" / "state.json").read_text())["step"]

    # 2. inside chat evaluation, after some rows were flushed
    p = start(runs)
    wait_for(p, lambda: any(len(lines(f)) >= 1 for f in stages.glob("chat_eval/*/generations.jsonl")))
    kill(p)
    metrics = [json.loads(x) for x in lines(killed / "metrics.jsonl")]
    assert (killed / "stage.json").exists() and metrics[step]["step"] == step + 1  # resumed after `step`
    gen_file = next(stages.glob("chat_eval/*/generations.jsonl"))
    assert not (gen_file.parent / "stage.json").exists()
    kept = lines(gen_file)

    # 3. inside the agent stage
    p = start(runs)
    wait_for(p, lambda: any(len(lines(f)) >= 1 for f in stages.glob("agent/*/rollouts.jsonl")))
    kill(p)
    assert lines(gen_file)[:len(kept)] == kept  # finished rows were kept, not redone
    rollouts = next(stages.glob("agent/*/rollouts.jsonl"))
    assert not (rollouts.parent / "stage.json").exists()

    # 4. Ctrl-C: exit 130 and one line saying how to resume
    p = start(runs)
    time.sleep(8)
    kill(p, signal.SIGINT)
    assert p.returncode == 130, p.stderr.read()[-2000:]
    assert "run the same command to resume" in p.stderr.read().strip().splitlines()[-1]

    finish(runs)
    ours = json.loads((runs / "tiny-all" / "results" / "results.json").read_text())
    ref = json.loads((reference / "results" / "results.json").read_text())
    assert ours["variants"] == ref["variants"]
    assert all((d / "stage.json").exists() for d in stages.glob("*/*"))
