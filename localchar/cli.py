"""localchar command line: parse -> load -> call. Heavy imports stay inside the commands."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import click

from . import __version__
from .blas import OPENBLAS, maybe_reexec
from .config import RUNGS
from .errors import LocalcharError

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="localchar")
@click.option("-v", "--verbose", is_flag=True, help="On an error, show the full traceback (for debugging).")
def cli(verbose):
    """localchar: persona (character) training of small chat models on a laptop, and whether the
    persona survives when the model acts as a tool-using email agent.

    Start with `localchar recipe tiny-all` (minutes on a CPU), then `localchar recipe gemma-all`
    on an Apple-silicon Mac."""


@cli.command()
@click.argument("name", required=False)
@click.option("--list", "list_", is_flag=True, help="List the shipped recipes and exit.")
@click.option("--dry-run", is_flag=True, help="Print the plan (RUN / SKIP / RESUME per stage instance) and exit.")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. -s dpo.iters=200 -s 'personas=[\"sarcasm\"]'.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Where run directories live (runs/<recipe>/...).")
@click.option("--force", multiple=True, metavar="STAGE", help="Re-run this stage (all its instances) even if done.")
@click.option("--machine", type=click.Choice(["m2max-32", "m4-16"]), default="m2max-32", show_default=True,
              help="With --dry-run: the Mac the hours are estimated for (docs/real-size.md).")
def recipe(name, list_, dry_run, overrides, runs_dir, force, machine):
    """Run recipe NAME (a shipped recipe name or a path to a .toml file).

    Finished stage instances are skipped; interrupted ones resume. Results land in
    RUNS_DIR/<recipe>/results/ (results.json, report.md, plot)."""
    from . import config

    if list_:
        for n in config.list_recipes():
            r = config.load_recipe(n)
            click.echo(f"{n:14s} {r.description}")
        return
    if not name:
        raise click.UsageError("give a recipe NAME, or --list")
    from .runner import run

    r = config.load_recipe(name, list(overrides))
    run(r, runs_dir, tuple(force), dry_run, machine=machine)


@cli.command()
@click.argument("name", required=False)
def personas(name):
    """List the personas, or show persona NAME (a name or a path to a constitution .toml)."""
    from .personas import load_persona, persona_names

    if not name:
        for n in persona_names():
            p = load_persona(n)
            click.echo(f"{n:14s} {p.display:12s} {len(p.traits):2d} traits  {p.summary}")
        return
    p = load_persona(name)
    click.echo(f"{p.name} ({p.display}) — {p.summary}\n{p.path}\n")
    for i, t in enumerate(p.traits, 1):
        click.echo(f"{i:2d}. {t['text']}")
        for q in t["prompts"]:
            click.echo(f"      - {q}")


@cli.group()
def models():
    """Model utilities."""


@models.command("build-tiny")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Seed for the random weights.")
@click.option("--shape", type=click.Choice(["tiny", "67m"]), default="tiny", show_default=True,
              help="Model size: the test model, or the 67M benchmark model (same family and tokenizer).")
def build_tiny_cmd(out_dir, seed, shape):
    """Build a random Gemma-3-shaped model (weights + tokenizer) into OUT_DIR."""
    from .tiny import build_tiny

    build_tiny(out_dir, seed=seed, shape=shape)
    click.echo(str(out_dir))


def engine_options(f):
    """--engine and what the llama_cpp and openai engines need; shared by `generate` and `agent run`."""
    opts = [
        click.option("--engine", type=click.Choice(["mlx", "llama_cpp", "openai", "auto"]), default="mlx",
                     show_default=True, help="mlx: mlx-lm; llama_cpp: llama-cpp-python on a GGUF (a model "
                     "directory is converted once, cached); openai: an OpenAI-compatible server; auto: MLX on "
                     "Apple silicon, llama.cpp elsewhere."),
        click.option("--quant", type=click.Choice(["none", "q8_0", "q4_k_m"]), default="none", show_default=True,
                     help="Generate on a quantized model (GGUF type for llama_cpp; MLX 8/4-bit for mlx)."),
        click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True,
                     help="openai: the server's /v1 URL."),
        click.option("--served-model", help="openai: the model name on the server (default: its first model)."),
        click.option("--api", type=click.Choice(["chat", "completions"]), default="chat", show_default=True,
                     help="openai: chat (server applies the template) or completions (rendered here from --model)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _sampling(**options):
    """Sampling from command-line options, each held to its recipe field's rule (config.py)."""
    from .config import Sampling, check_option

    return Sampling(**{k: check_option(Sampling, k, v, "--" + k.replace("_", "-")) for k, v in options.items()})


