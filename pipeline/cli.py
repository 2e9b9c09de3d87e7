"""``s3ft <command> ...``: every command of the project behind one console script.

``s3ft run --task gsm8k`` is ``python -m pipeline.run --task gsm8k``, and so on for each
command below; ``s3ft <command> --help`` shows that command's options.
"""

from __future__ import annotations

import sys
from importlib import import_module

from pipeline.errors import report_errors

#: command -> (module whose ``main(argv)`` runs it, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pipeline.run", "curate a task's training set the S3FT way"),
    "train": ("pipeline.train", "fine-tune on a curated train.parquet (s3ft, sft or sdft)"),
    "evaluate": ("pipeline.evaluate", "score a model in-domain and on general benchmarks"),
    "compare": ("pipeline.compare", "curate, train every mode and score them: the paper's table"),
    "audit": ("pipeline.audit", "label a sample of a run's targets in the browser: their precision"),
    "push": ("pipeline.push", "share a finished run on the Hugging Face Hub"),
    "tasks": ("pipeline.tasks.cli", "list, show or check tasks (built-in or your own)"),
}


def usage() -> str:
    lines = ["usage: s3ft <command> [options]   (s3ft <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:9s} {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)} "
              f"(s3ft --help)", file=sys.stderr)
        return 2
    module = import_module(COMMANDS[command][0])
    return report_errors(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
