"""``python -m pipeline.run --task gsm8k``: curate an S3FT training set.

Heavy libraries (vLLM, torch, transformers) load only after the arguments are parsed, so
``--help`` answers at once.
"""

from __future__ import annotations

import subprocess
import sys

from pipeline.config import RunConfig, parse_config
from pipeline.errors import report_errors


def main(argv: list[str] | None = None) -> int:
    config = parse_config(RunConfig, argv, description=__doc__.splitlines()[0])
    config.apply()
    from pipeline.curate import run

    summary = run(config)  # a held run folder is RunLockedError: exit 3
    if config.train:
        # A separate process: training gets a clean interpreter (no engine state, no
        # fragmented memory) and its own TRL argument parsing.
        command = [sys.executable, "-m", "pipeline.train", "--data",
                   f"{summary['out']}/train.parquet", "--mode", config.train,
                   "--out", f"{summary['out']}/{config.train}-lora"]
        if config.train_config:
            command += ["--config", config.train_config]
        if subprocess.run(command).returncode != 0:
            print(f"error: training failed: {' '.join(command)}", file=sys.stderr)
            return 4
    if config.push_to_hub:
        from pipeline.reporting.hub import push_run

        url = push_run(summary["out"], config.push_to_hub, private=config.push_private)
        print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(report_errors(main))
