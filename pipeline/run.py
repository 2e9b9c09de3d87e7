"""``python -m pipeline.run --task gsm8k``: curate an S3FT training set.

Heavy libraries (vLLM, torch, transformers) load only after the arguments are parsed, so
``--help`` answers at once.
"""

from __future__ import annotations

import sys

from pipeline.config import RunConfig, parse_config
from pipeline.errors import report_errors


def main(argv: list[str] | None = None) -> int:
    config = parse_config(RunConfig, argv, description=__doc__.splitlines()[0], prog="python -m pipeline.run")
    config.apply()
    from pipeline.curate import run

    summary = run(config)  # a held run folder is RunLockedError: exit 3
    if config.train:
        # A child process: training gets a clean interpreter (no engine state, no fragmented
        # memory); the same function as `python -m pipeline.train`.
        from pipeline.child import in_child
        from pipeline.training.trainer import train_from_config, trained_folder_name

        out = f"{summary['out']}/{trained_folder_name(config.train, config.train_config)}"
        in_child(f"training ({config.train})", train_from_config, f"{summary['out']}/train.parquet",
                 config.train, out, config.train_config, log_level=config.log_level)
        print(f"trained {config.train} in {out}")
    if config.push_to_hub:
        from pipeline.reporting.hub import push_run

        url = push_run(summary["out"], config.push_to_hub, private=config.push_private)
        print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(report_errors(main))
