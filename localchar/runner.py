"""Plan a recipe into stage instances with content keys; run what is not done; resume the rest.

A stage instance lives in runs/<recipe>/stages/<stage>/<instance>-<key12>/. Its key is the sha256
of everything that determines its output (stage version, params, model card, upstream keys, input
file hashes, seed, persona) — not the git commit. stage.json is written last with status "done";
an instance directory without it is resumed (per-row stages keep flushed JSONL rows).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import config as C
from .errors import LocalcharError
from .paths import ROOT
from .progress import console
from .store import atomic_write_text, read_json, sha256_json, sha256_tree, write_json

# (stage, fans out over personas, upstream stages). Order is execution order. A stage module with
# an `enabled(recipe)` that says False is not planned, and drops out of its dependents' upstream
# (so their keys are what they would be without it): classifier_mixed, the classifier.mixed_share
# ablation.
GRAPH = [
    ("model", False, []),
    ("teacher", True, ["model"]),
    ("student", False, ["model"]),
    ("dpo_data", True, ["model", "teacher", "student"]),
    ("dpo", True, ["model", "dpo_data"]),
    ("introspection", True, ["model", "dpo"]),
    ("sft", True, ["model", "dpo", "introspection"]),
    ("merge", True, ["dpo", "sft"]),
    ("chat_eval", False, ["model", "dpo", "merge"]),
    ("classifier", False, ["chat_eval"]),
    ("agent", False, ["model", "dpo", "merge"]),
    ("classifier_mixed", False, ["chat_eval", "agent"]),
    ("score", False, ["classifier", "chat_eval", "agent", "classifier_mixed"]),
    ("report", False, ["score", "classifier"]),
]
STAGE_NAMES = [g[0] for g in GRAPH]


@dataclass
class Instance:
    stage: str
    persona: str | None
    key: str
    dir: Path
    upstream: dict          # stage -> Instance, or stage -> {persona: Instance}
    params: dict
    module: object = field(repr=False, default=None)

    @property
    def name(self) -> str:
        return f"{self.stage}[{self.persona}]" if self.persona else self.stage

    @property
    def done(self) -> bool:
        f = self.dir / "stage.json"
        return f.exists() and read_json(f).get("status") == "done"


@dataclass
class Ctx:
    """What a stage's run() gets: its own output dir, the recipe, and upstream outputs."""
    recipe: C.Recipe
    card: C.ModelCard
    persona: str | None
    out: Path
    key: str
    up: dict
    run_dir: Path

    def updir(self, stage: str, persona: str | None = None) -> Path:
        u = self.up[stage]
        return (u[persona or self.persona] if isinstance(u, dict) else u).dir

    def model_path(self) -> str:
        """A model built in the run (stored relative to its stage dir), else a path or hub id."""
        from .hub import resolve_model

        d = self.updir("model")
        info = read_json(d / "model.json")
        path = info["path"]
        if (d / path).exists():
            return str(d / path)
        if Path(path).exists():
            return path
        # a recorded snapshot that is gone (cache cleared, run moved): fetch from the source again
        return str(resolve_model(info.get("source", path), info.get("revision")))