def _open(engine, model_path, quant, base_url, served_model, api, **kw):
    from .backends import open_engine

    if engine == "openai":
        return open_engine("openai", model_path if api == "completions" else None, base_url=base_url,
                           model=served_model, api=api, **kw)
    return open_engine(engine, model_path, quant=quant, **kw)


@cli.command()
@engine_options
@click.option("--model", "model_path", help="Model directory, .gguf file (llama_cpp) or Hugging Face id.")
@click.option("--adapter", type=click.Path(exists=True, path_type=Path),
              help="mlx-lm adapter directory (llama_cpp: also a GGUF LoRA file).")
@click.option("--strength", default=1.0, show_default=True, help="Persona strength: scales the adapter's delta.")
@click.option("--system", default="", help="System prompt (folded into the first user turn for Gemma).")
@click.option("--prompt", required=True, help="User message.")
@click.option("--max-tokens", default=256, show_default=True)
@click.option("--temperature", default=0.7, show_default=True)
@click.option("--top-p", default=0.95, show_default=True)
@click.option("--repetition-penalty", default=1.1, show_default=True, help="1.0 turns it off.")
@click.option("--seed", default=0, show_default=True)
def generate(engine, quant, base_url, served_model, api, model_path, adapter, strength, system, prompt, max_tokens,
             temperature, top_p, repetition_penalty, seed):
    """Print one completion (only the completion text) for PROMPT through the model's chat template."""
    from .config import Recipe, check_option

    sampling = _sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                         repetition_penalty=repetition_penalty)
    check_option(Recipe, "seed", seed, "--seed")
    check_option(Recipe, "persona_strength", strength, "--strength")
    if not model_path and engine != "openai":
        raise LocalcharError("--model: required for this engine")
    e = _open(engine, model_path, quant, base_url, served_model, api, adapter=adapter, strength=strength)
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = e.generate([msgs], sampling, seed)[0]
    click.echo(text)


@cli.group()
def agent():
    """The email-agent environment: parse model output, list scenarios, run one rollout."""


@agent.command("parse")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object {calls, errors} instead of JSON lines.")
def agent_parse(file, as_json):
    """Parse FILE (a model's output text; - for stdin) for tool calls, with the tolerant parser the
    agent loop uses. Prints one JSON line per call ({"name", "arguments", "form"}), or the parse
    errors; exit code 1 when no call was found."""
    import json

    from .agent.parser import parse_tool_calls

    from .inputs import decode, read_text

    limit = 8 << 20  # far beyond any reply; the parser's own bounds hold below it
    if str(file) == "-":
        data = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise LocalcharError(f"standard input: over {limit >> 20} MiB; a model reply is far shorter")
        text = decode(data, "standard input")
    else:
        text = read_text(file, limit=limit)
    calls, errors = parse_tool_calls(text)
    if as_json:
        click.echo(json.dumps({"calls": calls, "errors": errors}, ensure_ascii=False))
    else:
        for c in calls:
            click.echo(json.dumps(c, ensure_ascii=False))
        for e in errors:
            click.echo(f"parse error: {e}", err=True)
        if not calls and not errors:
            click.echo("no tool call found", err=True)
    sys.exit(0 if calls else 1)


@agent.command("scenarios")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="A scenario directory (default: the shipped recipes/data/scenarios).")
def agent_scenarios(directory):
    """List the inbox scenarios: id, domain, task, emails (needing a reply), content hash."""
    from .agent.scenarios import load_scenarios
    from .paths import DATA

    for s in load_scenarios(directory or DATA / "scenarios"):
        n = len(s["emails"])
        reply = sum(bool(e["needs_reply"]) for e in s["emails"])
        click.echo(f"{s['id']:34s} {s.get('domain', '-'):14s} {s.get('task', '-'):12s} "
                   f"{n} emails ({reply} to answer)  {s['sha256'][:12]}")


