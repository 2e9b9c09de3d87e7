"""``python -m pipeline.push --run runs/<run> --repo-id user/name``: share a run on the Hub.

The upload is a folder prepared here, file by file, and sent with ``HfApi.upload_folder``, so
the dataset repo holds exactly these files (``--dry-run DIR`` writes the same folder locally):

    data/train-00000-of-00001.parquet   the run's train.parquet, byte for byte
    README.md                           the dataset card (pipeline/reporting/card.py)
    config.yaml                         the resolved run configuration
    summary.json                        shares, accuracy, judge rules, stage costs

The token comes from ``HF_TOKEN`` or ``hf auth login``; ``HF_ENDPOINT`` selects the Hub.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from pipeline.errors import UsageError


@dataclass
class PushConfig:
    run: str | None = field(default=None, metadata={
        "help": "A finished run folder (the --out of pipeline.run). Required."})
    repo_id: str | None = field(default=None, metadata={
        "help": "Dataset repo on the Hub, user/name. Required."})
    private: bool = field(default=False, metadata={
        "help": "Create the repo private (new repos only)."})
    dry_run: str | None = field(default=None, metadata={
        "help": "Write the folder that would be pushed to this folder; send nothing."})
    config: str | None = field(default=None, metadata={"help": "YAML file with any of these options."})

    def __post_init__(self) -> None:
        for name in ("run", "repo_id"):
            if not getattr(self, name):
                raise UsageError(f"--{name.replace('_', '-')} is required (see --help)")


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import parse_config
    from pipeline.reporting.hub import PUSHED_FILES, push_run

    args = parse_config(PushConfig, argv, description=__doc__.splitlines()[0], prog="python -m pipeline.push")
    result = push_run(args.run, args.repo_id, private=args.private, dry_run_dir=args.dry_run)
    if args.dry_run:
        print(f"dry run: wrote {', '.join(PUSHED_FILES)} to {result}")
    else:
        print(f"pushed {args.run} to {result}")
    return 0


if __name__ == "__main__":
    from pipeline.errors import report_errors

    sys.exit(report_errors(main))
