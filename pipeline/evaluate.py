"""``python -m pipeline.evaluate --model runs/<run>/s3ft-lora --benchmarks gsm8k,mmlu --limit 200``

Scores a model (embedded spec, ``.gguf``, model folder or a PEFT adapter folder from
``pipeline.train``) on

* in-domain tasks (``gsm8k``, ``mbpp``, ``nq``): the pipeline's own generate and judge stages on
  the task's held-out ``test`` split, greedy, as resumable shards under ``<out>/<model>/<task>``;
* general benchmarks (``mmlu``, ``truthfulqa_mc`` (MC1), ``truthfulqa_mc2``, ``arc_challenge``,
  ``hellaswag``, ``arc_easy``, ``piqa``, ``lambada_openai``, ``winogrande``, ``sciq``, ``boolq``,
  ``openbookqa``, ``commonsense_qa``, or ``auto``: those the base model reads above chance):
  log-likelihoods with lm-evaluation-harness (:mod:`pipeline.evaluation.general`).

Adapters are served through vLLM's LoRA support: one engine for a base model answers for the
base and every adapter of it (:func:`pipeline.evaluation.results.evaluate_models`, used by
``pipeline.compare``).
Writes ``results.json``, ``table.md``/``table.csv`` and per-item ``items_in_domain.parquet`` /
``items_general.parquet``; every score carries its sample size and a 95% interval.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipeline.evaluation.config import EvaluateConfig

log = logging.getLogger(__name__)

def main(argv: list[str] | None = None) -> int:
    from pipeline.config import parse_config, stable_hash

    settings = parse_config(EvaluateConfig, argv, description=__doc__.splitlines()[0],
                            prog="python -m pipeline.evaluate")
    settings.apply()
    from pipeline.evaluation.models import model_under_test
    from pipeline.evaluation.results import evaluate_models
    from pipeline.evaluation.scoring import split_benchmarks

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