@agent.command("run")
@engine_options
@click.option("--model", "model_path", help="A model directory, .gguf file (llama_cpp) or Hugging Face id.")
@click.option("--adapter", type=click.Path(exists=True), help="A persona adapter directory.")
@click.option("--persona", help="Put this persona's constitution in the system prompt (the 'prompted' variant).")
@click.option("--scenario", "scenario_id", help="Scenario id (default: the first).")
@click.option("--scenarios", "directory", type=click.Path(path_type=Path), default=None,
              help="Scenario directory (default: the shipped recipes/data/scenarios).")
@click.option("--rung", type=click.Choice(RUNGS), default="loop", show_default=True,
              help="Which rung of the ablation ladder to run.")
@click.option("--max-turns", default=12, show_default=True)
@click.option("--max-tokens", default=512, show_default=True, help="New tokens per turn.")
@click.option("--temperature", default=0.7, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the stored JSONL row instead of the transcript.")
def agent_run(engine, quant, base_url, served_model, api, model_path, adapter, persona, scenario_id, directory, rung,
              max_turns, max_tokens, temperature, seed, as_json):
    """Run one rollout on one scenario and show the transcript, tool results and sent emails."""
    import json

    from .agent.ladder import make_rollout
    from .agent.loop import run_rollouts
    from .agent.scenarios import load_scenarios
    from .config import AgentCfg, Recipe, check_option
    from .paths import DATA
    from .store import derive_seed

    sampling = _sampling(temperature=temperature, max_tokens=max_tokens)
    check_option(Recipe, "seed", seed, "--seed")
    limits = AgentCfg(max_turns=check_option(AgentCfg, "max_turns", max_turns, "--max-turns"))

    scenarios = load_scenarios(directory or DATA / "scenarios")
    if scenario_id:
        by_id = {s["id"]: s for s in scenarios}
        if scenario_id not in by_id:
            raise LocalcharError(f"--scenario {scenario_id}: no such scenario (see `localchar agent scenarios`)")
        scenario = by_id[scenario_id]
    else:
        scenario = scenarios[0]
    system = ""
    if persona:
        from .personas import load_persona

        system = load_persona(persona).system_prompt("the assistant")
    if not model_path and engine != "openai":
        raise LocalcharError("--model: required for this engine")
    engine = _open(engine, model_path, quant, base_url, served_model, api)
    r = make_rollout(f"{rung}/{scenario['id']}", scenario, rung, system, adapter,
                     seed=derive_seed(seed, scenario["id"], rung), sample=0)
    row = run_rollouts(engine, [r], sampling, limits)[0]
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, sort_keys=True))
        return
    for m in row["messages"]:
        click.secho(f"── {m['role']}", bold=True, fg={"assistant": "green", "user": "cyan"}.get(m["role"], "yellow"))
        click.echo(m["content"])
    click.secho(f"── {row['termination']}: {row['counts']}", bold=True)
    for e in row["sent_emails"]:
        click.echo(f"sent to {', '.join(e['to'])}: {e['subject']}")


@cli.group()
def classify():
    """Persona classifiers on their own: train, evaluate and predict on JSONL files of
    {"text": ..., "label": ...} rows (an optional "split" field can be filtered with --split)."""


def _rows(path: Path, split: str | None, need_label: bool) -> list[dict]:
    from .store import read_jsonl

    schema = {"text": (str,), "split": (str, None)} | ({"label": (str,)} if need_label else {"label": (str, None)})
    rows = read_jsonl(path, schema)
    if split:
        rows = [r for r in rows if r.get("split") == split]
    if not rows:
        raise LocalcharError(f"{path}: no rows" + (f" with split '{split}'" if split else ""))
    return rows


@classify.command("train")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for the classifier.")
@click.option("--kind", type=click.Choice(["tfidf", "embed", "tfidf+embed", "modernbert"]), default="tfidf",
              show_default=True, help="tfidf is the measured default (docs/classifier.md).")
