"""``python -m pipeline.compare --task gsm8k --limit-train 500 --limit-eval 200``: the paper's table.

1. curate the task's training set the S3FT way (``python -m pipeline.run``, with
   ``--paraphrase-all`` so SDFT has a paraphrase for every row);
2. train one LoRA adapter per mode (``python -m pipeline.train --mode sft|sdft|s3ft``);
3. score the base model and every adapter in-domain (the task's test split) and on the general
   benchmarks (``pipeline.evaluate``; one vLLM engine serves the base and its adapters);
4. write ``table.md`` / ``table.csv`` (scores with n and 95% intervals, average general-benchmark
   change vs. base), ``chart.png``, ``results.json`` and per-item Parquet under ``--out``.

Curation and training run as child processes (each frees its memory when done). Every step
reuses finished work: rerun the same command after an interruption and only what is missing runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.evaluate import GENERAL_DEFAULT
from pipeline.model import DEFAULT_MODEL

log = logging.getLogger(__name__)


@dataclass
class CompareConfig:
    task: str = field(default="gsm8k", metadata={"help": "Task preset (gsm8k, mbpp, nq)."})
    limit_train: int | None = field(default=None, metadata={"help": "Curate the first N training rows."})
    limit_eval: int | None = field(default=None, metadata={
        "help": "Score the first N items of each benchmark."})
    benchmarks: str = field(default=GENERAL_DEFAULT, metadata={
        "help": "General benchmarks (the task itself is always scored in-domain)."})
    modes: str = field(default="sft,sdft,s3ft", metadata={"help": "Training modes to compare."})
    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Base model (embedded:<name>, .gguf, model folder or Hub id)."})
    out: str | None = field(default=None, metadata={
        "help": "Output folder. Default: runs/compare-<task>-<hash of the settings>."})
    run_out: str | None = field(default=None, metadata={
        "help": "Curation run folder (reused if finished). Default: <out>/curation."})
    train_config: str | None = field(default=None, metadata={
        "help": "YAML of pipeline.train / TRL options for every mode (e.g. max_steps, learning_rate)."})
    paraphrase_all: bool = field(default=True, metadata={
        "help": "Paraphrase every training row, so SDFT (self-distillation) has a paraphrase for each."})
    dtype: str = field(default="auto", metadata={
        "help": "Model dtype for vLLM when curating and scoring (auto: bfloat16 where supported)."})
    shard_size: int = field(default=100, metadata={"help": "Rows per shard (curation and in-domain eval)."})
    max_tokens: int = field(default=384, metadata={"help": "Max new tokens when curating."})
    eval_max_tokens: int | None = field(default=None, metadata={
        "help": "Max new tokens of in-domain answers. Default: --max-tokens."})
    fresh: bool = field(default=False, metadata={"help": "Recompute every step."})
    config: str | None = field(default=None, metadata={"help": "YAML file with any of these options."})
    log_level: str = field(default="INFO", metadata={"help": "Logging level."})


def _child(command: list[str], what: str) -> None:
    log.info("%s: %s", what, " ".join(command))
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"{what} failed; rerun the same compare command to resume after fixing it:\n  "
                         + " ".join(command))


def curate(settings: CompareConfig, run_out: Path) -> Path:
    command = [sys.executable, "-m", "pipeline.run", "--task", settings.task, "--model", settings.model,
               "--out", str(run_out), "--shard-size", str(settings.shard_size),
               "--max-tokens", str(settings.max_tokens), "--dtype", settings.dtype,
               "--paraphrase-all" if settings.paraphrase_all else "--no-paraphrase-all"]
    if settings.limit_train is not None:
        command += ["--limit", str(settings.limit_train)]
    if settings.fresh:
        command.append("--fresh")
    _child(command, "curation")
    return run_out / "train.parquet"


def train_mode(settings: CompareConfig, data: Path, mode: str, out: Path) -> Path:
    """One adapter per mode; reused while the training data and config are unchanged."""
    config_text = Path(settings.train_config).read_text() if settings.train_config else ""
    stamp = {"mode": mode, "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
             "train_config": config_text}
    stamp_path = out / "compare-stamp.json"
    if (not settings.fresh and (out / "adapter_config.json").is_file() and stamp_path.is_file()
            and json.loads(stamp_path.read_text()) == stamp):
        log.info("%s: reusing the adapter in %s", mode, out)
        return out
    command = [sys.executable, "-m", "pipeline.train", "--data", str(data), "--mode", mode,
               "--out", str(out)]
    if settings.train_config:
        command += ["--config", settings.train_config]
    _child(command, f"training ({mode})")
    stamp_path.write_text(json.dumps(stamp, indent=2))
    return out


def compare(settings: CompareConfig) -> dict[str, Any]:
    from pipeline.config import stable_hash
    from pipeline.evaluate import EvaluateConfig, evaluate_models, model_under_test, split_benchmarks
    from pipeline.scoreboard import plot_chart, write_table
    from pipeline.tasks import get_task

    get_task(settings.task)  # fail on a bad task or benchmark name before any work
    modes = [m.strip() for m in settings.modes.split(",") if m.strip()]
    benchmarks = f"{settings.task},{settings.benchmarks}" if settings.benchmarks else settings.task
    split_benchmarks(benchmarks)
    key = stable_hash({k: v for k, v in vars(settings).items() if k not in ("fresh", "log_level")})
    out = Path(settings.out or Path("runs") / f"compare-{settings.task}-{key[:8]}")
    out.mkdir(parents=True, exist_ok=True)

    data = curate(settings, Path(settings.run_out or out / "curation"))
    adapters = {mode: train_mode(settings, data, mode, out / "train" / f"{mode}-lora") for mode in modes}
    models = [model_under_test(settings.model, "base")]
    models += [model_under_test(str(path), mode) for mode, path in adapters.items()]
    evaluation = EvaluateConfig(limit=settings.limit_eval, shard_size=settings.shard_size,
                                max_tokens=settings.eval_max_tokens or settings.max_tokens,
                                dtype=settings.dtype, fresh=settings.fresh)
    results = evaluate_models(models, benchmarks, evaluation, out)
    print(write_table(results, out, baseline="base"))
    plot_chart(results, out / "chart.png")
    print(f"table, chart and per-item results in {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import parse_config

    settings = parse_config(CompareConfig, argv, description=__doc__.splitlines()[0])
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    compare(settings)
    return 0


if __name__ == "__main__":
    from pipeline.errors import report_errors

    sys.exit(report_errors(main))