def _input_name(path) -> str:
    """Inputs inside the checkout are named relative to it, so moving the checkout keeps keys."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT.resolve()))
    except ValueError:
        return str(p)


def stage_module(name: str):
    return importlib.import_module(f"localchar.stages.{name}")


def plan(recipe: C.Recipe, run_dir: Path) -> list[Instance]:
    card = C.load_model_card(recipe.model)
    card_id = C.to_dict(card)
    personas = recipe.personas
    made: dict[str, object] = {}
    off: set[str] = set()
    out: list[Instance] = []
    for stage, fan, deps in GRAPH:
        mod = stage_module(stage)
        if not getattr(mod, "enabled", lambda r: True)(recipe):
            off.add(stage)
            continue
        deps = [d for d in deps if d not in off]
        for persona in (personas if fan else [None]):
            up = {d: (made[d][persona] if isinstance(made[d], dict) and fan else made[d]) for d in deps}
            up_keys = {d: ({p: i.key for p, i in u.items()} if isinstance(u, dict) else u.key)
                       for d, u in up.items()}
            params = mod.params(recipe, persona)
            inputs = {_input_name(p): sha256_tree(p) for p in mod.inputs(recipe, persona)}
            key = sha256_json({"stage": stage, "version": mod.VERSION, "params": params, "card": card_id,
                               "upstream": up_keys, "inputs": inputs, "seed": recipe.seed, "persona": persona})
            inst = Instance(stage, persona, key, run_dir / "stages" / stage / f"{persona or 'all'}-{key[:12]}",
                            up, params, mod)
            out.append(inst)
            if fan:
                made.setdefault(stage, {})[persona] = inst
            else:
                made[stage] = inst
    return out


def _print_plan(recipe: C.Recipe, card: C.ModelCard, instances: list[Instance], force: tuple[str, ...],
                machine: str = "m2max-32") -> None:
    """The dry-run table (stdout: the plan is the command's output): every stage instance, whether
    it would run, what it does, its tokens and the estimated hours on the stated machine."""
    from rich.console import Console
    from rich.table import Table

    from .estimate import MACHINES, Work

    mac = MACHINES[machine]
    sizes = {"student": card.params_b,
             "teacher": C.load_model_card(recipe.teacher.model).params_b if recipe.teacher.model else 0.0}
    t = Table(title=f"plan for {recipe.name} ({recipe.source})",
              caption=f"hours: an estimate for {mac.name}, from published throughput (docs/real-size.md); "
                      "tokens: from the recipe and its data, answers at 60% of max_tokens")
    for col in ("stage", "instance", "key", "action", "work", "tokens", "hours"):
        t.add_column(col, justify="right" if col == "hours" else "left")
    from .backends import resolve
    from .estimate import measured

    here = measured(card, resolve(recipe.engine))
    total, per_stage, here_total = 0.0, {}, 0.0
    for inst in instances:
        action = "RUN (forced)" if inst.stage in force else ("SKIP" if inst.done else
                                                             ("RESUME" if inst.dir.exists() else "RUN"))
        est = getattr(inst.module, "estimate", lambda r, p: Work())(recipe, inst.persona)
        size = sizes.get(est.on, 0.0)
        hours = est.hours(size, mac)
        if action != "SKIP":
            total += hours
            per_stage[inst.stage] = per_stage.get(inst.stage, 0.0) + hours
            here_total += here.hours(est, size) if here and est.on == "student" else hours
        t.add_row(inst.stage, inst.persona or "all", inst.key[:12], action, est.what, est.tokens(),
                  f"{hours:.2f}" if size else "-")
    t.add_row("total", "", "", "", "", "", f"{total:.1f}" if card.params_b else "-", style="bold")
    Console(width=150).print(t)
    if card.params_b:
        Console(width=150).print("hours per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in per_stage.items() if v))
    if here:
        Console(width=150).print(f"with the rates of {here.name}: {here_total * 60:.1f} min "
                                 "(student work at the measured rates, the rest as above)")


def run(recipe: C.Recipe, runs_dir: Path, force: tuple[str, ...] = (), dry_run: bool = False,
        results_name: str = "results", machine: str = "m2max-32") -> Path:
    """Run (or plan) every stage instance of `recipe` under runs_dir/<name>, skipping finished ones,
    and copy the report to runs_dir/<name>/<results_name> (ablation grid points use their own)."""
    run_dir = Path(runs_dir) / recipe.name
    for f in force:
        if f not in STAGE_NAMES:
            raise LocalcharError(f"--force {f}: unknown stage (stages: {', '.join(STAGE_NAMES)})")
    instances = plan(recipe, run_dir)
    card = C.load_model_card(recipe.model)
    # score.train_seeds: the same recipe under more training seeds; what does not depend on the
    # training seed (model, teacher, student, DPO pairs) is shared, the rest reruns per seed
    replicates = [(r, plan(r, run_dir)) for r in (dataclasses.replace(recipe, train_seed=k)
                                                  for k in range(1, recipe.score.train_seeds))]
    if dry_run:
        _print_plan(recipe, card, instances + [i for _, ii in replicates for i in ii
                                               if i.key not in {j.key for j in instances}], force, machine)
        return run_dir
    try:
        import tempfile

        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=run_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LocalcharError(f"{run_dir}: cannot write the run directory ({e.strerror}); "
                             "choose another with --runs-dir") from None
    with _run_lock(run_dir):
        _run(recipe, card, instances, run_dir, force, results_name)
        # written once the run has produced its results, so that the run directory's resolved recipe
        # is always the one behind results/ (a failed or interrupted invocation leaves it alone)
        if results_name == "results":
            atomic_write_text(run_dir / "recipe.resolved.toml", resolved_text(recipe))
        if replicates:
            from .report import extend_results, seed_spread

            per_seed = [read_json(run_dir / results_name / "results.json")]
            for r, ii in replicates:
                console.print(f"[bold]training seed {r.train_seed}[/] of {recipe.score.train_seeds - 1} more")
                name = f"{results_name}-seeds/{r.train_seed}"
                shared = {i.key for i in instances}  # forced once, in the main run
                _run(r, card, [i for i in ii if not (i.key in shared and i.stage in force)] if force else ii,
                     run_dir, force, name)
                per_seed.append({**read_json(run_dir / name / "results.json"), "train_seed": r.train_seed})
            extend_results(run_dir / results_name, train_seeds=seed_spread(per_seed))
        return run_dir


@contextmanager
def _run_lock(run_dir: Path):
    """One localchar process per run directory. The OS drops the lock when the process dies, so a
    killed run never leaves a stale lock behind."""
    import fcntl

    f = (run_dir / ".lock").open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise LocalcharError(f"{run_dir} is in use by another localchar run ({holder}); wait for it to finish "
                             "or use another --runs-dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    try:
        yield
    finally:
        f.close()


def timings(instances) -> list[dict]:
    """Per stage: instances, seconds and tokens, from each instance's stage.json (instances done in an
    earlier invocation count with the time they took then)."""
    out: dict[str, dict] = {}
    for inst in instances:
        info = read_json(inst.dir / "stage.json") if inst.done else {}
        row = out.setdefault(inst.stage, {"stage": inst.stage, "instances": 0, "seconds": 0.0, "prefill": 0,
                                          "generated": 0, "trained": 0})
        row["instances"] += 1
        row["seconds"] = round(row["seconds"] + float(info.get("seconds") or 0), 2)
        for k, v in (info.get("tokens") or {}).items():
            row[k] = row.get(k, 0) + int(v)
    return list(out.values())


def resolved_text(recipe: C.Recipe) -> str:
    """The recipe as it ran (every default filled in), with the file it came from on the first line."""
    return f"# resolved from {recipe.source}\n" + C.to_toml(C.to_dict(recipe)) + "\n"


def _run(recipe, card, instances, run_dir: Path, force, results_name: str) -> Path:
    ran = skipped = 0
    t_all = time.perf_counter()
    for inst in instances:
        if inst.stage in force and inst.dir.exists():
            shutil.rmtree(inst.dir)
        if inst.done:
            skipped += 1
            continue
        console.print(f"[bold]RUN[/] {inst.name}  [dim]{inst.dir.relative_to(run_dir)}[/]")
        inst.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        ctx = Ctx(recipe, card, inst.persona, inst.dir, inst.key, inst.upstream, run_dir)
        tokens = inst.module.run(ctx)
        write_json(inst.dir / "stage.json", {
            "stage": inst.stage, "persona": inst.persona, "key": inst.key, "status": "done",
            "version": inst.module.VERSION, "params": inst.params,
            "upstream": {d: ({p: i.key for p, i in u.items()} if isinstance(u, dict) else u.key)
                         for d, u in inst.upstream.items()},
            "seconds": round(time.perf_counter() - t0, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "tokens": tokens if isinstance(tokens, dict) else None})
        ran += 1
    report = next(i for i in instances if i.stage == "report")
    results = run_dir / results_name
    from .backends import resolve
    from .estimate import record_rates

    spent = timings(instances)
    from .results import publish_results

    replaced = publish_results(report.dir, results, recipe, run_dir, instances, timings=spent)
    if ran:
        record_rates(card, resolve(recipe.engine), spent, run_dir)
    if ran == 0:
        console.print(f"all {skipped} stage instances already done: nothing to run (skipped {skipped})")
    else:
        console.print(f"ran {ran}, skipped {skipped} stage instances in {time.perf_counter() - t_all:.0f}s")
    if replaced:
        console.print(f"results of another run (engine {replaced['engine']}, quant {replaced['chat_eval_quant']}, "
                      f"differs in {', '.join(replaced['differs'])}) moved to {run_dir / replaced['moved_to']}")
    console.print(f"results: {results}")
    return run_dir