@click.option("--split", help="Use only rows whose 'split' field equals this.")
@click.option("--base", help="modernbert: the base model (default answerdotai/ModernBERT-base).")
@click.option("--epochs", type=float, help="modernbert: epochs (default 1).")
@click.option("--seed", default=0, show_default=True)
def classify_train(data, out, kind, split, base, epochs, seed):
    """Train a classifier on DATA and save it to OUT (safetensors + JSON, hashed manifest)."""
    from . import classify as C

    rows = _rows(data, split, True)
    opts = {k: v for k, v in {"base": base, "epochs": epochs}.items() if v is not None} if kind == "modernbert" else {}
    clf = C.train(kind, [r["text"] for r in rows], [r["label"] for r in rows], seed, **opts)
    C.save(clf, out, {"options": opts, "train_rows": len(rows)})
    click.echo(f"{kind} classifier over {len(clf.labels)} labels, {len(rows)} rows -> {out}")


@classify.command("eval")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--split", help="Use only rows whose 'split' field equals this.")
@click.option("--bootstrap", default=1000, show_default=True, help="Resamples for the 95% CI (0 = none).")
@click.option("--seed", default=0, show_default=True)
def classify_eval(model_dir, data, split, bootstrap, seed):
    """Score a saved classifier on labelled DATA: prints one JSON object (macro_f1, accuracy,
    per_label, n, ci95)."""
    import json

    from . import classify as C
    from .classify.metrics import bootstrap_ci, f1_scores

    clf = C.load(model_dir)
    rows = _rows(data, split, True)
    truth = [r["label"] for r in rows]
    unknown = sorted(set(truth) - set(clf.labels))
    if unknown:
        raise LocalcharError(f"{data}: label '{unknown[0]}' is not one the classifier knows ({', '.join(clf.labels)}); "
                             f"its F1 would be 0 by construction" + (f" ({len(unknown)} such labels)" if len(unknown) > 1 else ""))
    pred = clf.predict([r["text"] for r in rows])
    labels = sorted(set(truth) | set(pred))  # labels absent from the data would count as F1 = 0
    f = f1_scores(truth, pred, labels)
    click.echo(json.dumps({"macro_f1": f["macro_f1"], "accuracy": f["accuracy"], "per_label": f["per_label"],
                           "n": len(rows), "ci95": bootstrap_ci(truth, pred, labels, bootstrap, seed)}))


@classify.command("predict")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
def classify_predict(model_dir, data):
    """Print one JSON line per row of DATA: the row's text and the predicted label."""
    import json

    from . import classify as C

    clf = C.load(model_dir)
    rows = _rows(data, None, False)
    for r, p in zip(rows, clf.predict([r["text"] for r in rows])):
        click.echo(json.dumps({**r, "predicted": p}, ensure_ascii=False))


