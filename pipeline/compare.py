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

from pipeline.evaluation.config import CompareConfig

log = logging.getLogger(__name__)


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