def _rebuild_report(run_dir: Path) -> Path:
    """Rewrite RUN_DIR/results from the newest score and classifier outputs under RUN_DIR/stages."""
    from . import config as C
    from .report import write_report
    from .results import load_run_recipe
    from .store import read_json

    recipe = load_run_recipe(run_dir)
    exact, instances = {}, []
    if Path(recipe.source).exists():  # the instances this recipe's keys name, not just the newest ones
        from .runner import plan

        instances = plan(recipe, run_dir)
        exact = {i.stage: i.dir for i in instances if i.stage in ("score", "classifier")}

    def newest(stage, name):
        if stage in exact:
            if not (exact[stage] / name).exists():
                raise LocalcharError(f"{exact[stage]}: no {name}; run the recipe to finish it first")
            return exact[stage] / name
        found = sorted((run_dir / "stages" / stage).glob(f"all-*/{name}"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise LocalcharError(f"{run_dir}: no finished {stage} stage ({name}); run the recipe first")
        return found[-1]

    clf = read_json(newest("classifier", "classifier_summary.json"))
    scores = newest("score", "scores.json")
    out = run_dir / "results"
    import tempfile

    from .results import publish_results
    from .runner import timings

    # published like a run's results: provenance from the score instance's lineage; results of
    # another run move to results-previous/; what only the runner adds (the score.train_seeds
    # spread) is carried over when the results it replaces are the same run's
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".report-") as tmp:
        write_report(read_json(scores), recipe, C.load_model_card(recipe.model), Path(tmp), clf)
        publish_results(Path(tmp), out, recipe, run_dir, instances or None, start=scores.parent,
                        carry=("train_seeds",), **({"timings": timings(instances)} if instances else {}))
    return out


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("other", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Also write the comparison (Markdown) here.")
def report(run_dir, other, out):
    """Rebuild RUN_DIR's report (results.json, report.md, report.html, plots) from its stage outputs.
    With OTHER (a second run directory), print the two runs' headline numbers side by side."""
    from .report import compare, load_results

    if other is None:
        click.echo(f"report: {_rebuild_report(run_dir)}")
        return
    text = compare(load_results(run_dir), load_results(other), str(run_dir), str(other))
    click.echo(text)
    if out:
        from .store import atomic_write_text

        atomic_write_text(out, text)


@cli.group()
def runs():
    """Run directories: what they hold."""


@runs.command("ls")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object (the same as results/adapters.json).")
def runs_ls(run_dir, as_json):
    """Map every variant x persona of RUN_DIR's recipe (its recipe.resolved.toml) to its adapter
    folders under RUN_DIR/stages: the DPO adapter (distilled), the SFT adapter and the merged one
    (full), each done, partial (started, not finished) or missing."""
    import json

    from .results import adapter_map, load_run_recipe

    m = adapter_map(load_run_recipe(run_dir), run_dir)
    if as_json:
        click.echo(json.dumps(m, indent=2, ensure_ascii=False))
        return
    seeds = len({r["train_seed"] for r in m["adapters"]}) > 1
    stages = ["dpo", "sft", "merge"]
    head = ["variant", "persona"] + (["seed"] if seeds else []) + ["status"] + stages
    rows = []
    for r in m["adapters"]:
        cells = [r["variant"], r["persona"] or "-"] + ([str(r["train_seed"])] if seeds else []) + [r["status"]]
        for st in stages:
            x = r["stages"].get(st)
            name = Path(x["dir"]).parent.name if x and x["dir"] else "-"
            cells.append("-" if not x else name if x["status"] == "done" else f"{name} ({x['status']})")
        rows.append(cells)
    widths = [max(len(c[i]) for c in [head] + rows) for i in range(len(head))]
    click.echo(f"{run_dir}: recipe {m['recipe']} ({m['source']}); adapters in stages/<stage>/<instance>/adapter"
               + ("" if m["exact"] else " (recipe file gone: the newest instance of each stage shown)"))
    for c in [head] + rows:
        click.echo("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
    n = m["counts"]
    click.echo(f"{n['done']} done, {n['partial']} partial, {n['missing']} missing")


@cli.command()
@click.argument("name")
@click.option("--grid", multiple=True, required=True, metavar="KEY=V1,V2",
              help="A recipe key and the values to try, e.g. --grid merge.sft_weight=0,0.25,1. Repeatable: "
                   "every combination runs.")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Fixed overrides for every point.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def ablate(name, grid, overrides, runs_dir):
    """Run recipe NAME once per grid point into one run directory. Stage instances whose inputs do
    not change are shared (a sweep over merge.sft_weight trains nothing twice). Writes each point's
    results to RUNS_DIR/<recipe>/ablations/<point>/ and a comparison table and plot to
    RUNS_DIR/<recipe>/ablations/summary.md / summary.png."""
    import itertools

    from . import config as C
    from .ablate import summarize
    from .runner import run

    axes = []
    for g in grid:
        if "=" not in g or not g.split("=", 1)[1]:
            raise LocalcharError(f"--grid {g}: expected KEY=V1,V2,...")
        key, values = g.split("=", 1)
        axes.append([(key.strip(), v.strip()) for v in values.split(",")])
    points = []
    for combo in itertools.product(*axes):
        label = ",".join(f"{k}={v}" for k, v in combo)
        recipe = C.load_recipe(name, list(overrides) + [f"{k}={v}" for k, v in combo])
        click.echo(f"── grid point {label}")
        run_dir = run(recipe, runs_dir, results_name=f"ablations/{label.replace('/', '_')}")
        points.append((label, run_dir / "ablations" / label.replace("/", "_")))
    click.echo(f"summary: {summarize(points, points[0][1].parent)}")


@cli.group()
def export():
    """Export models for other engines."""


@export.command("gguf")
@click.option("--model", "model_path", required=True, help="Model directory (unquantized) or Hugging Face id.")
@click.option("--adapter", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A persona adapter directory (repeat for several); each becomes a GGUF LoRA.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for the GGUF files.")
@click.option("--quant", type=click.Choice(["f16", "q8_0", "q4_k_m"]), default="f16", show_default=True,
              help="Type of the base GGUF (quantized through llama.cpp); LoRAs stay f16.")
def export_gguf(model_path, adapters, out, quant):
    """Write one base GGUF and one GGUF LoRA per adapter (llama.cpp's converters; alpha = mlx scale x
    rank) and print a JSON object naming the files. Use them with `--engine llama_cpp` or any
    llama.cpp program (`--lora FILE`)."""
    import json

    from .gguf import export as do_export
    from .hub import resolve_model

    click.echo(json.dumps(do_export(Path(resolve_model(model_path)), list(adapters), out, quant), indent=2))


@cli.command()
def doctor():
    """Show what is installed and which engines work on this machine."""
    from .results import package_versions

    click.echo(f"localchar {__version__}  python {platform.python_version()}  {platform.system()} {platform.machine()}")
    for pkg, v in package_versions().items():
        if pkg != "localchar":
            click.echo(f"  {pkg:22s} {v}")
    blas = os.environ.get("LD_PRELOAD", "")
    click.echo(f"  fast BLAS for MLX-CPU  {'yes (' + blas + ')' if OPENBLAS in blas else 'no'}")
    try:
        import mlx.core as mx

        x = mx.ones((4, 4)) @ mx.ones((4, 4))
        mx.eval(x)
        click.echo(f"engine mlx: works (device {mx.default_device()})")
    except Exception as e:  # doctor reports, it does not fail
        click.echo(f"engine mlx: unavailable ({type(e).__name__}: {e})")
    try:
        import llama_cpp

        feats = llama_cpp.llama_print_system_info().decode()
        click.echo(f"engine llama_cpp: works ({' '.join(f for f in feats.split(' | ') if f.endswith('= 1'))})")
        if "AMX_INT8 = 1" in feats and platform.system() == "Linux":
            click.echo("  warning: built with AMX, which crashes on quantized models on some VMs; rebuild with "
                       "CMAKE_ARGS=-DGGML_NATIVE=OFF (see README)")
    except ImportError:
        click.echo("engine llama_cpp: not installed (./setup.sh installs localchar[gguf])")
    from .backends import resolve
    from .gguf import converter_dir

    try:
        click.echo(f"gguf export: converters in {converter_dir()}")
    except LocalcharError as e:
        click.echo(f"gguf export: unavailable ({e})")
    click.echo("engine openai: needs only a server (standard library client)")
    click.echo(f"engine auto: {resolve('auto')}")


def main():
    # -P: the current directory stays off sys.path, so a folder named localchar there (the clone
    # itself, after `git clone ... localchar`) cannot shadow the installed package
    maybe_reexec([sys.executable, "-P", "-m", "localchar.cli", *sys.argv[1:]])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    verbose = bool(set(sys.argv[1:2]) & {"-v", "--verbose"})
    interrupted = "interrupted: finished rows and stages are kept; run the same command to resume"
    try:
        # prog_name: --help and usage lines say `localchar`, however the process was started
        cli(prog_name="localchar", standalone_mode=False)
    except LocalcharError as e:
        _fail(verbose, f"error: {e}")
    except click.exceptions.Abort:
        click.echo(interrupted, err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:  # bare `localchar` / `localchar agent`: show the help
        e.show()
        sys.exit(e.exit_code)
    except click.UsageError as e:  # bad option or argument: one line, with where to look
        where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        _fail(verbose, f"error: {' '.join(e.format_message().split())}{where}")
    except click.ClickException as e:
        _fail(verbose, f"error: {' '.join(e.format_message().split())}", e.exit_code)
    except KeyboardInterrupt:
        click.echo(interrupted, err=True)
        sys.exit(130)
    except Exception:  # anything else is ours to fix, not the user's input
        import traceback

        traceback.print_exc()
        click.echo(f"error: this is a bug in localchar {__version__}, not a problem with your input; please "
                   "report it with the traceback above", err=True)
        sys.exit(1)


def _fail(verbose: bool, line: str, code: int = 2):
    if verbose:
        import traceback

        traceback.print_exc()
    click.echo(line.replace("\n", " ")[:2000], err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
